import Testing
@testable import UnderstudyPrediction

/// Finite-difference checks of the analytic backward passes, through truncated BPTT.
@Suite("Gradient checks")
struct GradientCheckTests {
    /// Loss = Σ_t v_t · h_t over `steps` steps from a zero state, with fixed inputs and projections.
    struct Problem {
        let store: ParameterStore
        let runner: TruncatedBPTT
        let inputs: [[Float]]
        let projections: [[Float]]

        init(kind: RecurrentCellKind, input: Int, hidden: Int, steps: Int, seed: UInt64) {
            var rng = SplitMix64(seed: seed)
            store = ParameterStore(capacity: recurrentParameterCount(kind, inputSize: input, hiddenSize: hidden) + 64)
            let cell = makeRecurrentCell(kind, inputSize: input, hiddenSize: hidden, store: store, rng: &rng)
            // Larger weights than the default init so gates are not all near their linear region.
            for i in 0..<store.count { store.values[i] *= 2 }
            for i in 0..<store.count where store.values[i] == 0 { store.values[i] = Float(rng.nextUnit() - 0.5) }
            runner = TruncatedBPTT(cell: cell, window: steps)
            inputs = (0..<steps).map { _ in (0..<cell.inputSize).map { _ in Float(rng.nextUnit() * 2 - 1) } }
            projections = (0..<steps).map { _ in (0..<cell.hiddenSize).map { _ in Float(rng.nextUnit() * 2 - 1) } }
        }

        func loss() -> Double {
            runner.reset()
            var total = 0.0
            for t in inputs.indices {
                inputs[t].withUnsafeBufferPointer { runner.step(input: $0.baseAddress!) }
                for j in projections[t].indices { total += Double(projections[t][j]) * Double(runner.state[j]) }
            }
            return total
        }

        func analytic() -> [Float] {
            store.zeroGradients()
            runner.reset()
            for t in inputs.indices {
                inputs[t].withUnsafeBufferPointer { runner.step(input: $0.baseAddress!) }
                projections[t].withUnsafeBufferPointer { runner.addHiddenGradient($0.baseAddress!) }
            }
            runner.backward()
            return (0..<store.count).map { store.gradients[$0] }
        }
    }

    static func check(kind: RecurrentCellKind, steps: Int) {
        let problem = Problem(kind: kind, input: 8, hidden: 8, steps: steps, seed: 42)
        let grads = problem.analytic()
        var worst = 0.0
        var checked = 0
        var rng = SplitMix64(seed: 7)
        // Check every bias and a deterministic sample of weights.
        for index in 0..<problem.store.count where rng.nextInt(4) == 0 || index >= problem.store.count - 64 {
            let original = problem.store.values[index]
            let eps: Float = 1e-2
            problem.store.values[index] = original + eps
            let plus = problem.loss()
            problem.store.values[index] = original - eps
            let minus = problem.loss()
            problem.store.values[index] = original
            let numeric = (plus - minus) / (2 * Double(eps))
            let a = Double(grads[index])
            let rel = abs(a - numeric) / max(abs(a) + abs(numeric), 1e-2)
            worst = max(worst, rel)
            checked += 1
        }
        #expect(checked > 50)
        #expect(worst < 2e-2, "worst relative error \(worst) for \(kind) over \(steps) steps")
    }

    @Test("GRU single step") func gruSingleStep() { Self.check(kind: .gru, steps: 1) }
    @Test("GRU through BPTT over 5 steps") func gruBPTT() { Self.check(kind: .gru, steps: 5) }
    @Test("LSTM single step") func lstmSingleStep() { Self.check(kind: .lstm, steps: 1) }
    @Test("LSTM through BPTT over 5 steps") func lstmBPTT() { Self.check(kind: .lstm, steps: 5) }

    @Test("Adam and SGD reduce a quadratic loss; clipping bounds the step")
    func optimizers() {
        for optimizer in [ParameterStore.Optimizer.adam(learningRate: 0.05), .sgd(learningRate: 0.1)] {
            let store = ParameterStore(capacity: 8, optimizer: optimizer, clipNorm: 1)
            let offset = store.allocate(8)
            for i in 0..<8 { store.value(offset)[i] = 3 }
            for _ in 0..<300 {
                for i in 0..<8 { store.gradient(offset)[i] = store.value(offset)[i] }  // d/dx of x²/2
                store.step()
            }
            for i in 0..<8 { #expect(abs(store.value(offset)[i]) < 0.2) }
        }
        let store = ParameterStore(capacity: 8, optimizer: .sgd(learningRate: 1), clipNorm: 1)
        _ = store.allocate(8)
        for i in 0..<8 { store.gradients[i] = 100 }
        store.step()
        var norm: Float = 0
        for i in 0..<8 { norm += store.values[i] * store.values[i] }
        #expect(abs(norm.squareRoot() - 1) < 1e-4)
    }
}
