#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import UnderstudyPrediction

/// The vectorised exp / logistic / tanh of the release-build cells against libm (they are
/// compiled and checked in debug builds too, where the cells themselves use libm).
@Suite("Vector math")
struct VectorMathTests {
    @Test("exp4, sigmoid and tanh approximations match libm")
    func approximations() {
        var worstExp: Float = 0, worstSigmoid: Float = 0, worstTanh: Float = 0, worstTanhRelative: Float = 0
        var x: Float = -30
        while x <= 30 {
            let v = SIMD4<Float>(x, x / 7, -x / 3, x / 1000)
            let e = Kernels.exp4(v), s = Kernels.sigmoidApproximation4(v), t = Kernels.tanhApproximation4(v)
            for i in 0..<4 {
                worstExp = max(worstExp, abs(e[i] - expf(v[i])) / expf(v[i]))
                worstSigmoid = max(worstSigmoid, abs(s[i] - 1 / (1 + expf(-v[i]))))
                worstTanh = max(worstTanh, abs(t[i] - tanhf(v[i])))
                if v[i] != 0 { worstTanhRelative = max(worstTanhRelative, abs(t[i] - tanhf(v[i])) / abs(tanhf(v[i]))) }
            }
            x += 0.0137
        }
        #expect(worstExp < 1e-6)
        #expect(worstSigmoid < 1e-6)
        #expect(worstTanh < 1e-6)
        #expect(worstTanhRelative < 1e-5)
        // Saturation instead of overflow or NaN.
        let big = Kernels.sigmoidApproximation4(SIMD4(-200, 200, -1e30, 1e30))
        #expect(big == SIMD4(0, 1, 0, 1) || (big[0] < 1e-30 && big[1] == 1 && big[2] < 1e-30 && big[3] == 1))
        let tBig = Kernels.tanhApproximation4(SIMD4(-200, 200, 0, -0.5))
        #expect(tBig[0] == -1 && tBig[1] == 1 && tBig[2] == 0 && abs(tBig[3] - tanhf(-0.5)) < 1e-7)
    }

    @Test("blocked dot products and the fused linear backward match the scalar kernels")
    func blockedKernels() {
        let rows = 8, n8 = 24
        let w = FloatBuffer(count: rows * n8), x = FloatBuffer(count: n8), dy = FloatBuffer(count: rows)
        var rng = SplitMix64(seed: 3)
        for i in 0..<w.count { w[i] = Float(rng.nextUnit() * 2 - 1) }
        for i in 0..<n8 { x[i] = Float(rng.nextUnit() * 2 - 1) }
        for r in 0..<rows { dy[r] = r == 2 || (r >= 4) ? 0 : Float(rng.nextUnit() * 2 - 1) }
        let bias = FloatBuffer(count: rows), y = FloatBuffer(count: rows)
        Kernels.matvec4(w.pointer, rows: rows, n8: n8, x.pointer, bias: bias.pointer, y.pointer)
        for r in 0..<rows {
            var s: Float = 0
            for k in 0..<n8 { s += w[r * n8 + k] * x[k] }
            #expect(abs(y[r] - s) < 1e-5)
        }
        let dx = FloatBuffer(count: n8), dw = FloatBuffer(count: rows * n8)
        Kernels.linearBackward(w.pointer, rows: rows, n8: n8, dy: dy.pointer, x: x.pointer, dx: dx.pointer, dw: dw.pointer)
        for k in 0..<n8 {
            var s: Float = 0
            for r in 0..<rows { s += w[r * n8 + k] * dy[r] }
            #expect(abs(dx[k] - s) < 1e-5)
        }
        for r in 0..<rows {
            for k in 0..<n8 { #expect(abs(dw[r * n8 + k] - dy[r] * x[k]) < 1e-6) }
        }
    }
}
