import UnderstudyFrontend

/// How fast a worker applies inputs while it has work: what turns a backlog (inputs) into a lag (time).
///
/// Sampled at most every ``minimumInterval`` nanoseconds; a sample counts only when the worker had a backlog at
/// both ends of the interval (busy throughout, as far as the supervisor can tell), so an idle worker does not
/// look slow. Plain value: the pipeline keeps one per instance and feeds it on the event loop.
struct ApplyRateMeter: Sendable {
    /// The shortest interval a sample spans.
    static let minimumInterval: Int64 = 5_000_000
    /// The weight of a new sample in the moving average.
    static let weight = 0.3

    private var lastTime: Int64?
    private var lastApplied: UInt64 = 0
    private var hadBacklog = false
    /// Inputs applied per second while busy; nil until measured.
    private(set) var inputsPerSecond: Double?

    /// Records that at `nanoseconds` (any monotonic clock) the worker had applied up to `applied` with `backlog`
    /// inputs still to apply.
    mutating func observe(nanoseconds now: Int64, applied: UInt64, backlog: UInt64) {
        // Idle at any moment — even one closer to the last observation than the minimum interval — ends the busy
        // interval. Otherwise single inputs at a steady pace (a tick every 100 ms, each applied at once) would look
        // like a worker busy throughout at 10 inputs/s, and the first burst of load would project seconds of lag.
        guard let last = lastTime, backlog > 0 else {
            (lastTime, lastApplied, hadBacklog) = (now, applied, backlog > 0)
            return
        }
        let elapsed = now - last
        guard elapsed >= Self.minimumInterval else { return }
        if hadBacklog && backlog > 0 && applied >= lastApplied {
            let sample = Double(applied - lastApplied) * 1e9 / Double(elapsed)
            inputsPerSecond = inputsPerSecond.map { $0 * (1 - Self.weight) + sample * Self.weight } ?? sample
        }
        (lastTime, lastApplied, hadBacklog) = (now, applied, backlog > 0)
    }

    /// How long applying `backlog` inputs takes at the measured rate, in nanoseconds (0 before any measurement;
    /// capped at an hour for a worker that has stopped applying).
    func drainTime(backlog: UInt64) -> Int64 {
        guard backlog > 0, let rate = inputsPerSecond else { return 0 }
        let hour = 3_600_000_000_000.0
        guard rate > 0 else { return Int64(hour) }
        return Int64(min(Double(backlog) / rate * 1e9, hour))
    }
}

/// Decides how much client intake to hold (``IntakeThrottle/Level``) from how far behind the workers are, so that
/// the standby stays within `--max-standby-lag-ms` and failover and swap stay available under any load.
///
/// Each worker's lag is projected: the larger of how long ago the oldest input it has not applied arrived, and how
/// long it needs to apply everything sequenced so far at its measured rate. The second is what keeps the first
/// under the limit: when intake is held at the moment the oldest input reaches the limit, the worker still has
/// everything that arrived since to apply, and the lag keeps growing while it does (by the ratio of arrival to
/// apply rate — 1.6× in a bulk load measured before this existed).
///
/// - The primary's queue and a standby catching up after a restore hold pipelines only (a client waiting for each
///   reply adds at most one request at a time, so it cannot grow either much; holding it would stall every
///   client for the whole catch-up).
/// - The live standby (the failover target) may close intake entirely: when it stalls — a snapshot, a slow
///   machine — while the primary answers, even one-at-a-time clients would take it past the limit.
///
/// Hysteresis: pipelines are held above half the limit and released below a quarter; intake closes above the
/// limit and reopens (to pipelines held) below half.
enum IntakeGovernor {
    /// The level intake should be held at.
    ///
    /// - Parameters:
    ///   - current: The level now.
    ///   - limit: `--max-standby-lag-ms`, in nanoseconds.
    ///   - queue: The larger projected lag of the primary and of any standby catching up, in nanoseconds.
    ///   - standby: The projected lag of the live failover target, in nanoseconds (0 when there is none).
    static func level(current: IntakeThrottle.Level, limit: Int64, queue: Int64, standby: Int64) -> IntakeThrottle.Level {
        if standby > limit { return .closed }
        if current == .closed && standby > limit / 2 { return .closed }
        let highest = max(queue, standby)
        if highest > limit / 2 { return .pipelinesHeld }
        if current != .open && highest > limit / 4 { return .pipelinesHeld }
        return .open
    }
}
