#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A GRU cell: z = σ(W_z[x;h]+b_z), r = σ(W_r[x;h]+b_r), n = tanh(W_n[x; r⊙h]+b_n),
/// h' = (1−z)⊙n + z⊙h. One row-major matrix of 3H rows over [x; h] (row stride I+H).
public final class GRUCell: RecurrentCell {
    public let inputSize: Int
    public let hiddenSize: Int
    public var stateSize: Int { hiddenSize }
    public var cacheSize: Int { 2 * (inputSize + hiddenSize) + 3 * hiddenSize }
    /// The store holding the parameters.
    public let store: ParameterStore
    /// Offset of the weight matrix (3H × (I+H)).
    public let weightOffset: Int
    /// Offset of the bias (3H).
    public let biasOffset: Int
    private let da: FloatBuffer
    private let du: FloatBuffer
    private let du2: FloatBuffer

    /// Creates a cell, reserving and initialising its parameters in `store`.
    public init(inputSize: Int, hiddenSize: Int, store: ParameterStore, rng: inout SplitMix64) {
        self.inputSize = roundUp8(inputSize)
        self.hiddenSize = roundUp8(hiddenSize)
        self.store = store
        let stride = self.inputSize + self.hiddenSize
        weightOffset = store.allocate(3 * self.hiddenSize * stride)
        biasOffset = store.allocate(3 * self.hiddenSize)
        store.initializeUniform(
            weightOffset, 3 * self.hiddenSize * stride, scale: 1 / Float(stride).squareRoot(), rng: &rng)
        da = FloatBuffer(count: roundUp8(3 * self.hiddenSize))
        du = FloatBuffer(count: stride)
        du2 = FloatBuffer(count: stride)
    }

    @_optimize(speed)
    public func forward(
        input: UnsafePointer<Float>, state: UnsafePointer<Float>,
        newState: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>
    ) {
        let I = inputSize, H = hiddenSize, stride = I + H
        let u = cache, u2 = cache + stride, z = cache + 2 * stride, r = z + H, n = r + H
        let w = UnsafePointer(store.value(weightOffset)), b = UnsafePointer(store.value(biasOffset))
        u.update(from: input, count: I)
        (u + I).update(from: state, count: H)
        u2.update(from: input, count: I)
        // Blocks of 4 hidden units: pre-activations from 4 rows at a time, gates in 4 lanes.
        var j = 0
        while j < H {
            let zj = Kernels.sigmoid4(Kernels.load4(b + j) + Kernels.dot4Rows(w + j * stride, stride, u))
            let rj = Kernels.sigmoid4(
                Kernels.load4(b + H + j) + Kernels.dot4Rows(w + (H + j) * stride, stride, u))
            Kernels.store4(zj, z + j)
            Kernels.store4(rj, r + j)
            Kernels.store4(rj * Kernels.load4(state + j), u2 + I + j)
            j += 4
        }
        j = 0
        while j < H {
            let nj = Kernels.tanh4(
                Kernels.load4(b + 2 * H + j) + Kernels.dot4Rows(w + (2 * H + j) * stride, stride, u2))
            Kernels.store4(nj, n + j)
            let zj = Kernels.load4(z + j)
            // (1 − z) n + z h
            Kernels.store4(nj + zj * (Kernels.load4(state + j) - nj), newState + j)
            j += 4
        }
    }

    @_optimize(speed)
    public func backward(
        dNewState: UnsafePointer<Float>, cache: UnsafePointer<Float>,
        dState: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>?
    ) {
        let I = inputSize, H = hiddenSize, stride = I + H
        let u = cache, u2 = cache + stride, z = cache + 2 * stride, r = z + H, n = r + H
        let hPrev = u + I
        let w = UnsafePointer(store.value(weightOffset))
        let dw = store.gradient(weightOffset), db = store.gradient(biasOffset)
        let da = self.da.pointer, du = self.du.pointer, du2 = self.du2.pointer
        let one = Kernels.V4(repeating: 1)
        var j = 0
        while j < H {
            let dh = Kernels.load4(dNewState + j), zj = Kernels.load4(z + j), nj = Kernels.load4(n + j)
            Kernels.store4(dh * (Kernels.load4(hPrev + j) - nj) * zj * (one - zj), da + j)
            Kernels.store4(dh * (one - zj) * (one - nj * nj), da + 2 * H + j)
            j += 4
        }
        du2.update(repeating: 0, count: stride)
        Kernels.linearBackward(
            w + 2 * H * stride, rows: H, n8: stride, dy: da + 2 * H, x: u2, dx: du2, dw: dw + 2 * H * stride)
        j = 0
        while j < H {
            let rj = Kernels.load4(r + j)
            Kernels.store4(Kernels.load4(du2 + I + j) * Kernels.load4(hPrev + j) * rj * (one - rj), da + H + j)
            j += 4
        }
        du.update(repeating: 0, count: stride)
        Kernels.linearBackward(w, rows: 2 * H, n8: stride, dy: da, x: u, dx: du, dw: dw)
        j = 0
        while j < H {
            let dh = Kernels.load4(dNewState + j) * Kernels.load4(z + j)
            let viaR = Kernels.load4(du2 + I + j) * Kernels.load4(r + j)
            Kernels.store4(dh + viaR + Kernels.load4(du + I + j), dState + j)
            j += 4
        }
        if let dInput {
            for k in 0..<I { dInput[k] = du[k] + du2[k] }
        }
        Kernels.axpy(1, da, db, roundUp8(3 * H))
    }
}
