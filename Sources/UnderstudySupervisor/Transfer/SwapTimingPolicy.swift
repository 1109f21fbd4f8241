/// When, inside a short deadline, a planned swap should pause intake.
///
/// The pause costs every client the same few milliseconds, so the best moment is the quietest one. The
/// prediction engine's load forecast says whether load is about to fall; the pipeline's measured arrival rate
/// says when it has. The policy waits only while the forecast expects the rate to fall by at least
/// ``expectedDrop`` — a swap under steady or rising load goes at once — or while the target lags by more than
/// it can apply in half the pause budget, and never past the deadline.
/// Pure: the runner feeds it measurements and acts on its decisions.
public struct SwapTimingPolicy: Sendable, Equatable {
    /// The longest a swap waits for a quieter moment (0: swap at once).
    public var deadlineMillis: Int64
    /// Below this arrival rate (requests/s) every moment is quiet enough.
    public var quietRate: Double
    /// Wait only while the forecast rate is below this fraction of the current rate.
    public var expectedDrop: Double

    /// Creates a policy (defaults: 500 ms deadline, 50 requests/s is quiet, wait for a drop of 20 % or more).
    public init(deadlineMillis: Int64 = 500, quietRate: Double = 50, expectedDrop: Double = 0.8) {
        self.deadlineMillis = deadlineMillis
        self.quietRate = quietRate
        self.expectedDrop = expectedDrop
    }

    /// What to do now.
    public enum Decision: Equatable, Sendable {
        /// Pause intake now, for this reason.
        case swapNow(String)
        /// Check again shortly.
        case wait
    }

    /// Decides, from the time waited so far, the arrival rate just measured and the forecast for the next
    /// window (requests/s; nil when the prediction engine is off or has no forecast yet).
    ///
    /// The pause lasts at least as long as the target needs to apply what it lags by, so while that is expected
    /// to take more than half the pause budget (`targetCatchUpMillis`: the target's lag divided by its measured
    /// apply rate) the swap waits for the target first, whatever the load — a swap that would only abort on
    /// its budget helps nobody.
    public func decide(
        waitedMillis: Int64, currentRate: Double, forecastRate: Double?,
        targetCatchUpMillis: Double = 0, pauseBudgetMillis: Double = .infinity
    ) -> Decision {
        if waitedMillis >= deadlineMillis { return deadlineMillis == 0 ? .swapNow("immediate") : .swapNow("deadline") }
        if !(targetCatchUpMillis <= pauseBudgetMillis / 2) { return .wait }
        if currentRate <= quietRate { return .swapNow("quiet") }
        guard let forecastRate, forecastRate.isFinite else { return .swapNow("no forecast") }
        if forecastRate >= expectedDrop * currentRate {
            return .swapNow(waitedMillis == 0 ? "load steady or rising" : "load fell to the forecast")
        }
        return .wait
    }
}

/// How a swap's moment was chosen, as recorded in the swap history.
public struct SwapTimingRecord: Codable, Sendable, Equatable {
    /// Why it went when it did: immediate, quiet, no forecast, load steady or rising, load fell to the
    /// forecast, deadline.
    public var decision: String
    /// Milliseconds waited for a quieter moment.
    public var waitedMillis: Int64
    /// The measured arrival rate (requests/s) when the swap was asked for, and when intake paused.
    public var rateAtRequest: Double
    public var rateAtSwap: Double
    /// The forecast rate (requests/s) when intake paused, if there was one.
    public var forecastRate: Double?
    /// The target's expected catch-up time (its lag over its measured apply rate) when intake paused, in ms.
    public var targetCatchUpMillis: Double?
}
