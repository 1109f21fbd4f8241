#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An LSTM cell: gates i, f, g, o from one matrix of 4H rows over [x; h]; c' = f⊙c + i⊙g,
/// h' = o⊙tanh(c'). The state is [h; c] (2H floats). Forget-gate bias starts at 1.
public final class LSTMCell: RecurrentCell {
    public let inputSize: Int
    public let hiddenSize: Int
    public var stateSize: Int { 2 * hiddenSize }
    public var cacheSize: Int { inputSize + hiddenSize + 6 * hiddenSize }
    /// The store holding the parameters.
    public let store: ParameterStore
    /// Offset of the weight matrix (4H × (I+H)).
    public let weightOffset: Int
    /// Offset of the bias (4H).
    public let biasOffset: Int
    private let da: FloatBuffer
    private let du: FloatBuffer

    /// Creates a cell, reserving and initialising its parameters in `store`.
    public init(inputSize: Int, hiddenSize: Int, store: ParameterStore, rng: inout SplitMix64) {
        self.inputSize = roundUp8(inputSize)
        self.hiddenSize = roundUp8(hiddenSize)
        self.store = store
        let stride = self.inputSize + self.hiddenSize
        weightOffset = store.allocate(4 * self.hiddenSize * stride)
        biasOffset = store.allocate(4 * self.hiddenSize)
        store.initializeUniform(
            weightOffset, 4 * self.hiddenSize * stride, scale: 1 / Float(stride).squareRoot(), rng: &rng)
        for j in 0..<self.hiddenSize { store.value(biasOffset)[self.hiddenSize + j] = 1 }
        da = FloatBuffer(count: 4 * self.hiddenSize)
        du = FloatBuffer(count: stride)
    }

    @_optimize(speed)
    public func forward(
        input: UnsafePointer<Float>, state: UnsafePointer<Float>,
        newState: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>
    ) {
        let I = inputSize, H = hiddenSize, stride = I + H
        let u = cache, gi = cache + stride, gf = gi + H, gg = gf + H, go = gg + H, cPrev = go + H, tc = cPrev + H
        let w = UnsafePointer(store.value(weightOffset)), b = UnsafePointer(store.value(biasOffset))
        u.update(from: input, count: I)
        (u + I).update(from: state, count: H)
        cPrev.update(from: state + H, count: H)
        for j in 0..<H {
            gi[j] = Kernels.sigmoid(b[j] + Kernels.dot(w + j * stride, u, stride))
            gf[j] = Kernels.sigmoid(b[H + j] + Kernels.dot(w + (H + j) * stride, u, stride))
            gg[j] = tanhf(b[2 * H + j] + Kernels.dot(w + (2 * H + j) * stride, u, stride))
            go[j] = Kernels.sigmoid(b[3 * H + j] + Kernels.dot(w + (3 * H + j) * stride, u, stride))
            let c = gf[j] * cPrev[j] + gi[j] * gg[j]
            tc[j] = tanhf(c)
            newState[H + j] = c
            newState[j] = go[j] * tc[j]
        }
    }

    @_optimize(speed)
    public func backward(
        dNewState: UnsafePointer<Float>, cache: UnsafePointer<Float>,
        dState: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>?
    ) {
        let I = inputSize, H = hiddenSize, stride = I + H
        let u = cache, gi = cache + stride, gf = gi + H, gg = gf + H, go = gg + H, cPrev = go + H, tc = cPrev + H
        let w = UnsafePointer(store.value(weightOffset))
        let dw = store.gradient(weightOffset), db = store.gradient(biasOffset)
        let da = self.da.pointer, du = self.du.pointer
        for j in 0..<H {
            let dh = dNewState[j]
            let dc = dNewState[H + j] + dh * go[j] * (1 - tc[j] * tc[j])
            da[j] = dc * gg[j] * gi[j] * (1 - gi[j])
            da[H + j] = dc * cPrev[j] * gf[j] * (1 - gf[j])
            da[2 * H + j] = dc * gi[j] * (1 - gg[j] * gg[j])
            da[3 * H + j] = dh * tc[j] * go[j] * (1 - go[j])
            dState[H + j] = dc * gf[j]
        }
        du.update(repeating: 0, count: stride)
        Kernels.matvecTransposedAccumulate(w, rows: 4 * H, n8: stride, da, du)
        for j in 0..<H { dState[j] = du[I + j] }
        if let dInput {
            for k in 0..<I { dInput[k] = du[k] }
        }
        Kernels.outerAccumulate(da, rows: 4 * H, u, n8: stride, dw)
        Kernels.axpy(1, da, db, 4 * H)
    }
}
