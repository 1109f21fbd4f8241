/// Flat storage for every trainable parameter of a model, with gradients and optimiser state.
///
/// Components reserve slices with `allocate(_:)`; one optimiser step updates the whole store with
/// SIMD loops and no allocation. Slices are padded to multiples of 8.
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class ParameterStore {
    /// The optimiser applied by `step()`.
    public enum Optimizer: Sendable, Equatable {
        /// Plain stochastic gradient descent.
        case sgd(learningRate: Float)
        /// Adam (Kingma & Ba) with the usual bias correction.
        case adam(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8)
    }

    /// Reserved length (floats, a multiple of 8).
    @exclusivity(unchecked) public private(set) var count = 0
    private let capacity: Int
    /// Parameter values.
    public let values: FloatBuffer
    /// Accumulated gradients (zeroed by `step()` and `zeroGradients()`).
    public let gradients: FloatBuffer
    private let moment1: FloatBuffer
    private let moment2: FloatBuffer
    @exclusivity(unchecked) private var steps: Int = 0
    @exclusivity(unchecked) private var beta1Power: Float = 1
    @exclusivity(unchecked) private var beta2Power: Float = 1
    @exclusivity(unchecked) private var powerBeta1: Float = .nan
    @exclusivity(unchecked) private var powerBeta2: Float = .nan
    /// The optimiser.
    @exclusivity(unchecked) public var optimizer: Optimizer
    /// Global gradient-norm clip (no clipping when nil or non-positive).
    @exclusivity(unchecked) public var clipNorm: Float?

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
    ///
    /// One pass for the norm (only when clipping) and one fused pass that reads gradient, moments
    /// and value, writes moments and value and zeroes the gradient (no separate memset); the bias
    /// corrections use running powers of β1 and β2 (no `pow` per step).
    @_optimize(speed)
    public func step() {
        var scale: Float = 1
        if let clip = clipNorm, clip > 0 {
            let norm = gradientNorm()
            if !norm.isFinite { zeroGradients(); return }
            if norm > clip { scale = clip / norm }
        }
        steps += 1
        let p = values.pointer, g = gradients.pointer, m = moment1.pointer, v = moment2.pointer
        switch optimizer {
        case .sgd(let lr):
            let rate = SIMD8<Float>(repeating: -lr * scale)
            var i = 0
            while i < count {
                Kernels.store8(Kernels.load8(p + i) + rate * Kernels.load8(g + i), p + i)
                Kernels.store8(SIMD8<Float>(), g + i)
                i += 8
            }
        case .adam(let lr, let beta1, let beta2, let eps):
            // Running beta^t (no pow per step); recomputed if the betas were changed in between.
            if beta1 != powerBeta1 || beta2 != powerBeta2 || steps == 1 {
                powerBeta1 = beta1
                powerBeta2 = beta2
                beta1Power = powf(beta1, Float(steps - 1))
                beta2Power = powf(beta2, Float(steps - 1))
            }
            beta1Power *= beta1
            beta2Power *= beta2
            let c1 = 1 - beta1Power, c2 = 1 - beta2Power
            #if DEBUG
            let size = -lr * c2.squareRoot() / c1, epsd = eps * c2.squareRoot()
            for i in 0..<count {
                let gv = g[i] * scale
                m[i] = beta1 * m[i] + (1 - beta1) * gv
                v[i] = beta2 * v[i] + (1 - beta2) * gv * gv
                p[i] += size * m[i] / (v[i].squareRoot() + epsd)
                g[i] = 0
            }
            #else
            Self.adam(
                p: p, g: g, m: m, v: v, count: count, beta1: beta1, beta2: beta2, scale: scale,
                stepSize: -lr * c2.squareRoot() / c1, epsilon2: eps * eps * c2)
            #endif
        }
    }

    /// The fused Adam pass over `count` floats (a multiple of 8, 16-byte aligned):
    /// `m += (1-β1)(s g - m)`, `v += (1-β2)((s g)² - v)`, `p += stepSize · m / sqrt(v + epsilon2)`,
    /// `g = 0`.
    ///
    /// `m / (sqrt(v) + eps)` is computed as `m / sqrt(v + eps²)` with IEEE square root and division
    /// (`sqrtps`, `divps`): exact, so the engine trains identically on every x86-64 CPU (the hardware
    /// reciprocal-square-root estimate differs between vendors). Four-lane vectors so that the loop maps
    /// one-to-one onto SSE registers on baseline x86-64.
    @inline(__always) @_optimize(speed)
    static func adam(
        p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, scale: Float,
        stepSize: Float, epsilon2: Float
    ) {
        if scale == 1 {
            adamLoop(p: p, g: g, m: m, v: v, count: count, beta1: beta1, beta2: beta2, scale: nil,
                     stepSize: stepSize, epsilon2: epsilon2)
        } else {
            adamLoop(p: p, g: g, m: m, v: v, count: count, beta1: beta1, beta2: beta2, scale: scale,
                     stepSize: stepSize, epsilon2: epsilon2)
        }
    }

    @inline(__always) @_optimize(speed)
    static func adamLoop(
        p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, scale: Float?,
        stepSize: Float, epsilon2: Float
    ) {
        typealias V4 = SIMD4<Float>
        @inline(__always) func load(_ q: UnsafeMutablePointer<Float>) -> V4 {
            UnsafeRawPointer(q).assumingMemoryBound(to: V4.self).pointee
        }
        @inline(__always) func store(_ x: V4, _ q: UnsafeMutablePointer<Float>) {
            UnsafeMutableRawPointer(q).assumingMemoryBound(to: V4.self).pointee = x
        }
        let r1 = V4(repeating: 1 - beta1), r2 = V4(repeating: 1 - beta2)
        let s = V4(repeating: scale ?? 1)
        let size = V4(repeating: stepSize), e2 = V4(repeating: epsilon2)
        @inline(__always) func sqrt(_ x: V4) -> V4 {
            #if arch(x86_64)
            return _mm_sqrt_ps(x)  // SIMD4's squareRoot() compiles to four libm calls here
            #else
            return x.squareRoot()
            #endif
        }
        @inline(__always) func one(_ i: Int) {
            let gv = scale == nil ? load(g + i) : load(g + i) * s
            var mv = load(m + i), vv = load(v + i)
            mv += r1 * (gv - mv)
            vv += r2 * (gv * gv - vv)
            store(mv, m + i)
            store(vv, v + i)
            store(V4(), g + i)
            store(load(p + i) + size * mv / sqrt(vv + e2), p + i)
        }
        var i = 0
        while i < count {
            one(i)
            one(i + 4)
            i += 8
        }
    }

    /// Fills `n` values at `offset` uniformly in `[-scale, scale]`.
    public func initializeUniform(_ offset: Int, _ n: Int, scale: Float, rng: inout SplitMix64) {
        for i in 0..<n {
            values.pointer[offset + i] = Float(rng.nextUnit() * 2 - 1) * scale
        }
    }
}

#if arch(x86_64)
internal import _Builtin_intrinsics.intel
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
