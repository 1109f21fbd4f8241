import CoreMetrics
import Foundation
import Logging
import NIOCore
import UnderstudyWire

/// One swap, as recorded in the history (`GET /swaps`).
public struct SwapRecord: Codable, Sendable {
    /// A running number.
    public var id: Int
    /// Why it happened.
    public var reason: SwapReason
    /// Whether it was started automatically (probation rollback).
    public var automatic: Bool
    /// The old primary's instance id and version.
    public var fromInstance: UInt32
    public var fromVersion: String
    /// The target's instance id and version.
    public var toInstance: UInt32
    public var toVersion: String
    /// When it started (ms since epoch).
    public var startedAtMillis: Int64
    /// The outcome.
    public var outcome: SwapOutcome
    /// Microseconds spent in each step (pause, drain, catch_up, verify, patch, flip, resume).
    public var stepMicros: [String: Int64]
    /// Total time intake was paused, in microseconds.
    public var pauseMicros: Int64
    /// The sequence number at which intake paused.
    public var sequence: UInt64
    /// How the moment was chosen (planned and deploy swaps; nil for rollbacks).
    public var timing: SwapTimingRecord?
}

/// Drives the ``TransferController`` against the live pipeline, and runs probation afterwards.
///
/// Confined to the core event loop.
// Not Sendable: its callbacks go through `assumeIsolated()` (checked to run on `loop`) and the probation timer holds
// it in a `NIOLoopBound`, so the compiler keeps it on the core event loop.
final class TransferRunner {
    let pipeline: RequestPipeline
    let configuration: TransferConfiguration
    let metrics: SupervisorMetrics
    let comparator: Comparator
    let logger: Logger
    var loop: any EventLoop { pipeline.loop }

    private var active: ActiveSwap?
    /// The latest requests' (latency µs, error) before now: the baseline probation is judged against.
    private var recent = [(Int64, Bool)](repeating: (0, false), count: 4096)
    private var recentIndex = 0
    private var recentCount = 0
    private var rollbackAttempts = 0
    private(set) var history: [SwapRecord] = []
    private(set) var probation: Probation?
    private var probationTimer: RepeatedTask?

    struct ActiveSwap {
        var controller: TransferController
        var target: WorkerInstance
        var oldPrimary: WorkerInstance
        var reason: SwapReason
        var automatic: Bool
        var promise: EventLoopPromise<SwapRecord>
        var started: NIODeadline
        var pausedAt: NIODeadline?
        var stepStarted: NIODeadline
        var currentStep: SwapStep = .pause
        var stepMicros: [String: Int64] = [:]
        var budgetTask: Scheduled<Void>?
        /// Digests asked for at the start of the pause, queued behind every input up to `earlyDigestSequence`.
        var earlyDigests: EventLoopFuture<(WireMessage, WireMessage)>?
        var earlyDigestSequence: UInt64 = 0
    }

    /// The window after a swap in which the old primary stays ready to take back over.
    struct Probation {
        var oldPrimary: WorkerInstance
        var newPrimary: WorkerInstance
        var until: NIODeadline
        var requests = 0
        var errors = 0
        var latenciesMicros: [Int64] = []
        var swapID: Int
        /// The p99 latency (ms) and error fraction of the requests before the swap.
        var baselineP99Millis: Double
        var baselineErrorRate: Double
    }

    private func baseline() -> (p99Millis: Double, errorRate: Double) {
        guard recentCount > 0 else { return (0, 0) }
        let samples = recent.prefix(recentCount)
        let sorted = samples.map(\.0).sorted()
        let p99 = Double(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) / 1000
        let errors = samples.filter(\.1).count
        return (p99, Double(errors) / Double(samples.count))
    }

    init(pipeline: RequestPipeline, configuration: TransferConfiguration, metrics: SupervisorMetrics,
         comparator: Comparator, logger: Logger) {
        self.pipeline = pipeline
        self.configuration = configuration
        self.metrics = metrics
        self.comparator = comparator
        self.logger = logger
        pipeline.instanceDeathObservers.append { [weak self] instance, reason in
            self?.instanceDied(instance, reason: reason)
        }
        // Called for every request: a strong capture (the runner lives as long as the pipeline), no weak load.
        pipeline.latencyObserver = { latency, isError in
            self.recent[self.recentIndex] = (latency.nanoseconds / 1000, isError)
            self.recentIndex = (self.recentIndex + 1) % self.recent.count
            self.recentCount = min(self.recentCount + 1, self.recent.count)
            guard self.probation != nil else { return }
            self.probation!.requests += 1
            if isError { self.probation!.errors += 1 }
            if self.probation!.latenciesMicros.count < 100_000 {
                self.probation!.latenciesMicros.append(latency.nanoseconds / 1000)
            }
        }
    }

    var isSwapping: Bool { active != nil }

    /// The prediction engine's forecast of the request rate (requests/s), when it runs.
    var forecastRateProvider: (() -> Double?)?
    /// A swap waiting for a quieter moment.
    private struct QuietWait {
        var target: WorkerInstance
        var reason: SwapReason
        var policy: SwapTimingPolicy
        var promise: EventLoopPromise<SwapRecord>
        var asked: NIODeadline
        /// (time, last sequence, target's applied sequence) samples covering the last ~100 ms.
        var samples: [(NIODeadline, UInt64, UInt64)]
        var rateAtRequest: Double?

        private func perSecond(_ value: ((NIODeadline, UInt64, UInt64)) -> UInt64) -> Double {
            guard let first = samples.first, let last = samples.last, last.0 > first.0 else { return 0 }
            return Double(value(last) &- value(first)) / (Double((last.0 - first.0).nanoseconds) / 1e9)
        }
        /// The arrival rate (requests/s) over the samples.
        var rate: Double { perSecond { sample in sample.1 } }
        /// The rate at which the target applies inputs.
        var targetRate: Double { perSecond { sample in sample.2 } }
        /// How long the target needs to apply what it lags by, at its measured rate (ms; infinite if stalled).
        var targetCatchUpMillis: Double {
            guard let last = samples.last, last.1 > last.2 else { return 0 }
            let rate = targetRate
            return rate > 0 ? Double(last.1 - last.2) / rate * 1000 : .infinity
        }
    }
    private var quietWait: QuietWait?

    /// Swaps to `target` at the quietest moment inside `policy`'s deadline (see ``SwapTimingPolicy``):
    /// measures the arrival rate every 20 ms and asks the policy whether to go.
    func swapWhenQuiet(
        to target: WorkerInstance, reason: SwapReason, policy: SwapTimingPolicy
    ) -> EventLoopFuture<SwapRecord> {
        guard active == nil, quietWait == nil else {
            return loop.makeFailedFuture(SupervisorError(.busy, "a swap is already in progress"))
        }
        let promise = loop.makePromise(of: SwapRecord.self)
        let now = NIODeadline.now()
        quietWait = QuietWait(
            target: target, reason: reason, policy: policy, promise: promise, asked: now,
            samples: [(now, pipeline.lastSequence, target.appliedSequence)])
        if policy.deadlineMillis == 0 {
            decideQuiet()
        } else {
            // The first decision needs a measured rate.
            loop.assumeIsolated().scheduleTask(in: .milliseconds(20)) { self.decideQuiet() }
        }
        return promise.futureResult
    }

    private func decideQuiet() {
        guard var wait = quietWait else { return }
        let now = NIODeadline.now()
        wait.samples.append((now, pipeline.lastSequence, wait.target.appliedSequence))
        while wait.samples.count > 2, now - wait.samples[1].0 >= .milliseconds(100) { wait.samples.removeFirst() }
        let waited = (now - wait.asked).nanoseconds / 1_000_000
        let current = wait.rate
        if wait.rateAtRequest == nil { wait.rateAtRequest = current }
        let forecast = forecastRateProvider?()
        let catchUp = wait.targetCatchUpMillis
        switch wait.policy.decide(
            waitedMillis: waited, currentRate: current, forecastRate: forecast,
            targetCatchUpMillis: catchUp, pauseBudgetMillis: Double(configuration.pauseBudgetMillis))
        {
        case .wait:
            quietWait = wait
            loop.assumeIsolated().scheduleTask(in: .milliseconds(20)) { self.decideQuiet() }
        case .swapNow(let why):
            quietWait = nil
            let timing = SwapTimingRecord(
                decision: why, waitedMillis: waited, rateAtRequest: (wait.rateAtRequest ?? current).rounded(),
                rateAtSwap: current.rounded(), forecastRate: forecast?.rounded(),
                targetCatchUpMillis: catchUp.isFinite ? (catchUp * 100).rounded() / 100 : nil)
            swap(to: wait.target, reason: wait.reason).assumeIsolated().map { record -> SwapRecord in
                var record = record
                record.timing = timing
                if let i = self.history.lastIndex(where: { $0.id == record.id }) { self.history[i].timing = timing }
                return record
            }.nonisolated().cascade(to: wait.promise)
        }
    }

    /// Swaps the primary role to `target`. Completes with the record whether it succeeded or aborted.
    func swap(to target: WorkerInstance, reason: SwapReason, automatic: Bool = false) -> EventLoopFuture<SwapRecord> {
        guard active == nil, quietWait == nil else {
            return loop.makeFailedFuture(SupervisorError(.busy, "a swap is already in progress"))
        }
        guard let primary = pipeline.primary, primary.isLive || primary.phase == .catchingUp else {
            return loop.makeFailedFuture(SupervisorError(.busy, "there is no live primary to swap from"))
        }
        guard target !== primary, !target.isDead, target.phase == .live || target.phase == .catchingUp else {
            return loop.makeFailedFuture(SupervisorError(.busy, "the target instance \(target.id) is not replaying the journal"))
        }
        if reason != .rollback, let p = probation, p.newPrimary === primary {
            endProbation(keepOld: false)
        }
        let sameSchema = primary.hello?.schemaVersion == target.hello?.schemaVersion
        let promise = loop.makePromise(of: SwapRecord.self)
        active = ActiveSwap(
            controller: TransferController(sameSchema: sameSchema, residualLimit: configuration.residualLimit),
            target: target, oldPrimary: primary, reason: reason, automatic: automatic, promise: promise,
            started: .now(), stepStarted: .now())
        logger.info("swap starting", metadata: [
            "understudy.reason": "\(reason.rawValue)", "understudy.from": "\(primary.id)", "understudy.to": "\(target.id)",
        ])
        send(.start)
        return promise.futureResult
    }

    private func mark(_ step: SwapStep) {
        guard var a = active else { return }
        let now = NIODeadline.now()
        let micros = (now - a.stepStarted).nanoseconds / 1000
        a.stepMicros[a.currentStep.rawValue, default: 0] += micros
        a.currentStep = step
        a.stepStarted = now
        active = a
    }

    private func send(_ event: TransferController.Event) {
        guard active != nil else { return }
        // The budget timer can fire late on a busy loop; every step also checks the clock.
        if let paused = active!.pausedAt, event != .pauseBudgetExceeded,
            NIODeadline.now() - paused > .milliseconds(configuration.pauseBudgetMillis)
        {
            let abort = active!.controller.handle(.pauseBudgetExceeded)
            if !abort.isEmpty {
                for action in abort { perform(action) }
                return
            }
        }
        let actions = active!.controller.handle(event)
        for action in actions { perform(action) }
    }

    private func perform(_ action: TransferController.Action) {
        guard let a = active else { return }
        let primary = a.oldPrimary
        let target = a.target
        switch action {
        case .pauseIntake:
            pipeline.pauseIntake(reason: "swap")
            active!.pausedAt = .now()
            active!.stepStarted = .now()
            active!.budgetTask = loop.assumeIsolated().scheduleTask(in: .milliseconds(configuration.pauseBudgetMillis)) { [weak self] in
                self?.send(.pauseBudgetExceeded)
            }
            send(.intakePaused)
        case .waitForDrain:
            mark(.drain)
            let last = pipeline.lastSequence
            // Ask both for their digests now: each worker answers after applying every input queued before the
            // request, so with all inputs up to `last` sent, both digests are taken at `last`, and the digest
            // round trip overlaps the drain and the catch-up instead of following them.
            if a.controller.sameSchema {
                pipeline.pump(target)
                if primary.sentSequence == last && target.sentSequence == last {
                    active!.earlyDigests = primary.request(.digestRequest).and(target.request(.digestRequest))
                    active!.earlyDigestSequence = last
                }
                pipeline.flushInstances()
            }
            pipeline.waitUntilApplied(primary, last, timeout: .seconds(10)).assumeIsolated().whenComplete { [weak self] r in
                switch r {
                case .success: self?.send(.drained(sequence: last))
                case .failure(let e): self?.send(.primaryFailed("\(e)"))
                }
            }
        case .waitForTarget(let seq):
            mark(.catchUp)
            pipeline.pump(target)
            pipeline.flushInstances()
            pipeline.waitUntilApplied(target, seq, timeout: .seconds(10)).assumeIsolated().whenComplete { [weak self] r in
                switch r {
                case .success: self?.send(.caughtUp(sequence: seq))
                case .failure(let e): self?.send(.targetFailed("\(e)"))
                }
            }
        case .requestDigests:
            mark(.verify)
            let digests: EventLoopFuture<(WireMessage, WireMessage)>
            if let early = a.earlyDigests, a.controller.pausedAt == a.earlyDigestSequence {
                active!.earlyDigests = nil
                digests = early
            } else {
                digests = primary.request(.digestRequest).and(target.request(.digestRequest))
            }
            digests.assumeIsolated().whenComplete { [weak self] r in
                switch r {
                case .success(let (.digest(pd), .digest(td))): self?.send(.digests(primary: pd, target: td))
                case .success: self?.send(.targetFailed("unexpected digest reply"))
                case .failure(let e): self?.send(.targetFailed("digest request failed: \(e)"))
                }
            }
        case .requestDrillDown(let buckets):
            let p = primary.request(.drillDown(buckets: buckets))
            let t = target.request(.drillDown(buckets: buckets))
            p.and(t).assumeIsolated().whenComplete { [weak self] r in
                switch r {
                case .success(let (.drillDownResult(_, pe), .drillDownResult(_, te))):
                    self?.send(.drilledDown(primary: pe, target: te))
                case .success: self?.send(.targetFailed("unexpected drill-down reply"))
                case .failure(let e): self?.send(.targetFailed("drill-down failed: \(e)"))
                }
            }
        case .patch(let keys):
            mark(.patch)
            primary.request(.fetch(keys: keys)).assumeIsolated().flatMap { reply -> EventLoopFuture<WireMessage> in
                guard case .fetchResult(let entries) = reply else {
                    return self.loop.makeFailedFuture(SupervisorError(.workerFailed, "unexpected fetch reply"))
                }
                self.comparator.record(Discrepancy(
                    sequence: self.pipeline.lastSequence, instance: target.id, role: target.role.rawValue,
                    version: target.version, kind: .state, command: "SWAP",
                    request: "residual patch before swap", primary: "\(entries.count) keys from the primary",
                    other: "differed on the target", keys: keys.prefix(20).map { "\($0.map):\(String(decoding: $0.key, as: UTF8.self))" },
                    timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
                return target.request(.patch(entries: entries))
            }.whenComplete { [weak self] r in
                switch r {
                case .success(.patched(let n)): self?.send(.patched(count: Int(n)))
                case .success: self?.send(.targetFailed("unexpected patch reply"))
                case .failure(let e): self?.send(.targetFailed("patch failed: \(e)"))
                }
            }
        case .flipRoles:
            mark(.flip)
            active!.budgetTask?.cancel()
            pipeline.flipRoles(to: target, oldRole: a.reason == .rollback ? .candidate : .probation)
            send(.flipped)
        case .resumeIntake:
            mark(.resume)
            pipeline.resumeIntake(reason: "swap")
            send(.resumed)
        case .finish(let outcome):
            mark(.resume)
            complete(outcome)
            afterSwap(a, succeeded: true)
        case .abort(let reason):
            active!.budgetTask?.cancel()
            mark(.resume)
            pipeline.resumeIntake(reason: "swap")
            metrics.swapAborts.increment()
            comparator.record(Discrepancy(
                sequence: pipeline.lastSequence, instance: target.id, role: target.role.rawValue, version: target.version,
                kind: .transfer, command: "SWAP", request: "\(a.reason.rawValue) swap to instance \(target.id)",
                primary: "kept serving", other: reason, keys: [], timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
            logger.warning("swap aborted; the old primary keeps serving", metadata: ["understudy.reason": "\(reason)"])
            complete(SwapOutcome(succeeded: false, abortReason: reason, residualKeys: 0, digestsCompared: active?.controller.sameSchema ?? false))
        }
    }

    private func complete(_ outcome: SwapOutcome) {
        guard let a = active else { return }
        active = nil
        let pause = a.pausedAt.map { (NIODeadline.now() - $0).nanoseconds / 1000 } ?? 0
        for (step, micros) in a.stepMicros {
            metrics.recordSwapStep(step, .nanoseconds(micros * 1000))
        }
        metrics.recordSwapStep("total", .nanoseconds(pause * 1000))
        if outcome.succeeded { metrics.swapsTotal.increment() }
        let record = SwapRecord(
            id: history.count + 1, reason: a.reason, automatic: a.automatic, fromInstance: a.oldPrimary.id,
            fromVersion: a.oldPrimary.version, toInstance: a.target.id, toVersion: a.target.version,
            startedAtMillis: Int64(Date().timeIntervalSince1970 * 1000) - (NIODeadline.now() - a.started).nanoseconds / 1_000_000,
            outcome: outcome, stepMicros: a.stepMicros, pauseMicros: pause, sequence: a.controller.pausedAt)
        history.append(record)
        if history.count > 1000 { history.removeFirst() }
        a.promise.succeed(record)
    }

    /// After a successful swap: probation for forward swaps; clean-up of the other version's standbys.
    private func afterSwap(_ a: ActiveSwap, succeeded: Bool) {
        let newPrimary = a.target
        if a.reason == .rollback {
            // The rolled-back instance is retired; so is any standby of its version.
            endProbation(keepOld: true)
            a.oldPrimary.retire(reason: "rolled back")
            pipeline.retireStandbys { $0.version != newPrimary.version && $0 !== newPrimary }
            pipeline.instances.scheduleShadowRespawn()
            return
        }
        // Standbys of another version than the new primary (an old shadow) are retired, except the
        // old primary, which stays replaying through probation so a rollback is one more swap.
        pipeline.retireStandbys { $0 !== a.oldPrimary && $0.version != newPrimary.version }
        if !pipeline.standbys.contains(where: { $0.role == .shadow && !$0.isDead }) {
            pipeline.instances.scheduleShadowRespawn()
        }
        let before = baseline()
        rollbackAttempts = 0
        probation = Probation(
            oldPrimary: a.oldPrimary, newPrimary: newPrimary,
            until: .now() + .milliseconds(Int64(configuration.probationSeconds * 1000)), swapID: history.count,
            baselineP99Millis: before.p99Millis, baselineErrorRate: before.errorRate)
        probationTimer?.cancel()
        // The repeated task's closure must be Sendable: the runner goes in a loop-bound box (checked on access).
        let runner = NIOLoopBound(self, eventLoop: loop)
        probationTimer = loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { [runner] _ in
            runner.value.checkProbation()
        }
    }

    /// Probation's verdict so far: nil when healthy, else why it should roll back.
    func probationProblem() -> String? {
        guard let p = probation else { return nil }
        if p.requests >= configuration.probationMinimumRequests {
            // Judged against the same workload just before the swap: error replies that clients always
            // provoke (wrong types…) and a machine that is slow anyway must not trigger a rollback.
            let errorRate = Double(p.errors) / Double(p.requests)
            let errorLimit = max(configuration.probationErrorRate, p.baselineErrorRate * 2 + configuration.probationErrorRate)
            if errorRate > errorLimit {
                return "error replies at \(String(format: "%.1f", errorRate * 100)) % (before the swap \(String(format: "%.1f", p.baselineErrorRate * 100)) %, limit \(String(format: "%.1f", errorLimit * 100)) %)"
            }
            let sorted = p.latenciesMicros.sorted()
            if !sorted.isEmpty {
                let p99 = Double(sorted[min(sorted.count - 1, sorted.count * 99 / 100)]) / 1000
                let limit = max(configuration.probationLatencyP99Millis, p.baselineP99Millis * 4)
                if p99 > limit {
                    return "latency p99 \(String(format: "%.1f", p99)) ms (before the swap \(String(format: "%.1f", p.baselineP99Millis)) ms, limit \(String(format: "%.1f", limit)) ms)"
                }
            }
        }
        let rate = comparator.windowRate(p.oldPrimary.id)
        if p.oldPrimary.comparedReplies >= configuration.probationMinimumRequests && rate > configuration.probationDiscrepancyRate {
            return "discrepancy rate \(String(format: "%.1f", rate * 100)) % against the previous version (threshold \(configuration.probationDiscrepancyRate * 100) %)"
        }
        return nil
    }

    private func checkProbation() {
        guard let p = probation, active == nil else { return }
        if let problem = probationProblem() {
            guard rollbackAttempts < 3 else {
                logger.error("automatic rollback failed 3 times; keeping the new primary", metadata: ["understudy.reason": "\(problem)"])
                endProbation(keepOld: false)
                return
            }
            rollbackAttempts += 1
            logger.warning("probation failed; rolling back automatically", metadata: ["understudy.reason": "\(problem)"])
            rollback(automatic: true, why: problem).whenComplete { _ in }
            return
        }
        if NIODeadline.now() >= p.until {
            logger.info("probation passed; retiring the previous primary", metadata: ["understudy.instance": "\(p.oldPrimary.id)"])
            endProbation(keepOld: false)
        }
    }

    /// Ends probation; unless `keepOld`, the previous primary retires.
    func endProbation(keepOld: Bool) {
        probationTimer?.cancel()
        probationTimer = nil
        guard let p = probation else { return }
        probation = nil
        if !keepOld && pipeline.primary !== p.oldPrimary {
            p.oldPrimary.retire(reason: "probation passed")
            pipeline.removeStandby(p.oldPrimary)
        }
    }

    /// Swaps back to the previous primary (only during probation).
    func rollback(automatic: Bool, why: String) -> EventLoopFuture<SwapRecord> {
        guard let p = probation else {
            return loop.makeFailedFuture(SupervisorError(.notFound, "there is nothing to roll back: no swap is in probation"))
        }
        comparator.record(Discrepancy(
            sequence: pipeline.lastSequence, instance: p.newPrimary.id, role: "primary", version: p.newPrimary.version,
            kind: .transfer, command: "ROLLBACK", request: automatic ? "automatic rollback" : "rollback requested",
            primary: "version \(p.newPrimary.version)", other: why, keys: [],
            timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
        // Probation (and its timer) stays on until the rollback succeeds: an aborted rollback is retried.
        return swap(to: p.oldPrimary, reason: .rollback, automatic: automatic)
    }

    private func instanceDied(_ instance: WorkerInstance, reason: String) {
        if let a = active {
            if instance === a.target { send(.targetFailed(reason)) }
            if instance === a.oldPrimary { send(.primaryFailed(reason)) }
        }
        if let p = probation {
            if instance === p.newPrimary {
                // The pipeline fails over to the previous primary (it prefers the probation instance
                // when no same-version shadow is live): record it as an automatic rollback.
                comparator.record(Discrepancy(
                    sequence: pipeline.lastSequence, instance: instance.id, role: "primary", version: instance.version,
                    kind: .transfer, command: "ROLLBACK", request: "new primary crashed during probation",
                    primary: reason, other: "failed over to instance \(p.oldPrimary.id)", keys: [],
                    timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
                probationTimer?.cancel()
                probationTimer = nil
                probation = nil
            } else if instance === p.oldPrimary {
                probationTimer?.cancel()
                probationTimer = nil
                probation = nil
            }
        }
    }
}
