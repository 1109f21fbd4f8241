/// A fixed-size, 64-byte aligned, zero-initialised buffer of `Float` for the numeric kernels.
///
/// Allocated once; the kernels work on its raw pointer so that no step allocates.
public final class FloatBuffer {
    /// The number of floats.
    public let count: Int
    /// The start of the storage (valid for the buffer's lifetime).
    public let pointer: UnsafeMutablePointer<Float>

    /// Allocates `count` floats, all zero.
    public init(count: Int) {
        precondition(count >= 0, "count must not be negative")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4 + 64, alignment: 64)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(1, count) + 16)
        self.pointer.initialize(repeating: 0, count: max(1, count) + 16)
    }

    deinit {
        UnsafeMutableRawPointer(pointer).deallocate()
    }

    /// Reads or writes one element.
    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// Sets every element to zero.
    public func zero() {
        pointer.update(repeating: 0, count: count)
    }
}

/// Rounds `n` up to a multiple of 8 (the SIMD width of the kernels).
@inlinable
public func roundUp8(_ n: Int) -> Int { (n + 7) & ~7 }

/// Numeric kernels over raw `Float` pointers. Lengths passed as `n8` must be multiples of 8 and
/// pointers 32-byte aligned (every buffer and parameter slice here is).
///
/// `@_optimize(speed)` keeps them fast in debug builds too, so the test suite stays quick.
///
/// Uses plain `acc += a * b` (SIMD.addProduct is an emulated FMA on baseline x86-64 and slower).
public enum Kernels {
    @inline(__always) @_optimize(speed)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).assumingMemoryBound(to: SIMD8<Float>.self).pointee
    }

    @inline(__always) @_optimize(speed)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: SIMD8<Float>.self).pointee = v
    }

    /// Dot product of two vectors of length `n8` (a multiple of 8).
    @inlinable @inline(__always) @_optimize(speed)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n8: Int) -> Float {
        #if DEBUG
        // Debug builds: scalar code, which -Onone handles far better than generic SIMD operators.
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var i = 0
        while i < n8 {
            s0 += a[i] * b[i] + a[i + 4] * b[i + 4]
            s1 += a[i + 1] * b[i + 1] + a[i + 5] * b[i + 5]
            s2 += a[i + 2] * b[i + 2] + a[i + 6] * b[i + 6]
            s3 += a[i + 3] * b[i + 3] + a[i + 7] * b[i + 7]
            i += 8
        }
        return (s0 + s1) + (s2 + s3)
        #else
        var acc0 = SIMD8<Float>()
        var acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n8 {
            acc0 += UnsafeRawPointer(a + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
                * UnsafeRawPointer(b + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
            acc1 += UnsafeRawPointer(a + i + 8).assumingMemoryBound(to: SIMD8<Float>.self).pointee
                * UnsafeRawPointer(b + i + 8).assumingMemoryBound(to: SIMD8<Float>.self).pointee
            i += 16
        }
        if i < n8 {
            acc0 += UnsafeRawPointer(a + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
                * UnsafeRawPointer(b + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
        }
        return (acc0 + acc1).sum()
        #endif
    }

    /// `y += alpha * x` over `n8` elements (a multiple of 8).
    @inlinable @inline(__always) @_optimize(speed)
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n8: Int) {
        #if DEBUG
        var i = 0
        while i < n8 {
            y[i] += alpha * x[i]; y[i + 1] += alpha * x[i + 1]; y[i + 2] += alpha * x[i + 2]
            y[i + 3] += alpha * x[i + 3]; y[i + 4] += alpha * x[i + 4]; y[i + 5] += alpha * x[i + 5]
            y[i + 6] += alpha * x[i + 6]; y[i + 7] += alpha * x[i + 7]
            i += 8
        }
        #else
        let a = SIMD8<Float>(repeating: alpha)
        var i = 0
        while i < n8 {
            let yv = UnsafeRawPointer(y + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
            let xv = UnsafeRawPointer(x + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee
            UnsafeMutableRawPointer(y + i).assumingMemoryBound(to: SIMD8<Float>.self).pointee = yv + a * xv
            i += 8
        }
        #endif
    }

    /// `y[r] = bias[r] + dot(W[r, :], x)` for `rows` rows of a row-major matrix with row stride `n8`.
    @inlinable @_optimize(speed)
    public static func matvec(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, _ x: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            y[r] = bias[r] + dot(w + r * n8, x, n8)
        }
    }

    /// `dx += W^T dy` for a row-major matrix with `rows` rows and row stride `n8`.
    @inlinable @_optimize(speed)
    public static func matvecTransposedAccumulate(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows where dy[r] != 0 {
            axpy(dy[r], w + r * n8, dx, n8)
        }
    }

    /// `dW += dy x^T` (outer-product accumulate) for `rows` rows of stride `n8`.
    @inlinable @_optimize(speed)
    public static func outerAccumulate(
        _ dy: UnsafePointer<Float>, rows: Int, _ x: UnsafePointer<Float>, n8: Int, _ dw: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows where dy[r] != 0 {
            axpy(dy[r], x, dw + r * n8, n8)
        }
    }

    /// The logistic function.
    @inlinable @inline(__always) @_optimize(speed)
    public static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
