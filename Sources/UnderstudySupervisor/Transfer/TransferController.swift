import UnderstudyWire

/// Settings of the transfer controller, with documented defaults.
public struct TransferConfiguration: Sendable {
    /// The longest intake may stay paused; past it the swap aborts (default 50 ms).
    public var pauseBudgetMillis: Int64 = 50
    /// The most keys a swap patches from the primary into the target before it aborts (default 1 000).
    public var residualLimit: Int = 1_000
    /// How long the old primary stays as a standby after a swap (default 30 s).
    public var probationSeconds: Double = 30
    /// Roll back when the new primary's error-reply fraction exceeds this in probation (default 0.05)…
    public var probationErrorRate: Double = 0.05
    /// …or its p99 latency exceeds this many milliseconds (default 500)…
    public var probationLatencyP99Millis: Double = 500
    /// …or the discrepancy rate between the two exceeds this (default 0.05).
    public var probationDiscrepancyRate: Double = 0.05
    /// The fewest requests probation needs before judging rates (default 50).
    public var probationMinimumRequests: Int = 50
    /// Creates the defaults.
    public init() {}
}

/// Why a swap happens.
public enum SwapReason: String, Codable, Sendable {
    /// `understudy swap`: a same-version shadow takes over.
    case planned
    /// `understudy deploy`: a validated candidate takes over.
    case deploy
    /// `understudy rollback` or an automatic rollback during probation.
    case rollback
}

/// The steps of a swap, in order.
public enum SwapStep: String, Codable, Sendable, CaseIterable {
    case pause, drain, catchUp = "catch_up", verify, patch, flip, resume
}

/// A swap's outcome.
public struct SwapOutcome: Codable, Sendable, Equatable {
    /// True when roles were flipped.
    public var succeeded: Bool
    /// Why it aborted, when it did.
    public var abortReason: String?
    /// Keys patched from the primary into the target.
    public var residualKeys: Int
    /// Whether digests were compared (false across schema versions, which are verified before the swap).
    public var digestsCompared: Bool
}

/// The transfer controller: a pure state machine. Events in, actions out, no I/O.
///
/// The runner performs each action and reports what happened as the next event. Every abort
/// path returns ``Action/abort(_:)`` before roles flip, so the old primary keeps serving.
public struct TransferController: Sendable {
    /// What happened.
    public enum Event: Sendable, Equatable {
        /// Begin the swap.
        case start
        /// Intake is paused; new requests are held.
        case intakePaused
        /// The primary has answered every sequenced request (up to `sequence`).
        case drained(sequence: UInt64)
        /// The target has applied `sequence`.
        case caughtUp(sequence: UInt64)
        /// Both instances' digests at the same sequence.
        case digests(primary: DigestReport, target: DigestReport)
        /// The entries of the mismatched buckets on both sides.
        case drilledDown(primary: [KeyHash], target: [KeyHash])
        /// The residual keys were patched into the target.
        case patched(count: Int)
        /// Roles were flipped.
        case flipped
        /// Intake resumed.
        case resumed
        /// The pause budget ran out.
        case pauseBudgetExceeded
        /// The target died or failed a step.
        case targetFailed(String)
        /// The primary died or failed a step.
        case primaryFailed(String)
    }

    /// What the runner must do next.
    public enum Action: Sendable, Equatable {
        case pauseIntake
        case waitForDrain
        case waitForTarget(sequence: UInt64)
        case requestDigests
        case requestDrillDown(buckets: [UInt32])
        /// Fetch these keys' values from the primary and patch them into the target (nil = delete).
        case patch(keys: [MapKey])
        case flipRoles
        case resumeIntake
        /// The swap is over; roles flipped.
        case finish(SwapOutcome)
        /// Give up: resume intake with the old primary; nothing was lost.
        case abort(String)
    }

    /// Where the controller is.
    public enum State: Sendable, Equatable {
        case idle, pausing, draining, catchingUp, verifying, drillingDown, patching, reverifying, flipping, resuming
        case finished, aborted(String)
    }

    /// The current state.
    public private(set) var state: State = .idle
    /// Whether the two instances share a schema (only then are digests compared).
    public let sameSchema: Bool
    /// The residual limit.
    public let residualLimit: Int
    /// The last sequence number when intake paused.
    public private(set) var pausedAt: UInt64 = 0
    /// Keys patched.
    public private(set) var patchedKeys = 0

    /// Creates a controller.
    public init(sameSchema: Bool, residualLimit: Int) {
        self.sameSchema = sameSchema
        self.residualLimit = residualLimit
    }

    /// True once the swap finished or aborted.
    public var isDone: Bool {
        switch state {
        case .finished, .aborted: return true
        default: return false
        }
    }

    /// Handles one event and returns the actions to take, in order.
    public mutating func handle(_ event: Event) -> [Action] {
        if isDone { return [] }
        switch (state, event) {
        case (.idle, .start):
            state = .pausing
            return [.pauseIntake]
        case (_, .pauseBudgetExceeded):
            guard state != .flipping && state != .resuming else { return [] }
            return abort("the pause budget was exceeded in step \(state) before the target was verified")
        case (_, .targetFailed(let why)):
            guard state != .resuming else { return [] }
            return abort("the target failed: \(why)")
        case (_, .primaryFailed(let why)):
            guard state != .resuming else { return [] }
            return abort("the primary failed: \(why)")
        case (.pausing, .intakePaused):
            state = .draining
            return [.waitForDrain]
        case (.draining, .drained(let seq)):
            pausedAt = seq
            state = .catchingUp
            return [.waitForTarget(sequence: seq)]
        case (.catchingUp, .caughtUp(let seq)):
            guard seq >= pausedAt else { return [] }
            if !sameSchema {
                state = .flipping
                return [.flipRoles]
            }
            state = .verifying
            return [.requestDigests]
        case (.verifying, .digests(let p, let t)), (.reverifying, .digests(let p, let t)):
            guard p.sequence == t.sequence else {
                return abort("digests were taken at different sequence numbers (\(p.sequence) vs \(t.sequence))")
            }
            let mismatched = p.mismatchedBuckets(against: t)
            if mismatched.isEmpty {
                state = .flipping
                return [.flipRoles]
            }
            if state == .reverifying {
                return abort("\(mismatched.count) buckets still differ after patching \(patchedKeys) keys")
            }
            state = .drillingDown
            return [.requestDrillDown(buckets: mismatched.map { UInt32($0) })]
        case (.drillingDown, .drilledDown(let p, let t)):
            let keys = Self.differingKeys(primary: p, target: t)
            guard keys.count <= residualLimit else {
                return abort("the target diverged: \(keys.count) keys differ, more than the residual limit of \(residualLimit)")
            }
            guard !keys.isEmpty else {
                return abort("digests differ but no differing key was found")
            }
            state = .patching
            return [.patch(keys: keys)]
        case (.patching, .patched(let count)):
            patchedKeys = count
            state = .reverifying
            return [.requestDigests]
        case (.flipping, .flipped):
            state = .resuming
            return [.resumeIntake]
        case (.resuming, .resumed):
            state = .finished
            return [.finish(SwapOutcome(succeeded: true, abortReason: nil, residualKeys: patchedKeys, digestsCompared: sameSchema))]
        default:
            return []
        }
    }

    private mutating func abort(_ reason: String) -> [Action] {
        state = .aborted(reason)
        return [.abort(reason)]
    }

    /// The keys whose entries differ between two drill-downs (present on one side only, or different hashes).
    public static func differingKeys(primary: [KeyHash], target: [KeyHash]) -> [MapKey] {
        var p: [MapKey: UInt64] = [:]
        for e in primary { p[e.key] = e.valueHash }
        var t: [MapKey: UInt64] = [:]
        for e in target { t[e.key] = e.valueHash }
        var out: [MapKey] = []
        for (k, h) in p where t[k] != h { out.append(k) }
        for k in t.keys where p[k] == nil { out.append(k) }
        return out.sorted { $0.map != $1.map ? $0.map < $1.map : $0.key.lexicographicallyPrecedes($1.key) }
    }
}
