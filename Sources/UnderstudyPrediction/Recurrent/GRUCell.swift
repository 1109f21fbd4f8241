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
        for j in 0..<H {
            z[j] = Kernels.sigmoid(b[j] + Kernels.dot(w + j * stride, u, stride))
            r[j] = Kernels.sigmoid(b[H + j] + Kernels.dot(w + (H + j) * stride, u, stride))
            u2[I + j] = r[j] * state[j]
        }
        for j in 0..<H {
            n[j] = tanhf(b[2 * H + j] + Kernels.dot(w + (2 * H + j) * stride, u2, stride))
            newState[j] = (1 - z[j]) * n[j] + z[j] * state[j]
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
        for j in 0..<H {
            let dh = dNewState[j]
            da[j] = dh * (hPrev[j] - n[j]) * z[j] * (1 - z[j])
            da[2 * H + j] = dh * (1 - z[j]) * (1 - n[j] * n[j])
        }
        du2.update(repeating: 0, count: stride)
        Kernels.matvecTransposedAccumulate(w + 2 * H * stride, rows: H, n8: stride, da + 2 * H, du2)
        for j in 0..<H {
            da[H + j] = du2[I + j] * hPrev[j] * r[j] * (1 - r[j])
        }
        du.update(repeating: 0, count: stride)
        Kernels.matvecTransposedAccumulate(w, rows: 2 * H, n8: stride, da, du)
        for j in 0..<H {
            dState[j] = dNewState[j] * z[j] + du2[I + j] * r[j] + du[I + j]
        }
        if let dInput {
            for k in 0..<I { dInput[k] = du[k] + du2[k] }
        }
        Kernels.outerAccumulate(da, rows: 2 * H, u, n8: stride, dw)
        Kernels.outerAccumulate(da + 2 * H, rows: H, u2, n8: stride, dw + 2 * H * stride)
        Kernels.axpy(1, da, db, roundUp8(3 * H))
    }
}
