/// Cumulative and sliding-window top-1/top-5 counts for one predictor.
struct WindowedScore {
    private var ring: [UInt8]
    private var position = 0
    private var filled = 0
    private(set) var windowTop1 = 0
    private(set) var windowTop5 = 0
    private(set) var scored = 0
    private(set) var top1 = 0
    private(set) var top5 = 0

    init(window: Int) { ring = Array(repeating: 0, count: max(1, window)) }

    mutating func record(top1 hit1: Bool, top5 hit5: Bool) {
        let bits = (hit1 ? 1 : 0) | (hit5 ? 2 : 0)
        if filled == ring.count {
            let old = ring[position]
            windowTop1 -= Int(old & 1)
            windowTop5 -= Int(old >> 1)
        } else {
            filled += 1
        }
        ring[position] = UInt8(bits)
        position += 1
        if position == ring.count { position = 0 }
        windowTop1 += hit1 ? 1 : 0
        windowTop5 += hit5 ? 1 : 0
        scored += 1
        top1 += hit1 ? 1 : 0
        top5 += hit5 ? 1 : 0
    }

    var windowTop1Rate: Double { filled == 0 ? 0 : Double(windowTop1) / Double(filled) }
    var windowTop5Rate: Double { filled == 0 ? 0 : Double(windowTop5) / Double(filled) }

    func report(name: String) -> PredictionReport.PredictorScore {
        PredictionReport.PredictorScore(
            name: name, scored: scored, top1Hits: top1, top5Hits: top5,
            top1: scored == 0 ? 0 : Double(top1) / Double(scored),
            top5: scored == 0 ? 0 : Double(top5) / Double(scored),
            windowTop1: windowTop1Rate, windowTop5: windowTop5Rate)
    }
}

/// Running mean and variance (exponentially weighted after a warm-up) for calibrating surprise.
struct RunningCalibration {
    private(set) var count = 0
    private(set) var mean = 0.0
    private(set) var variance = 1.0
    let alpha: Double

    init(alpha: Double = 0.001) { self.alpha = alpha }

    /// Returns the z-score of `x` against the distribution so far, then folds `x` in.
    mutating func zScoreThenAdd(_ x: Double) -> Double {
        let z = count < 20 ? 0 : (x - mean) / max(variance.squareRoot(), 1e-6)
        count += 1
        let a = max(alpha, 1 / Double(count))
        let delta = x - mean
        mean += a * delta
        variance = count == 1 ? 1 : (1 - a) * (variance + a * delta * delta)
        return z
    }
}
