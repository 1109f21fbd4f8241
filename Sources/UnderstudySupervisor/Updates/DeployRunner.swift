import Foundation
import Logging
import NIOCore
import NIOPosix
import UnderstudyWire

/// What `POST /deploy` asks for.
public struct DeployRequest: Codable, Sendable {
    /// The new worker binary.
    public var binary: String
    /// Extra arguments for the candidate (and, once primary, its shadows).
    public var arguments: [String]?
    /// Extra environment for the candidate.
    public var environment: [String: String]?
    /// An external test command run against a loopback listener serving a fork of the candidate.
    public var testCommand: String?
    /// Replies to compare live before deciding (default 1 000).
    public var compareRequests: Int?
    /// Or: seconds to compare live before deciding.
    public var compareSeconds: Double?
    /// Validate only; do not swap.
    public var noSwap: Bool?
    /// Creates a request.
    public init(binary: String, arguments: [String]? = nil, environment: [String: String]? = nil, testCommand: String? = nil,
                compareRequests: Int? = nil, compareSeconds: Double? = nil, noSwap: Bool? = nil) {
        self.binary = binary
        self.arguments = arguments
        self.environment = environment
        self.testCommand = testCommand
        self.compareRequests = compareRequests
        self.compareSeconds = compareSeconds
        self.noSwap = noSwap
    }
}

/// Settings of the update gate, with documented defaults.
public struct UpdateGateConfiguration: Sendable {
    /// A command class is flagged when the candidate's difference rate exceeds the noise rate times this (default 2)…
    public var relativeThreshold: Double = 2
    /// …and exceeds the noise rate by this much (default 0.01).
    public var absoluteThreshold: Double = 0.01
    /// How long the candidate may take to catch up (default 120 s).
    public var catchUpTimeoutSeconds: Double = 120
    /// A candidate whose lag grows for this many consecutive seconds is rejected as too slow (default 3).
    public var lagGrowthSeconds: Int = 3
    /// Most seconds the live comparison waits for enough requests (default 60).
    public var compareTimeoutSeconds: Double = 60
    /// While the prediction engine's mean surprise (a z-score) is above this, the comparison is extended (default 3).
    public var surpriseLimit: Double = 3
    /// The most extra comparison windows unusual traffic can add (default 2).
    public var surpriseExtensions: Int = 2
    /// Creates the defaults.
    public init() {}
}

/// The decision report of one deploy (`GET /deploys/ID`).
public struct DeployReport: Codable, Sendable {
    /// One stage of the gate.
    public struct Stage: Codable, Sendable {
        public var name: String
        /// running, passed, failed or skipped.
        public var status: String
        public var millis: Int64
        public var detail: String
    }
    /// A flagged command class.
    public struct FlaggedCommand: Codable, Sendable, Equatable {
        public var command: String
        public var candidateCompared: Int
        public var candidateDiffered: Int
        public var noiseCompared: Int
        public var noiseDiffered: Int
    }
    public var id: Int
    public var binary: String
    public var service: String?
    public var version: String?
    /// running, accepted or rejected.
    public var state: String
    public var stages: [Stage] = []
    public var reasons: [String] = []
    public var flagged: [FlaggedCommand] = []
    public var examples: [Discrepancy] = []
    public var comparedRequests: Int = 0
    public var swap: SwapRecord?
    public var noSwap: Bool
    public var surprise: Double?
    /// Extra comparison windows added because the traffic was unusual for the prediction engine.
    public var surpriseExtensions: Int = 0
}

/// Runs a candidate through the update gate and, when it passes, swaps it in.
///
/// Confined to the core event loop.
// Not Sendable: its future chains run through `assumeIsolated()` (checked to run on `loop`), so the compiler keeps
// it on the core event loop.
final class DeployRunner {
    let pipeline: RequestPipeline
    let transfer: TransferRunner
    let comparator: Comparator
    let gate: UpdateGateConfiguration
    let threadPool: NIOThreadPool
    let logger: Logger
    var loop: any EventLoop { pipeline.loop }
    private(set) var reports: [DeployReport] = []
    private var running = false
    private var candidate: WorkerInstance?
    private var stageStarted = NIODeadline.now()
    /// The prediction engine's current surprise score, when it runs.
    var surpriseProvider: (() -> Double?)?
    /// Extra comparison windows granted per deploy id (unusual traffic).
    private var comparisonExtensions: [Int: Int] = [:]
    /// When inside a short deadline the validated candidate is swapped in.
    var swapTiming = SwapTimingPolicy()

    init(pipeline: RequestPipeline, transfer: TransferRunner, comparator: Comparator, gate: UpdateGateConfiguration,
         threadPool: NIOThreadPool, logger: Logger) {
        self.pipeline = pipeline
        self.transfer = transfer
        self.comparator = comparator
        self.gate = gate
        self.threadPool = threadPool
        self.logger = logger
    }

    func report(_ id: Int) -> DeployReport? { reports.first { $0.id == id } }

    /// Starts a deploy; returns its id at once (progress via ``report(_:)``).
    func start(_ request: DeployRequest) throws -> Int {
        guard !running else { throw SupervisorError(.busy, "a deploy is already running") }
        guard !transfer.isSwapping else { throw SupervisorError(.busy, "a swap is in progress") }
        running = true
        let id = reports.count + 1
        reports.append(DeployReport(id: id, binary: request.binary, state: "running", noSwap: request.noSwap ?? false))
        run(id, request).assumeIsolated().whenComplete { _ in self.running = false }
        return id
    }

    private func update(_ id: Int, _ body: (inout DeployReport) -> Void) {
        guard let i = reports.firstIndex(where: { $0.id == id }) else { return }
        body(&reports[i])
    }

    private func begin(_ id: Int, _ stage: String, _ detail: String = "") {
        stageStarted = .now()
        update(id) { $0.stages.append(.init(name: stage, status: "running", millis: 0, detail: detail)) }
        logger.info("deploy stage", metadata: ["understudy.stage": "\(stage)"])
    }

    private func end(_ id: Int, _ status: String, _ detail: String? = nil) {
        let ms = (NIODeadline.now() - stageStarted).nanoseconds / 1_000_000
        update(id) {
            guard !$0.stages.isEmpty else { return }
            $0.stages[$0.stages.count - 1].status = status
            $0.stages[$0.stages.count - 1].millis = ms
            if let detail { $0.stages[$0.stages.count - 1].detail = detail }
        }
    }

    private struct Rejection: Error { var reason: String }

    private func reject(_ reason: String) -> Rejection { Rejection(reason: reason) }

    private func run(_ id: Int, _ request: DeployRequest) -> EventLoopFuture<Void> {
        guard let primary = pipeline.primary, let primaryHello = primary.hello else {
            return finish(id, rejected: "there is no live primary")
        }
        begin(id, "start", request.binary)
        return pipeline.spawnInstance(
            binary: request.binary, role: .candidate, arguments: request.arguments ?? [],
            environment: request.environment ?? [:]
        ).assumeIsolated().flatMapError { error in
            self.loop.makeFailedFuture(self.reject("the candidate did not start: \(error)"))
        }.flatMapThrowing { bound -> NIOLoopBound<WorkerInstance> in
            let candidate = bound.value
            self.candidate = candidate
            self.end(id, "passed", "pid \(candidate.pid)")
            self.begin(id, "handshake")
            guard let hello = candidate.hello else { throw self.reject("no handshake") }
            self.update(id) {
                $0.service = hello.service
                $0.version = hello.version
            }
            guard hello.service == primaryHello.service else {
                throw self.reject("the candidate is service '\(hello.service)', but the primary is '\(primaryHello.service)'")
            }
            let schemaOK = hello.schemaVersion == primaryHello.schemaVersion
                || (hello.schemaVersion > primaryHello.schemaVersion && hello.minimumMigratableSchema <= primaryHello.schemaVersion)
            guard schemaOK else {
                throw self.reject("the candidate (schema \(hello.schemaVersion), migrates from \(hello.minimumMigratableSchema)) cannot read the primary's schema \(primaryHello.schemaVersion)")
            }
            self.end(id, "passed", "\(hello.service) \(hello.version), schema \(primaryHello.schemaVersion) → \(hello.schemaVersion)")
            return bound
        }.flatMap { bound in
            let candidate = bound.value
            self.begin(id, "snapshot")
            let source = self.pipeline.snapshotSource ?? primary
            return source.request(.snapshotRequest(streamID: UInt32.random(in: 1...UInt32.max))).assumeIsolated().flatMapError { e in
                self.loop.makeFailedFuture(self.reject("could not take a snapshot from instance \(source.id): \(e)"))
            }.flatMap { reply -> EventLoopFuture<UInt64> in
                guard case .snapshotChunk(let chunk) = reply else {
                    return self.loop.makeFailedFuture(self.reject("unexpected snapshot reply"))
                }
                self.end(id, "passed", "\(chunk.data.count) bytes at sequence \(chunk.sequence) from instance \(source.id)")
                self.begin(id, "migrate")
                return self.pipeline.snapshotter.restore(chunk.data, sequence: chunk.sequence, schemaVersion: chunk.schemaVersion, into: candidate)
                    .assumeIsolated().flatMapError { e in
                        let crashed = candidate.isDead
                        return self.loop.makeFailedFuture(self.reject(
                            crashed ? "the candidate crashed while migrating the snapshot: \(e)" : "migration failed: \(e)"))
                    }.nonisolated()
            }.map { seq in
                self.end(id, "passed", "restored at sequence \(seq)")
                return (bound, seq)
            }.nonisolated()
        }.flatMap { (bound: NIOLoopBound<WorkerInstance>, seq: UInt64) in
            let candidate = bound.value
            self.begin(id, "catch_up")
            self.pipeline.addStandby(candidate, restoredAt: seq)
            return self.waitForCatchUp(candidate).map { bound }
        }.flatMap { bound in
            let candidate = bound.value
            self.end(id, "passed", "following live at sequence \(candidate.appliedSequence)")
            self.begin(id, "validation")
            return candidate.request(.validate).assumeIsolated().flatMapThrowing { reply in
                guard case .validationReport(let report) = reply else { throw self.reject("unexpected validation reply") }
                guard report.failures.isEmpty else {
                    throw self.reject("the validation suite failed: " + report.failures.map { "\($0.name): \($0.message)" }.joined(separator: "; "))
                }
                self.end(id, "passed", "\(report.casesRun) cases passed on a fork")
                return bound
            }.nonisolated()
        }.flatMap { bound in
            let candidate = bound.value
            guard let command = request.testCommand else {
                self.begin(id, "test_command")
                self.end(id, "skipped", "no --test-command")
                return self.loop.makeSucceededFuture(bound)
            }
            self.begin(id, "test_command", command)
            return ForkTestRunner(candidate: candidate, threadPool: self.threadPool, logger: self.logger)
                .run(command: command).assumeIsolated().flatMapThrowing { result in
                    guard result.status == 0 else {
                        throw self.reject("--test-command exited with status \(result.status): \(result.outputTail)")
                    }
                    self.end(id, "passed", "exit 0")
                    return bound
                }.nonisolated()
        }.flatMap { bound in
            let candidate = bound.value
            self.begin(id, "state_check")
            return self.stateCheck(candidate, primary: primary).assumeIsolated().map { detail in
                self.end(id, detail.hasPrefix("skipped") ? "skipped" : "passed", detail)
                return bound
            }.nonisolated()
        }.flatMap { bound in
            let candidate = bound.value
            self.begin(id, "compare")
            return self.compare(id, candidate, request).map { bound }
        }.flatMap { bound -> EventLoopFuture<Void> in
            let candidate = bound.value
            if request.noSwap ?? false {
                self.begin(id, "swap")
                self.end(id, "skipped", "--no-swap: validated, candidate stopped")
                candidate.retire(reason: "validated with --no-swap")
                self.pipeline.removeStandby(candidate)
                return self.finish(id, rejected: nil)
            }
            self.begin(id, "swap")
            return self.transfer.swapWhenQuiet(to: candidate, reason: .deploy, policy: self.swapTiming).assumeIsolated().flatMap { record in
                self.update(id) { $0.swap = record }
                guard record.outcome.succeeded else {
                    return self.loop.makeFailedFuture(self.reject("the swap aborted: \(record.outcome.abortReason ?? "?")"))
                }
                self.end(id, "passed", "pause \(record.pauseMicros) µs, \(record.outcome.residualKeys) residual keys")
                return self.finish(id, rejected: nil)
            }.nonisolated()
        }.flatMapError { error in
            let reason = (error as? Rejection)?.reason ?? "\(error)"
            return self.finish(id, rejected: reason)
        }.nonisolated()
    }

    private func finish(_ id: Int, rejected: String?) -> EventLoopFuture<Void> {
        if let rejected {
            end(id, "failed", rejected)
            if let candidate {
                update(id) { report in
                    report.examples = Array(self.comparator.recent.filter { $0.instance == candidate.id }.suffix(5))
                }
                candidate.retire(reason: "rejected")
                pipeline.removeStandby(candidate)
            }
            update(id) {
                $0.state = "rejected"
                $0.reasons.append(rejected)
            }
            logger.warning("deploy rejected", metadata: ["understudy.reason": "\(rejected)"])
        } else {
            update(id) { $0.state = "accepted" }
        }
        candidate = nil
        return loop.makeSucceededVoidFuture()
    }

    private func lag(_ c: WorkerInstance) -> UInt64 {
        pipeline.lastSequence > c.appliedSequence ? pipeline.lastSequence - c.appliedSequence : 0
    }

    /// Waits until the candidate follows live; rejects it when its lag keeps growing.
    private func waitForCatchUp(_ c: WorkerInstance) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let deadline = NIODeadline.now() + .milliseconds(Int64(gate.catchUpTimeoutSeconds * 1000))
        var samples: [UInt64] = []
        func check() {
            if case .dead(let why) = c.phase {
                promise.fail(reject("the candidate died while catching up: \(why)"))
            } else if c.isLive {
                promise.succeed(())
            } else if NIODeadline.now() > deadline {
                promise.fail(reject("the candidate did not catch up within \(Int(gate.catchUpTimeoutSeconds)) s (lag \(lag(c)) records)"))
            } else {
                samples.append(lag(c))
                if tooSlow(samples) {
                    promise.fail(reject("the candidate is too slow: its lag grew from \(samples[samples.count - 1 - gate.lagGrowthSeconds]) to \(samples.last!) records over \(gate.lagGrowthSeconds) s"))
                    return
                }
                loop.assumeIsolated().scheduleTask(in: .seconds(1)) { check() }
            }
        }
        check()
        return promise.futureResult
    }

    private func tooSlow(_ samples: [UInt64]) -> Bool {
        let n = gate.lagGrowthSeconds
        guard samples.count > n else { return false }
        let recent = samples.suffix(n + 1)
        return zip(recent, recent.dropFirst()).allSatisfy { $0 < $1 } && samples.last! > 1000
    }

    /// Compares state at one sequence point (a journaled checkpoint), without pausing anyone.
    private func stateCheck(_ c: WorkerInstance, primary: WorkerInstance) -> EventLoopFuture<String> {
        let promise = loop.makePromise(of: String.self)
        var replies: [UInt32: [UInt8]] = [:]
        guard let reference = primary.hello?.schemaVersion,
            let seq = pipeline.checkpoint(referenceSchema: reference, observer: { instance, reply in replies[instance.id] = reply })
        else {
            promise.succeed("skipped: intake is paused")
            return promise.futureResult
        }
        // Both answers come with their results: the waits end when each instance has applied the checkpoint (its
        // observer has run by then), or at once when one of them dies, or at the deadline. No polling.
        let answered = pipeline.waitUntilApplied(primary, seq, timeout: .seconds(60))
            .and(pipeline.waitUntilApplied(c, seq, timeout: .seconds(60)))
        answered.assumeIsolated().whenComplete { result in
            self.pipeline.checkpointObservers[seq] = nil
            if case .dead(let why) = c.phase {
                promise.fail(self.reject("the candidate died during the state check: \(why)"))
                return
            }
            guard case .success = result, let p = replies[primary.id], let r = replies[c.id] else {
                let why: String
                if case .failure(let error) = result { why = "\(error)" } else { why = "an instance applied it without answering" }
                promise.fail(self.reject("the state checkpoint at sequence \(seq) was not answered (\(why))"))
                return
            }
            self.compareCheckpoint(seq, primary: p, candidate: r, c, reference: reference, promise: promise)
        }
        return promise.futureResult
    }

    /// Judges the two digests of a state checkpoint.
    private func compareCheckpoint(
        _ seq: UInt64, primary p: [UInt8], candidate r: [UInt8], _ c: WorkerInstance, reference: UInt32,
        promise: EventLoopPromise<String>
    ) {
        guard !r.isEmpty else {
            promise.succeed("skipped: the candidate's schema differs and it has no downgrade to compare through")
            return
        }
        guard let pd = try? DigestReport(encoded: p), let cd = try? DigestReport(encoded: r) else {
            promise.fail(reject("undecodable checkpoint digests"))
            return
        }
        let mismatched = pd.mismatchedBuckets(against: cd)
        let how = c.hello?.schemaVersion == reference ? "digest" : "downgraded digest"
        if mismatched.isEmpty {
            promise.succeed("\(how) equals the primary's at sequence \(seq) (\(pd.entryCount) entries)")
        } else {
            comparator.record(Discrepancy(
                sequence: seq, instance: c.id, role: c.role.rawValue, version: c.version, kind: .state,
                command: "CHECKPOINT", request: "state checkpoint", primary: "\(pd.entryCount) entries",
                other: "\(cd.entryCount) entries, \(mismatched.count) buckets differ", keys: [],
                timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
            promise.fail(reject("state drift: the candidate's \(how) differs from the primary's at sequence \(seq) in \(mismatched.count) of \(pd.buckets.count) buckets (primary \(pd.entryCount) entries, candidate \(cd.entryCount))"))
        }
    }

    /// The live differential comparison, with the shadow's disagreements as the noise floor.
    private func compare(_ id: Int, _ c: WorkerInstance, _ request: DeployRequest) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let baseRequests = request.compareRequests ?? (request.compareSeconds == nil ? 1000 : Int.max)
        let baseWindow = request.compareSeconds ?? gate.compareTimeoutSeconds
        comparisonExtensions[id] = 0
        promise.futureResult.assumeIsolated().whenComplete { _ in self.comparisonExtensions[id] = nil }
        let started = NIODeadline.now()
        let candidateStart = comparator.stats[c.id] ?? [:]
        let noiseInstance = pipeline.standbys.first { $0.role == .shadow && $0.version == pipeline.primary?.version }
        let noiseStart = noiseInstance.flatMap { comparator.stats[$0.id] } ?? [:]
        var lagSamples: [UInt64] = []
        var lastSample = NIODeadline.now()
        func check() {
            if case .dead(let why) = c.phase {
                promise.fail(reject("the candidate died during the live comparison: \(why)"))
                return
            }
            if NIODeadline.now() - lastSample >= .seconds(1) {
                lastSample = .now()
                lagSamples.append(lag(c))
                if tooSlow(lagSamples) {
                    promise.fail(reject("the candidate is too slow: its lag grew to \(lagSamples.last!) records during the comparison"))
                    return
                }
            }
            let now = comparator.stats[c.id] ?? [:]
            let compared = now.reduce(0) { $0 + $1.value.compared - (candidateStart[$1.key]?.compared ?? 0) }
            let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            let extensions = self.comparisonExtensions[id] ?? 0
            let wantRequests = baseRequests == Int.max ? Int.max : baseRequests * (1 + extensions)
            let window = baseWindow * Double(1 + extensions)
            if compared < wantRequests && elapsed < window {
                loop.assumeIsolated().scheduleTask(in: .milliseconds(50)) { check() }
                return
            }
            update(id) { $0.comparedRequests = compared }
            let noiseNow = noiseInstance.flatMap { comparator.stats[$0.id] } ?? [:]
            func delta(_ now: [String: ComparisonStats], _ start: [String: ComparisonStats]) -> [String: ComparisonStats] {
                now.reduce(into: [:]) { out, entry in
                    out[entry.key] = ComparisonStats(
                        compared: entry.value.compared - (start[entry.key]?.compared ?? 0),
                        differed: entry.value.differed - (start[entry.key]?.differed ?? 0))
                }
            }
            let surprise = surpriseProvider?()
            update(id) { $0.surprise = surprise }
            switch ComparisonGate.verdict(
                candidate: delta(now, candidateStart), noise: delta(noiseNow, noiseStart), surprise: surprise,
                extensionsSoFar: extensions, gate: gate)
            {
            case .extend(let why):
                self.comparisonExtensions[id] = extensions + 1
                update(id) { $0.surpriseExtensions = extensions + 1 }
                logger.notice("deploy comparison extended", metadata: ["understudy.deploy": "\(id)", "understudy.why": "\(why)"])
                loop.assumeIsolated().scheduleTask(in: .milliseconds(50)) { check() }
            case .pass:
                let extra = extensions > 0 ? " (extended \(extensions)× for unusual traffic)" : ""
                end(id, "passed", "\(compared) replies compared in \(String(format: "%.1f", elapsed)) s; no command class above the noise\(extra)")
                promise.succeed(())
            case .reject(let flagged):
                update(id) { $0.flagged = flagged }
                let list = flagged.map { "\($0.command) differed \($0.candidateDiffered)/\($0.candidateCompared) (noise \($0.noiseDiffered)/\($0.noiseCompared))" }
                promise.fail(reject("replies differ from the primary beyond the noise: " + list.joined(separator: ", ")))
            }
        }
        check()
        return promise.futureResult
    }
}
