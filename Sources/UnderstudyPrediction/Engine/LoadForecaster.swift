#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Forecasts one per-window quantity (request count, write churn) for the window in progress.
///
/// An online linear model in log space over the last windows (normalised LMS), guarded like the
/// key predictor: it publishes the model's forecast only while its running absolute error is
/// below the naive "same as the last closed window" forecast's.
struct WindowForecaster {
    private var history: [Double] = []   // log1p of the last closed windows, most recent first
    private var weights: [Double] = [0, 1, 0, 0, 0]  // bias, w-1, w-2, w-3, mean of last 8
    private var modelError = 0.0
    private var naiveError = 0.0
    private(set) var closed = 0
    private(set) var publishedAbsoluteErrorSum = 0.0
    private let rate = 0.05

    private func features() -> [Double] {
        let h = history
        let mean = h.isEmpty ? 0 : h.prefix(8).reduce(0, +) / Double(min(8, h.count))
        return [1, h.count > 0 ? h[0] : 0, h.count > 1 ? h[1] : 0, h.count > 2 ? h[2] : 0, mean]
    }

    private func modelForecast() -> Double {
        let x = features()
        var y = 0.0
        for i in x.indices { y += weights[i] * x[i] }
        return max(0, expm1(min(y, 40)))
    }

    private var naiveForecast: Double { history.isEmpty ? 0 : expm1(history[0]) }

    /// The published forecast for the window in progress.
    var forecast: Double { modelError <= naiveError ? modelForecast() : naiveForecast }

    /// Folds in the total of a closed window.
    mutating func close(_ value: Double) {
        if !history.isEmpty {
            publishedAbsoluteErrorSum += abs(forecast - value)
            let beta = 0.05
            modelError += beta * (abs(modelForecast() - value) - modelError)
            naiveError += beta * (abs(naiveForecast - value) - naiveError)
            let x = features()
            var y = 0.0
            var norm = 1e-6
            for i in x.indices { y += weights[i] * x[i]; norm += x[i] * x[i] }
            let error = log1p(value) - y
            for i in x.indices { weights[i] += rate * error * x[i] / norm }
        }
        closed += 1
        history.insert(log1p(max(0, value)), at: 0)
        if history.count > 8 { history.removeLast() }
    }

    var meanAbsoluteError: Double { closed > 1 ? publishedAbsoluteErrorSum / Double(closed - 1) : 0 }
}
