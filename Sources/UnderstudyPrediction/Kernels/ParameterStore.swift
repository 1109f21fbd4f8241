/// Flat storage for every trainable parameter of a model, with gradients and optimiser state.
///
/// Components reserve slices with `allocate(_:)`; one optimiser step updates the whole store with
/// SIMD loops and no allocation. Slices are padded to multiples of 8.
public final class ParameterStore {
    /// The optimiser applied by `step()`.
    public enum Optimizer: Sendable, Equatable {
        /// Plain stochastic gradient descent.
        case sgd(learningRate: Float)
        /// Adam (Kingma & Ba) with the usual bias correction.
        case adam(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8)
    }

    /// Reserved length (floats, a multiple of 8).
    public private(set) var count = 0
    private var capacity: Int
    /// Parameter values.
    public private(set) var values: FloatBuffer
    /// Accumulated gradients (zeroed by `step()` and `zeroGradients()`).
    public private(set) var gradients: FloatBuffer
    private var moment1: FloatBuffer
    private var moment2: FloatBuffer
    private var steps: Int = 0
    /// The optimiser.
    public var optimizer: Optimizer
    /// Global gradient-norm clip (no clipping when nil or non-positive).
    public var clipNorm: Float?

    /// Creates a store with room for `capacity` floats.
    public init(capacity: Int, optimizer: Optimizer = .adam(learningRate: 0.005), clipNorm: Float? = 5) {
        self.capacity = roundUp8(capacity)
        self.values = FloatBuffer(count: self.capacity)
        self.gradients = FloatBuffer(count: self.capacity)
        self.moment1 = FloatBuffer(count: self.capacity)
        self.moment2 = FloatBuffer(count: self.capacity)
        self.optimizer = optimizer
        self.clipNorm = clipNorm
    }

    /// Reserves `n` floats (rounded up to 8) and returns their offset.
    public func allocate(_ n: Int) -> Int {
        let size = roundUp8(n)
        precondition(count + size <= capacity, "ParameterStore capacity exceeded")
        let offset = count
        count += size
        return offset
    }

    /// Pointer to the values at `offset`.
    @inline(__always) public func value(_ offset: Int) -> UnsafeMutablePointer<Float> { values.pointer + offset }
    /// Pointer to the gradients at `offset`.
    @inline(__always) public func gradient(_ offset: Int) -> UnsafeMutablePointer<Float> { gradients.pointer + offset }

    /// Sets every gradient to zero.
    public func zeroGradients() { gradients.pointer.update(repeating: 0, count: count) }

    /// The L2 norm of the accumulated gradient.
    @_optimize(speed)
    public func gradientNorm() -> Float {
        Kernels.dot(gradients.pointer, gradients.pointer, count).squareRoot()
    }

    /// Clips, applies one optimiser update with the accumulated gradients, then zeroes them.
    @_optimize(speed)
    public func step() {
        var scale: Float = 1
        if let clip = clipNorm, clip > 0 {
            let norm = gradientNorm()
            if norm > clip { scale = clip / norm }
            if !norm.isFinite { zeroGradients(); return }
        }
        steps += 1
        let p = values.pointer, g = gradients.pointer, m = moment1.pointer, v = moment2.pointer
        let s = SIMD8<Float>(repeating: scale)
        switch optimizer {
        case .sgd(let lr):
            let rate = SIMD8<Float>(repeating: -lr)
            var i = 0
            while i < count {
                let gv = Kernels.load8(g + i) * s
                Kernels.store8(Kernels.load8(p + i) + rate * gv, p + i)
                i += 8
            }
        case .adam(let lr, let beta1, let beta2, let eps):
            #if DEBUG
            let c1d = 1 - powf(beta1, Float(steps)), c2d = 1 - powf(beta2, Float(steps))
            let size = -lr * c2d.squareRoot() / c1d, epsd = eps * c2d.squareRoot()
            for i in 0..<count {
                let gv = g[i] * scale
                m[i] = beta1 * m[i] + (1 - beta1) * gv
                v[i] = beta2 * v[i] + (1 - beta2) * gv * gv
                p[i] += size * m[i] / (v[i].squareRoot() + epsd)
            }
            zeroGradients()
            return
            #else
            let c1 = 1 - powf(beta1, Float(steps))
            let c2 = 1 - powf(beta2, Float(steps))
            let stepSize = SIMD8<Float>(repeating: -lr * c2.squareRoot() / c1)
            let b1 = SIMD8<Float>(repeating: beta1), b2 = SIMD8<Float>(repeating: beta2)
            let ob1 = SIMD8<Float>(repeating: 1 - beta1), ob2 = SIMD8<Float>(repeating: 1 - beta2)
            // m / (sqrt(v) + eps) is computed as m * rsqrt(v + eps²) with a vectorised inverse square
            // root (bit trick + two Newton steps, relative error < 1e-6): SIMD8.squareRoot() and `/`
            // are lowered lane by lane here and made Adam 5× slower than the forward+backward pass.
            let e2 = SIMD8<Float>(repeating: eps * eps * c2)
            let half = SIMD8<Float>(repeating: 0.5), threeHalves = SIMD8<Float>(repeating: 1.5)
            let magic = SIMD8<UInt32>(repeating: 0x5F37_59DF)
            var i = 0
            while i < count {
                let gv = Kernels.load8(g + i) * s
                let mv = b1 * Kernels.load8(m + i) + ob1 * gv
                let vv = b2 * Kernels.load8(v + i) + ob2 * gv * gv
                Kernels.store8(mv, m + i)
                Kernels.store8(vv, v + i)
                let x = vv + e2
                var y = unsafeBitCast(magic &- (unsafeBitCast(x, to: SIMD8<UInt32>.self) &>> 1), to: SIMD8<Float>.self)
                let hx = half * x
                y = y * (threeHalves - hx * y * y)
                y = y * (threeHalves - hx * y * y)
                Kernels.store8(Kernels.load8(p + i) + stepSize * mv * y, p + i)
                i += 8
            }
            #endif
        }
        zeroGradients()
    }

    /// Fills `n` values at `offset` uniformly in `[-scale, scale]`.
    public func initializeUniform(_ offset: Int, _ n: Int, scale: Float, rng: inout SplitMix64) {
        for i in 0..<n {
            values.pointer[offset + i] = Float(rng.nextUnit() * 2 - 1) * scale
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
