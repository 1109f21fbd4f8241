import Testing
import UnderstudySupervisor

/// When a planned swap pauses intake: the load forecast decides whether waiting can help, the deadline bounds it.
@Suite("Swap timing policy")
struct SwapTimingPolicyTests {
    let policy = SwapTimingPolicy(deadlineMillis: 500, quietRate: 50, expectedDrop: 0.8)

    @Test("steady or rising load: waiting cannot help, swap at once")
    func steadyLoad() {
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 20_000) == .swapNow("load steady or rising"))
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 30_000) == .swapNow("load steady or rising"))
        // A forecast drop smaller than 20 % is not worth waiting for.
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 16_500) == .swapNow("load steady or rising"))
    }

    @Test("a forecast drop: wait until the rate falls to the forecast, never past the deadline")
    func forecastDrop() {
        // A burst is ending: 20 000/s now, 2 000/s expected.
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 2_000) == .wait)
        #expect(policy.decide(waitedMillis: 100, currentRate: 12_000, forecastRate: 2_000) == .wait)
        #expect(policy.decide(waitedMillis: 200, currentRate: 2_400, forecastRate: 2_000) == .swapNow("load fell to the forecast"))
        // The drop never comes: the deadline ends the wait.
        #expect(policy.decide(waitedMillis: 499, currentRate: 20_000, forecastRate: 2_000) == .wait)
        #expect(policy.decide(waitedMillis: 500, currentRate: 20_000, forecastRate: 2_000) == .swapNow("deadline"))
    }

    @Test("quiet moments, missing forecasts and a zero deadline swap at once")
    func immediate() {
        #expect(policy.decide(waitedMillis: 0, currentRate: 10, forecastRate: 0) == .swapNow("quiet"))
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: nil) == .swapNow("no forecast"))
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: .nan) == .swapNow("no forecast"))
        let now = SwapTimingPolicy(deadlineMillis: 0)
        #expect(now.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 10) == .swapNow("immediate"))
    }

    @Test("a target that lags by more than half the pause budget is waited for, whatever the load")
    func laggingTarget() {
        // 60 ms of catch-up against a 50 ms budget: pausing now would only abort.
        #expect(policy.decide(waitedMillis: 0, currentRate: 20_000, forecastRate: 20_000,
                              targetCatchUpMillis: 60, pauseBudgetMillis: 50) == .wait)
        #expect(policy.decide(waitedMillis: 0, currentRate: 10, forecastRate: nil,
                              targetCatchUpMillis: .infinity, pauseBudgetMillis: 50) == .wait)
        // Caught up to within a quarter of the budget: the load rules decide again.
        #expect(policy.decide(waitedMillis: 120, currentRate: 20_000, forecastRate: 20_000,
                              targetCatchUpMillis: 12, pauseBudgetMillis: 50) == .swapNow("load fell to the forecast"))
        // Never past the deadline.
        #expect(policy.decide(waitedMillis: 500, currentRate: 20_000, forecastRate: 20_000,
                              targetCatchUpMillis: 60, pauseBudgetMillis: 50) == .swapNow("deadline"))
    }

    @Test("every decision within the deadline either waits or swaps; past it, always swaps")
    func bounded() {
        for waited in stride(from: Int64(0), through: 1_000, by: 50) {
            for rate in [0.0, 49, 51, 1_000, 100_000] {
                for forecast in [nil, 0, 10, 1_000, 1e9] as [Double?] {
                    let d = policy.decide(waitedMillis: waited, currentRate: rate, forecastRate: forecast)
                    if waited >= policy.deadlineMillis { #expect(d == .swapNow("deadline")) }
                }
            }
        }
    }
}
