#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Four-lane kernels for the recurrent cells: blocked matrix–vector products and vectorised
/// logistic / tanh, so that a cell step makes no libm call and reads its input vector once per
/// four weight rows.
///
/// `SIMD4<Float>` maps to one SSE register on baseline x86-64 (and one NEON register on arm64);
/// `+ - * /`, comparisons and `replacing(with:where:)` lower to single instructions there.
/// Pointers must be 16-byte aligned (every buffer and parameter slice here is 32-byte aligned).
/// Plain `a + b * c` is used: `addingProduct` is an emulated FMA without `-mfma` and slower.
///
/// Debug builds (`-Onone` does not specialise the generic SIMD members used here, which made
/// the test suite 9× slower) compute `exp4`, `sigmoid4`, `tanh4` and `dot4Rows` lane by lane
/// with libm and the scalar `dot`, and `linearBackward` with the scalar `axpy`; the release paths are checked by running the test suite with
/// `-c release -Xswiftc -enable-testing`.
extension Kernels {
    typealias V4 = SIMD4<Float>

    @inline(__always) @_optimize(speed)
    static func load4(_ p: UnsafePointer<Float>) -> V4 {
        UnsafeRawPointer(p).assumingMemoryBound(to: V4.self).pointee
    }

    @inline(__always) @_optimize(speed)
    static func load4(_ p: UnsafeMutablePointer<Float>) -> V4 {
        UnsafeRawPointer(p).assumingMemoryBound(to: V4.self).pointee
    }

    @inline(__always) @_optimize(speed)
    static func store4(_ v: V4, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: V4.self).pointee = v
    }

    /// e^x per lane (Cephes `expf` polynomial, relative error < 2e-7), x clamped to [-87, 88].
    @inline(__always) @_optimize(speed)
    static func exp4(_ x: V4) -> V4 {
        var x = x.replacing(with: 88, where: x .> 88)
        x = x.replacing(with: -87, where: x .< -87)
        // Adding 1.5 × 2^23 rounds x·log2(e) to the nearest integer n, which then sits in the
        // low mantissa bits of `t`.
        let shifter = V4(repeating: 12_582_912)
        let t = x * 1.442_695_04 + shifter
        let n = t - shifter
        let r = (x - n * 0.693_359_375) - n * -2.121_944_4e-4
        var p = r * 1.987_569_15e-4 + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        p = p * (r * r) + r + 1
        let bits = (unsafeBitCast(t, to: SIMD4<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: V4.self)
    }

    /// The logistic function per lane (`sigmoidApproximation4` in release builds, libm in debug).
    @inline(__always) @_optimize(speed)
    static func sigmoid4(_ x: V4) -> V4 {
        #if DEBUG
        return V4(sigmoid(x[0]), sigmoid(x[1]), sigmoid(x[2]), sigmoid(x[3]))
        #else
        return sigmoidApproximation4(x)
        #endif
    }

    /// tanh per lane (`tanhApproximation4` in release builds, libm in debug).
    @inline(__always) @_optimize(speed)
    static func tanh4(_ x: V4) -> V4 {
        #if DEBUG
        return V4(tanhf(x[0]), tanhf(x[1]), tanhf(x[2]), tanhf(x[3]))
        #else
        return tanhApproximation4(x)
        #endif
    }

    /// 1 / (1 + e^−x) per lane from `exp4`.
    @inline(__always) @_optimize(speed)
    static func sigmoidApproximation4(_ x: V4) -> V4 {
        1 / (1 + exp4(-x))
    }

    /// tanh per lane: 2σ(2x) − 1, and for |x| < 0.625 the Cephes `tanhf` odd polynomial (so small
    /// values keep their relative precision). Error < 3e-7 absolute.
    @inline(__always) @_optimize(speed)
    static func tanhApproximation4(_ x: V4) -> V4 {
        let large = 2 / (1 + exp4(-2 * x)) - 1
        let z = x * x
        var p = z * -5.704_988_727_45e-3 + 2.063_908_879_54e-2
        p = p * z - 5.373_971_555_31e-2
        p = p * z + 1.333_144_220_36e-1
        p = p * z - 3.333_328_194_22e-1
        let small = p * z * x + x
        return large.replacing(with: small, where: z .< 0.390_625)
    }

    /// The four dot products of rows `w`, `w + n8`, `w + 2 n8`, `w + 3 n8` with `x` (`n8` a
    /// multiple of 8).
    @inline(__always) @_optimize(speed)
    static func dot4Rows(_ w: UnsafePointer<Float>, _ n8: Int, _ x: UnsafePointer<Float>) -> V4 {
        let w1 = w + n8, w2 = w1 + n8, w3 = w2 + n8
        #if DEBUG
        return V4(dot(w, x, n8), dot(w1, x, n8), dot(w2, x, n8), dot(w3, x, n8))
        #else
        var a0 = V4(), a1 = V4(), a2 = V4(), a3 = V4()
        var b0 = V4(), b1 = V4(), b2 = V4(), b3 = V4()
        var k = 0
        while k < n8 {
            let x0 = load4(x + k), x1 = load4(x + k + 4)
            a0 += load4(w + k) * x0
            a1 += load4(w1 + k) * x0
            a2 += load4(w2 + k) * x0
            a3 += load4(w3 + k) * x0
            b0 += load4(w + k + 4) * x1
            b1 += load4(w1 + k + 4) * x1
            b2 += load4(w2 + k + 4) * x1
            b3 += load4(w3 + k + 4) * x1
            k += 8
        }
        a0 += b0
        a1 += b1
        a2 += b2
        a3 += b3
        // Transpose-and-add: lane i of the result is the sum of the lanes of a_i.
        let q01 = V4(lowHalf: a0.lowHalf + a0.highHalf, highHalf: a1.lowHalf + a1.highHalf)
        let q23 = V4(lowHalf: a2.lowHalf + a2.highHalf, highHalf: a3.lowHalf + a3.highHalf)
        let q = SIMD8(lowHalf: q01, highHalf: q23)
        return q.evenHalf + q.oddHalf
        #endif
    }

    /// `y[r ..< r+4] = bias + W[r ..< r+4, :] · x` for every block of 4 of `rows` rows (a
    /// multiple of 4) of a row-major matrix with row stride `n8` (a multiple of 8).
    @inline(__always) @_optimize(speed)
    static func matvec4(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, _ x: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>
    ) {
        var r = 0
        while r < rows {
            store4(load4(bias + r) + dot4Rows(w + r * n8, n8, x), y + r)
            r += 4
        }
    }

    /// The backward pass of `y = W x` for `rows` rows (a multiple of 4) of stride `n8`, in one
    /// sweep over W: `dx += Wᵀ dy` and `dW += dy xᵀ`. Blocks of 4 rows whose `dy` is all zero
    /// are skipped.
    @_optimize(speed)
    static func linearBackward(
        _ w: UnsafePointer<Float>, rows: Int, n8: Int, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
        dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>
    ) {
        #if DEBUG
        matvecTransposedAccumulate(w, rows: rows, n8: n8, dy, dx)
        outerAccumulate(dy, rows: rows, x, n8: n8, dw)
        #else
        var r = 0
        while r < rows {
            let d = load4(dy + r)
            if d == V4() {
                r += 4
                continue
            }
            let d0 = V4(repeating: d[0]), d1 = V4(repeating: d[1])
            let d2 = V4(repeating: d[2]), d3 = V4(repeating: d[3])
            let w0 = w + r * n8, w1 = w0 + n8, w2 = w1 + n8, w3 = w2 + n8
            let g0 = dw + r * n8, g1 = g0 + n8, g2 = g1 + n8, g3 = g2 + n8
            var k = 0
            while k < n8 {
                let xk = load4(x + k)
                var acc = load4(dx + k)
                acc += d0 * load4(w0 + k)
                acc += d1 * load4(w1 + k)
                acc += d2 * load4(w2 + k)
                acc += d3 * load4(w3 + k)
                store4(acc, dx + k)
                store4(load4(g0 + k) + d0 * xk, g0 + k)
                store4(load4(g1 + k) + d1 * xk, g1 + k)
                store4(load4(g2 + k) + d2 * xk, g2 + k)
                store4(load4(g3 + k) + d3 * xk, g3 + k)
                k += 4
            }
            r += 4
        }
        #endif
    }
}
