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

/// Numeric kernels over raw `Float` pointers. Lengths passed as `n8` must be multiples of 8.
///
/// Uses plain `acc += a * b` (SIMD.addProduct is an emulated FMA on baseline x86-64 and slower).
public enum Kernels {
    @inline(__always)
    static func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Dot product of two vectors of length `n8` (a multiple of 8).
    @inlinable @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n8: Int) -> Float {
        var acc0 = SIMD8<Float>()
        var acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n8 {
            acc0 += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            acc1 += UnsafeRawPointer(a + i + 8).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + i + 8).loadUnaligned(as: SIMD8<Float>.self)
            i += 16
        }
        if i < n8 {
            acc0 += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        }
        return (acc0 + acc1).sum()
    }

    /// `y += alpha * x` over `n8` elements (a multiple of 8).
    @inlinable @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n8: Int) {
        let a = SIMD8<Float>(repeating: alpha)
        var i = 0
        while i < n8 {
            let yv = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
            let xv = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: yv + a * xv, as: SIMD8<Float>.self)
            i += 8
        }
    }

    /// `y[r] = bias[r] + dot(W[r, :], x)` for `rows` rows of a row-major matrix with row stride `n8`.
    @inlinable
    public static func matvec(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, _ x: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows {
            y[r] = bias[r] + dot(w + r * n8, x, n8)
        }
    }

    /// `dx += W^T dy` for a row-major matrix with `rows` rows and row stride `n8`.
    @inlinable
    public static func matvecTransposedAccumulate(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows where dy[r] != 0 {
            axpy(dy[r], w + r * n8, dx, n8)
        }
    }

    /// `dW += dy x^T` (outer-product accumulate) for `rows` rows of stride `n8`.
    @inlinable
    public static func outerAccumulate(
        _ dy: UnsafePointer<Float>, rows: Int, _ x: UnsafePointer<Float>, n8: Int, _ dw: UnsafeMutablePointer<Float>
    ) {
        for r in 0..<rows where dy[r] != 0 {
            axpy(dy[r], x, dw + r * n8, n8)
        }
    }

    /// The logistic function.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
