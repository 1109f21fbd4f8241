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
        // Blocks of 4 hidden units: pre-activations from 4 rows at a time, gates in 4 lanes.
        var j = 0
        while j < H {
            let i4 = Kernels.sigmoid4(Kernels.load4(b + j) + Kernels.dot4Rows(w + j * stride, stride, u))
            let f4 = Kernels.sigmoid4(
                Kernels.load4(b + H + j) + Kernels.dot4Rows(w + (H + j) * stride, stride, u))
            let g4 = Kernels.tanh4(
                Kernels.load4(b + 2 * H + j) + Kernels.dot4Rows(w + (2 * H + j) * stride, stride, u))
            let o4 = Kernels.sigmoid4(
                Kernels.load4(b + 3 * H + j) + Kernels.dot4Rows(w + (3 * H + j) * stride, stride, u))
            let c = f4 * Kernels.load4(cPrev + j) + i4 * g4
            let t = Kernels.tanh4(c)
            Kernels.store4(i4, gi + j)
            Kernels.store4(f4, gf + j)
            Kernels.store4(g4, gg + j)
            Kernels.store4(o4, go + j)
            Kernels.store4(t, tc + j)
            Kernels.store4(c, newState + H + j)
            Kernels.store4(o4 * t, newState + j)
            j += 4
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
        let one = Kernels.V4(repeating: 1)
        var j = 0
        while j < H {
            let dh = Kernels.load4(dNewState + j)
            let i4 = Kernels.load4(gi + j), f4 = Kernels.load4(gf + j), g4 = Kernels.load4(gg + j)
            let o4 = Kernels.load4(go + j), t = Kernels.load4(tc + j)
            let dc = Kernels.load4(dNewState + H + j) + dh * o4 * (one - t * t)
            Kernels.store4(dc * g4 * i4 * (one - i4), da + j)
            Kernels.store4(dc * Kernels.load4(cPrev + j) * f4 * (one - f4), da + H + j)
            Kernels.store4(dc * i4 * (one - g4 * g4), da + 2 * H + j)
            Kernels.store4(dh * t * o4 * (one - o4), da + 3 * H + j)
            Kernels.store4(dc * f4, dState + H + j)
            j += 4
        }
        du.update(repeating: 0, count: stride)
        Kernels.linearBackward(w, rows: 4 * H, n8: stride, dy: da, x: u, dx: du, dw: dw)
        for j in 0..<H { dState[j] = du[I + j] }
        if let dInput {
            for k in 0..<I { dInput[k] = du[k] }
        }
        Kernels.axpy(1, da, db, 4 * H)
    }
}
