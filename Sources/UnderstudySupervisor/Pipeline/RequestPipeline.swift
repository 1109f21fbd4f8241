import CUnderstudySystem
import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyPrediction
import UnderstudyWire

/// A client waiting for a reply the service held back.
struct DeferredWaiter {
    var tag: UInt8
    var sink: ReplySink
    var enqueuedAt: NIODeadline
    var command: String
}

/// Settings of the request path.
public struct PipelineConfiguration: Sendable {
    /// When replies may leave (``FsyncPolicy/always``: only once their record is durable).
    public var fsync: FsyncPolicy
    /// The most inputs sent to one worker and not yet applied.
    public var inflightWindow: Int
    /// The most recent inputs kept in memory for feeding standbys and comparing replies.
    public var logWindow: Int
    /// The most client requests held while intake is paused; past it clients get `-BUSY`.
    public var maximumHeldRequests: Int
    /// How often a clock tick is journaled (drives time-based behaviour such as expiry).
    public var tickInterval: TimeAmount
    /// A worker that has not answered a ping for this long is declared hung and killed.
    public var hangTimeout: TimeAmount
    /// Take a snapshot from the shadow after this many inputs…
    public var snapshotEveryRecords: UInt64
    /// …or after this long, whichever comes first (when anything changed).
    public var snapshotInterval: TimeAmount
    /// Run a shadow beside the primary.
    public var shadow: Bool
    /// A primary that has not finished one input in this time is killed and the input quarantined
    /// (`--request-deadline-ms`, default 5 000 ms, like Redis's busy-reply threshold).
    public var requestDeadline: TimeAmount
    /// The request deadline in milliseconds.
    public var requestDeadlineMillis: Int64 {
        get { requestDeadline.nanoseconds / 1_000_000 }
        set { requestDeadline = .milliseconds(newValue) }
    }
    /// Back-off and intensity limit for restarts that no input explains.
    public var restartPolicy: RestartPolicy
    /// The standby lag limit in milliseconds; 0 turns the throttle off.
    public var maxStandbyLagMillis: Int64 {
        get { maxStandbyLag.nanoseconds / 1_000_000 }
        set { maxStandbyLag = newValue > 0 ? .milliseconds(newValue) : .hours(24 * 365) }
    }
    /// When the live standby (the failover target) falls further behind than this, client sockets stop being read
    /// until it has caught up to half of it (`--max-standby-lag-ms`, default 100 ms): throughput is that of the
    /// slower replica, by design, so that failover and swap stay available.
    public var maxStandbyLag: TimeAmount
    /// The least time between two snapshots taken by the schedule (by inputs or by time).
    public var minimumSnapshotSpacing: TimeAmount

    /// Creates a configuration with documented defaults.
    public init(
        fsync: FsyncPolicy = .everysec, inflightWindow: Int = 8192, logWindow: Int = 1 << 17,
        maximumHeldRequests: Int = 100_000, tickInterval: TimeAmount = .milliseconds(100),
        hangTimeout: TimeAmount = .seconds(5), snapshotEveryRecords: UInt64 = 200_000,
        snapshotInterval: TimeAmount = .seconds(60), shadow: Bool = true, requestDeadline: TimeAmount = .seconds(5),
        restartPolicy: RestartPolicy = RestartPolicy(), maxStandbyLag: TimeAmount = .milliseconds(100),
        minimumSnapshotSpacing: TimeAmount = .seconds(1)
    ) {
        self.maxStandbyLag = maxStandbyLag
        self.minimumSnapshotSpacing = minimumSnapshotSpacing
        self.requestDeadline = requestDeadline
        self.restartPolicy = restartPolicy
        self.fsync = fsync
        self.inflightWindow = inflightWindow
        self.logWindow = logWindow
        self.maximumHeldRequests = maximumHeldRequests
        self.tickInterval = tickInterval
        self.hangTimeout = hangTimeout
        self.snapshotEveryRecords = snapshotEveryRecords
        self.snapshotInterval = snapshotInterval
        self.shadow = shadow
    }
}

/// The sequencer and request path: one order for all inputs, the journal, and the workers.
///
/// Confined to the core event loop: clients, workers, timers and admin calls all reach it there,
/// so the hot path takes no locks and makes no actor hops.
/// Not Sendable, so the compiler keeps it there: the journal's writer thread, repeated tasks and the prediction
/// engine reach it through a ``NIOLoopBound`` (which checks the loop), future chains through NIO's isolated API.
final class RequestPipeline: WorkerInstanceOwner, RequestIntake {
    typealias Entry = InputLog.Entry

    struct HeldInput {
        var tag: UInt8
        var payload: [UInt8]
        var sink: ReplySink?
        var onPending: PendingSink?
    }

    let loop: any EventLoop
    let journal: Journal
    let configuration: PipelineConfiguration
    let logger: Logger
    let threadPool: NIOThreadPool
    let comparator: Comparator
    let metrics: SupervisorMetrics
    let serviceBinary: String
    var serviceArguments: [String] {
        get { instances.serviceArguments }
        set { instances.serviceArguments = newValue }
    }
    var serviceEnvironment: [String: String] {
        get { instances.serviceEnvironment }
        set { instances.serviceEnvironment = newValue }
    }
    /// The instances and their roles (spawn, respawn, health, the request deadline, restart policy).
    private(set) lazy var instances: ShadowInstanceManager = {
        let manager = ShadowInstanceManager(
            loop: loop, configuration: configuration, serviceBinary: serviceBinary, owner: self, logger: logger)
        // Strong on purpose: both live as long as the supervisor.
        manager.bootstrap = { self.bootstrap($0) }
        // An HTTP service's declared routes name its requests' command classes (comparisons, the deploy gate).
        manager.primaryChanged = { self.primaryChanged($0) }
        return manager
    }()
    /// The instance whose replies go to clients.
    var primary: WorkerInstance? { instances.primary }
    /// Shadows, candidates and the probation instance.
    var standbys: [WorkerInstance] { instances.standbys }

    /// Recent inputs and their replies, by sequence number.
    private(set) var log: InputLog
    /// One order for all inputs.
    private var sequencer: Sequencer
    /// The highest sequence durable per the fsync policy (`always`: fsynced; otherwise: written to the operating
    /// system), as last reported to the loop. No reply leaves before its record is this far.
    private var releasedDurableSequence: UInt64
    /// The highest sequence durable per the fsync policy.
    var durableSequence: UInt64 { releasedDurableSequence }
    /// Records were appended without waking the journal's writer; the end of this loop turn wakes it.
    private var journalWakePending = false
    /// Prefetch hint sets handed to the primary.
    private(set) var prefetchHintsDelivered = 0
    private var releaseScan: UInt64

    private(set) var intakePaused = false
    private var pauseReasons: Set<String> = []
    private var held = CircularBuffer<HeldInput>()
    private var dirtyClients: [any Flushable] = []
    private var flushScheduled = false
    private var timers: [RepeatedTask] = []
    /// Snapshots from the shadow, on a schedule that never thrashes.
    let snapshotter: Snapshotter
    var snapshotInProgress: Bool { snapshotter.inProgress }
    var lastSnapshotSequence: UInt64 { snapshotter.lastSequence }
    /// Workers that died unexpectedly (each is replaced).
    private(set) var restarts = 0
    /// The highest sequence the primary has applied: standbys are fed only up to here (primary first).
    private(set) var primaryAppliedBound: UInt64 = 0
    /// Quarantined inputs: never applied again by any instance.
    let quarantine: QuarantineLog
    /// Deaths without blame (outside kills) per input: the second one quarantines it.
    private var blameCounts: [UInt64: Int] = [:]
    /// Roles given up after too many restarts (shown in status and health).
    var givenUpRoles: [String] { instances.givenUpRoles }
    /// Why the last role was given up.
    var givenUpReason: String? { instances.givenUpReason }
    /// The pipeline has finished its start (recovery) and serves.
    private(set) var serving = false
    /// Holds client reads while the standby lags (see ``PipelineConfiguration/maxStandbyLag``).
    let intakeThrottle = IntakeThrottle()
    /// Called when an input is quarantined (metrics, the discrepancy log).
    var quarantineObservers: [(QuarantineEntry) -> Void] = []
    private(set) var stopping = false
    /// A standby supervisor: clients are refused (`READONLY`), nothing is sequenced, snapshotted or ticked here;
    /// the instances apply the records another supervisor journals (``adoptFollowed(_:)``).
    var followsJournal = false {
        didSet { if oldValue && !followsJournal && serving { for o in intakeOpenObservers { o() } } }
    }
    /// Called whenever an instance dies (the transfer and update runners listen).
    var instanceDeathObservers: [(WorkerInstance, String) -> Void] = []
    /// Called for every result the primary returns (prediction engine feed).
    var primaryResultObserver: ((ApplyRequest, ApplyResult) -> Void)?
    /// Called with every instance's reply to a checkpoint input, by sequence number.
    var checkpointObservers: [UInt64: (WorkerInstance, [UInt8]) -> Void] = [:]
    /// Per-request latency observer (probation).
    var latencyObserver: ((TimeAmount, Bool) -> Void)?
    /// Clients waiting for replies the service held back (blocked commands), by sequence number. A deferred reply
    /// goes to the waiter of its sequence number, whichever instance is primary when it comes, and only once.
    private(set) var deferredWaiters: [UInt64: DeferredWaiter] = [:]
    /// The commands the services declared as blocking (``Hello/blockingCommands``), learnt from every greeting.
    private(set) var blockingCommands = BlockingCommandSet()
    /// Called when this supervisor starts taking client inputs: after the start, or on taking over as active.
    var intakeOpenObservers: [() -> Void] = []

    init(
        loop: any EventLoop, journal: Journal, configuration: PipelineConfiguration, serviceBinary: String,
        threadPool: NIOThreadPool, comparator: Comparator, metrics: SupervisorMetrics, logger: Logger,
        quarantine: QuarantineLog = QuarantineLog(directory: nil)
    ) {
        self.quarantine = quarantine
        self.snapshotter = Snapshotter(
            loop: loop, journal: journal, threadPool: threadPool, metrics: metrics, logger: logger,
            schedule: SnapshotSchedule(
                everyRecords: configuration.snapshotEveryRecords, interval: configuration.snapshotInterval,
                minimumSpacing: configuration.minimumSnapshotSpacing))
        self.loop = loop
        self.journal = journal
        self.configuration = configuration
        self.serviceBinary = serviceBinary
        self.threadPool = threadPool
        self.comparator = comparator
        self.metrics = metrics
        self.logger = logger
        self.sequencer = Sequencer(after: journal.lastSequence)
        self.log = InputLog(first: journal.lastSequence + 1)
        self.releasedDurableSequence = journal.lastSequence
        self.releaseScan = journal.lastSequence + 1
    }

    /// The last sequence number assigned.
    var lastSequence: UInt64 { sequencer.lastSequence }
    /// The number the next input gets.
    var nextSequence: UInt64 { sequencer.nextSequence }

    // MARK: starting

    /// Spawns the primary, restores the newest snapshot, replays the journal; completes when caught up.
    func start() -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        let loop = self.loop
        // The journal's writer thread and NIO's repeated tasks reach the pipeline only through this reference, in
        // closures that run on `loop` (it checks).
        let pipeline = NIOLoopBound(self, eventLoop: loop)
        // A reply leaves only once its record is durable per the policy: `always`, fsynced; `everysec` and `no`,
        // written to the operating system (as Redis does), so a crash of the supervisor process loses nothing
        // acknowledged. Strong: the pipeline lives as long as the journal (a weak reference would slow every
        // retain of it).
        journal.onDurable { seq in
            loop.execute { pipeline.value.durabilityAdvanced(seq) }
        }
        // The request deadline holds during the recovery replay too: an input that hangs the service is
        // quarantined there as anywhere.
        let deadlineCheck = min(TimeAmount.milliseconds(50), configuration.requestDeadline)
        timers.append(loop.scheduleRepeatedTask(initialDelay: deadlineCheck, delay: deadlineCheck) { _ in
            pipeline.value.instances.checkRequestDeadline()
        })
        return loadQuarantine().assumeIsolated().flatMap {
            self.spawnInstance(binary: self.serviceBinary, role: .primary)
        }.flatMap { bound in
            // One service per journal: a journal shared by supervisors (PostgreSQL) records whose it is.
            let instance = bound.value
            let journal = self.journal
            let service = instance.hello?.service ?? "?"
            return self.threadPool.runIfActive(eventLoop: self.loop) { try journal.claim(service: service) }
                .assumeIsolated()
                .flatMapErrorThrowing { error in
                    instance.retire(reason: "the journal belongs to another service")
                    throw SupervisorError(.serviceMismatch, "\(error)")
                }
                .map { bound }
                .nonisolated()
        }.flatMap { bound in
            let instance = bound.value
            self.instances.setPrimary(instance)
            self.comparator.addRules(instance.hello?.comparisonRules ?? [:])
            return self.bootstrap(instance).assumeIsolated().flatMap {
                let target = self.lastSequence
                let from = instance.appliedSequence
                let started = NIODeadline.now()
                // Progress of the recovery replay, once a second: position, rate and ETA.
                let progress = self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                    let done = (pipeline.value.primary?.appliedSequence ?? from) &- from
                    let total = target - from
                    let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
                    let rate = seconds > 0 ? Double(done) / seconds : 0
                    let eta = rate > 0 ? Double(total - min(done, total)) / rate : 0
                    pipeline.value.logger.info("replaying the journal: \(done)/\(total) records, \(Int(rate)) records/s, ETA \(Int(eta.rounded())) s")
                }
                return self.waitForRecovery(target).always { _ in progress.cancel() }
            }.nonisolated()
        }.map {
            self.primary?.phase = .live
            self.serving = true
            self.startTimers()
            if self.configuration.shadow { self.instances.startShadow() }
            if !self.followsJournal { for o in self.intakeOpenObservers { o() } }
        }.nonisolated()
    }

    /// Completes when the primary has replayed the journal through `target`. A primary that dies of an input
    /// during the replay has it quarantined and is replaced; the wait goes on with its successor.
    private func waitForRecovery(_ target: UInt64) -> EventLoopFuture<Void> {
        // A primary that just died is still in the roster until its death is handled: waiting on it again would
        // fail at once, and recurse until the stack overflowed. Its successor is awaited instead.
        guard let primary, !primary.isDead else {
            if instances.primaryRestarts.givenUp {
                return loop.makeFailedFuture(SupervisorError(.workerExited, "the primary was given up during recovery: \(givenUpReason ?? "too many restarts")"))
            }
            if stopping { return loop.makeFailedFuture(SupervisorError(.workerFailed, "the supervisor stopped during recovery")) }
            // A failover is starting the next primary: wait for it (or for the role to be given up, or a stop).
            return nextPrimary().assumeIsolated().flatMap { self.waitForRecovery(target) }.nonisolated()
        }
        return waitUntilApplied(primary, target, timeout: .minutes(30)).assumeIsolated().flatMapError { error in
            guard primary.isDead, !self.stopping, !self.instances.primaryRestarts.givenUp else { return self.loop.makeFailedFuture(error) }
            return self.waitForRecovery(target)
        }.nonisolated()
    }

    /// Waits for the next primary while a failover starts one. Completed by ``primaryChanged(_:)``; every wait ends
    /// when the role is given up or the supervisor stops (the caller then looks at why).
    private func nextPrimary() -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        primaryWaiters.append(promise)
        return promise.futureResult
    }

    private func endPrimaryWaits() {
        let waiters = primaryWaiters
        primaryWaiters = []
        for w in waiters { w.succeed() }
    }

    /// A new primary (nil: none for now). An HTTP service's declared routes name its requests' command classes
    /// (comparisons, the deploy gate).
    private func primaryChanged(_ instance: WorkerInstance?) {
        guard let instance else { return }
        metrics.classifier.httpRoutes.learn(instance.hello?.http)
        endPrimaryWaits()
    }

    /// Rebuilds the quarantine set from the journal's quarantine records (the file beside it may lack the last
    /// one, if the supervisor died between the two).
    private func loadQuarantine() -> EventLoopFuture<Void> {
        let journal = self.journal
        return threadPool.runIfActive(eventLoop: loop) { () -> [(QuarantineRecord, String)] in
            var found: [(QuarantineRecord, String)] = []
            var next = journal.oldestSequence
            while next <= journal.lastSequence {
                let records: [JournalRecord]
                do {
                    records = try journal.read(from: next, maxCount: 65_536)
                } catch let error as JournalError where error.code == .sequenceUnavailable {
                    // Pruned meanwhile by another supervisor (a shared journal): go on from what is kept.
                    let oldest = journal.oldestSequence
                    guard oldest > next else { throw error }
                    next = oldest
                    continue
                }
                guard let last = records.last else { break }
                for r in records where r.tag == InputTag.quarantine {
                    guard let q = QuarantineRecord(decoding: r.payload) else { continue }
                    var command = "?"
                    if let original = try? journal.read(from: q.sequence, maxCount: 1).first, original.sequence == q.sequence {
                        command = CommandClassifier().classify(tag: original.tag, payload: original.payload)
                    }
                    found.append((q, command))
                }
                next = last.sequence + 1
            }
            return found
        }.assumeIsolated().map { found in
            for (record, command) in found where !self.quarantine.contains(record.sequence) {
                self.quarantine.add(QuarantineEntry(
                    sequence: record.sequence, command: command, reason: record.reason, instance: 0, time: QuarantineLog.now()))
            }
            if !self.quarantine.entries.isEmpty {
                self.logger.notice("quarantined inputs will be skipped", metadata: ["understudy.count": "\(self.quarantine.entries.count)"])
            }
        }.nonisolated()
    }

    func spawnInstance(
        binary: String, role: InstanceRole, arguments: [String]? = nil, environment: [String: String]? = nil
    ) -> EventLoopFuture<NIOLoopBound<WorkerInstance>> {
        instances.spawn(binary: binary, role: role, arguments: arguments, environment: environment).assumeIsolated().map { bound in
            self.blockingCommands.learn(bound.value.hello?.blockingCommands ?? [])
            return bound
        }.nonisolated()
    }

    /// Whether the command `name` may hold its reply back (read in place: a front-end asks for every command).
    @inline(__always)
    func mayBlock(_ name: [UInt8]) -> Bool { blockingCommands.contains(name) }

    /// Some service declared blocking commands.
    var declaresBlockingCommands: Bool { !blockingCommands.isEmpty }

    /// Declares blocking commands without a worker's greeting (tests of the front-end).
    func learnBlockingCommands(_ names: [String]) {
        blockingCommands.learn(names)
    }

    /// Restores the newest snapshot into a fresh instance (or leaves the initial state), then starts feeding it.
    func bootstrap(_ instance: WorkerInstance) -> EventLoopFuture<Void> {
        instance.phase = .restoring
        let journal = self.journal
        return freshSnapshotForShadow(instance).assumeIsolated().flatMap {
            self.threadPool.runIfActive(eventLoop: self.loop) { try journal.newestSnapshot() }
        }.flatMap { snapshot in
            guard let snapshot else { return self.loop.makeSucceededFuture(0) }
            if let hello = instance.hello, snapshot.service != hello.service {
                return self.loop.makeFailedFuture(SupervisorError(
                    .serviceMismatch,
                    "the data directory holds state of service '\(snapshot.service)', but \(instance.binary) is '\(hello.service)'"))
            }
            return self.snapshotter.restore(snapshot.data, sequence: snapshot.sequence, schemaVersion: UInt32(snapshot.schemaVersion), into: instance)
        }.map { (sequence: UInt64) in
            instance.sentSequence = sequence
            instance.appliedSequence = sequence
            instance.restored = true
            if instance === self.primary { self.primaryAppliedBound = max(self.primaryAppliedBound, sequence) }
            self.instances.addStandby(instance)
            instance.phase = .catchingUp
            self.pump(instance)
            self.flushInstances()
        }.nonisolated()
    }

    /// A shadow started while the newest snapshot is more than ``freshSnapshotAfterInputs`` behind the head (after a
    /// failover under load, typically) would replay all of that before it could take over: the primary is asked for
    /// a snapshot first — encoded beside its inputs, so it does not stall — and the shadow restores from that. Falls
    /// back to the newest snapshot on disk if none can be taken (one in flight, no live primary).
    private func freshSnapshotForShadow(_ instance: WorkerInstance) -> EventLoopFuture<Void> {
        guard instance.role == .shadow, serving, !followsJournal, let primary, primary !== instance, primary.isLive,
            lastSequence &- min(lastSnapshotSequence, lastSequence) > Self.freshSnapshotAfterInputs
        else { return loop.makeSucceededVoidFuture() }
        logger.info("taking a snapshot from the primary for the new shadow", metadata: [
            "understudy.seq": "\(lastSequence)", "understudy.snapshotSequence": "\(lastSnapshotSequence)",
        ])
        return snapshotter.take(from: primary).map { _ in () }.recover { _ in () }
    }

    /// Inputs since the newest snapshot beyond which a new shadow restores from a fresh one.
    static let freshSnapshotAfterInputs: UInt64 = 50_000

    /// Completes when `instance` has applied `sequence` (fails if it dies or the timeout passes).
    ///
    /// Event-driven: resolved from ``instanceApplied(_:_:)`` the moment the result arrives (a swap's pause waits on
    /// this), failed from ``instanceStoppedApplying(_:reason:)``, and by one timer at the deadline — no polling.
    func waitUntilApplied(_ instance: WorkerInstance, _ sequence: UInt64, timeout: TimeAmount) -> EventLoopFuture<Void> {
        if instance.appliedSequence >= sequence { return loop.makeSucceededVoidFuture() }
        if case .dead(let reason) = instance.phase {
            return loop.makeFailedFuture(SupervisorError(.workerExited, reason))
        }
        let promise = loop.makePromise(of: Void.self)
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = loop.assumeIsolated().scheduleTask(in: timeout) {
            guard let index = self.appliedWaiters.firstIndex(where: { $0.id == id }) else { return }
            self.appliedWaiters.remove(at: index)
            promise.fail(SupervisorError(.timeout, "instance \(instance.id) did not reach sequence \(sequence) in time (at \(instance.appliedSequence))"))
        }
        appliedWaiters.append(AppliedWaiter(id: id, instance: instance, sequence: sequence, promise: promise, timer: timer))
        return promise.futureResult
    }

    struct AppliedWaiter {
        var id: UInt64
        var instance: WorkerInstance
        var sequence: UInt64
        var promise: EventLoopPromise<Void>
        var timer: NIOLoopBound<Scheduled<Void>>

        init(id: UInt64, instance: WorkerInstance, sequence: UInt64, promise: EventLoopPromise<Void>, timer: Scheduled<Void>) {
            self.id = id
            self.instance = instance
            self.sequence = sequence
            self.promise = promise
            self.timer = NIOLoopBound(timer, eventLoop: promise.futureResult.eventLoop)
        }
    }
    private var appliedWaiters: [AppliedWaiter] = []
    /// Waits for the next primary (``nextPrimary()``).
    private var primaryWaiters: [EventLoopPromise<Void>] = []
    private var nextWaiterID: UInt64 = 1

    /// Completes the waits `instance` satisfied.
    private func resolveAppliedWaiters(_ instance: WorkerInstance) {
        completeAppliedWaiters(where: { $0.instance === instance && instance.appliedSequence >= $0.sequence }, with: .success(()))
    }

    /// Fails the waits on an instance that died or was retired.
    func instanceStoppedApplying(_ instance: WorkerInstance, reason: String) {
        guard !appliedWaiters.isEmpty else { return }
        completeAppliedWaiters(where: { $0.instance === instance }, with: .failure(SupervisorError(.workerExited, reason)))
    }

    private func completeAppliedWaiters(where matches: (AppliedWaiter) -> Bool, with result: Result<Void, any Error>) {
        var i = 0
        while i < appliedWaiters.count {
            if matches(appliedWaiters[i]) {
                let waiter = appliedWaiters.remove(at: i)
                waiter.timer.value.cancel()
                waiter.promise.completeWith(result)
            } else {
                i += 1
            }
        }
    }

    // MARK: intake

    /// Sequences, journals and dispatches one client input (or holds it while intake is paused).
    ///
    /// - Parameters:
    ///   - tag: The input's protocol tag.
    ///   - payload: The input's bytes.
    ///   - onPending: Told the input's sequence number if the service holds its reply back (a blocked command).
    ///   - sink: Where the reply goes (a held-back reply too, when it comes).
    func submit(tag: UInt8, payload: [UInt8], onPending: PendingSink?, sink: ReplySink?) {
        if followsJournal {
            sink?(failureReply(tag, .readOnly))
            return
        }
        if intakePaused || primary == nil || stopping {
            if stopping {
                sink?(failureReply(tag, .shuttingDown))
                return
            }
            guard held.count < configuration.maximumHeldRequests else {
                sink?(failureReply(tag, .busy))
                return
            }
            held.append(HeldInput(tag: tag, payload: payload, sink: sink, onPending: onPending))
            return
        }
        sequence(tag: tag, payload: payload, onPending: onPending, sink: sink)
    }

    /// The client waiting for this held-back reply went away: nobody gets it. (The service forgets the request
    /// when the client's connection-closed input comes.)
    func forgetPending(_ sequence: UInt64) {
        deferredWaiters[sequence] = nil
    }

    /// The number of clients waiting for a held-back reply.
    var pendingReplyCount: Int { deferredWaiters.count }

    private func sequence(tag: UInt8, payload: [UInt8], onPending: PendingSink? = nil, sink: ReplySink?) {
        let request = sequencer.next(tag: tag, payload: payload, nowMillis: Int64(Date().timeIntervalSince1970 * 1000))
        let seq = request.sequence
        do {
            try journal.appendDeferred(JournalRecord(sequence: seq, time: request.time, seed: request.seed, tag: tag, payload: payload))
        } catch {
            logger.error("journal append failed", metadata: ["understudy.error": "\(error)"])
            sink?(failureReply(tag, .journal("\(error)")))
            return
        }
        sequencer.commit()
        if !journalWakePending {
            journalWakePending = true
            scheduleFlush()
        }
        log.append(Entry(request: request, sink: sink, onPending: onPending, enqueuedAt: .now()))
        // Primary first: standbys get this input once the primary has applied it (see instanceApplied).
        if let primary { pump(primary) }
        if seq - min(seq, lastSnapshotSequence) >= configuration.snapshotEveryRecords { scheduledSnapshot() }
    }

    /// Journals a checkpoint: every instance reports its digest at this sequence point.
    /// Returns the checkpoint's sequence number (nil if intake is paused).
    func checkpoint(referenceSchema: UInt32, observer: @escaping (WorkerInstance, [UInt8]) -> Void) -> UInt64? {
        guard !intakePaused, primary != nil, !stopping, !followsJournal else { return nil }
        var w = ByteWriter()
        w.write(referenceSchema)
        let seq = nextSequence
        checkpointObservers[seq] = observer
        sequence(tag: InputTag.checkpoint, payload: w.bytes, sink: nil)
        guard nextSequence > seq else {
            checkpointObservers[seq] = nil
            return nil
        }
        return seq
    }

    /// Stops sequencing new inputs; they are held until ``resumeIntake(reason:)``.
    func pauseIntake(reason: String) {
        pauseReasons.insert(reason)
        intakePaused = true
    }

    /// A standby's step: records another supervisor journaled join the log as if sequenced here (no client waits
    /// for them) and are fed to the instances. Quarantine records among them keep their inputs out of every feed.
    ///
    /// - Returns: How many records were taken (a record that does not follow the last one ends the batch).
    @discardableResult
    func adoptFollowed(_ records: [JournalRecord]) -> Int {
        var taken = 0
        for r in records where r.tag == InputTag.quarantine {
            if let q = QuarantineRecord(decoding: r.payload), !quarantine.contains(q.sequence) {
                quarantine.add(QuarantineEntry(
                    sequence: q.sequence, command: "?", reason: q.reason, instance: 0, time: QuarantineLog.now()))
            }
        }
        for r in records {
            guard r.sequence == nextSequence else { break }
            let request = ApplyRequest(sequence: r.sequence, time: r.time, seed: r.seed, tag: r.tag, payload: r.payload)
            sequencer.adopt(request)
            log.append(Entry(request: request, sink: nil, enqueuedAt: .now()))
            releasedDurableSequence = r.sequence
            releaseScan = r.sequence + 1
            taken += 1
        }
        if taken > 0, let primary { pump(primary) }
        flushInstances()
        return taken
    }

    /// Answers every client still waiting with `failure` (nothing of theirs is acknowledged; a supervisor that
    /// was taken over says so before it becomes a standby).
    func failUnreleased(_ failure: PipelineFailure) {
        while let h = held.popFirst() { h.sink?(failureReply(h.tag, failure)) }
        failDeferredWaiters(failure)
        var i = log.startIndex
        while i != log.endIndex {
            if !log[i].released, let sink = log[i].sink {
                log[i].released = true
                log[i].sink = nil
                sink(failureReply(log[i].request.tag, failure))
            }
            i = log.index(after: i)
        }
    }

    /// Sequences everything held, in arrival order, and resumes normal intake.
    func resumeIntake(reason: String) {
        pauseReasons.remove(reason)
        guard pauseReasons.isEmpty else { return }
        intakePaused = false
        guard primary != nil else { return }
        while !intakePaused, let h = held.popFirst() {
            sequence(tag: h.tag, payload: h.payload, onPending: h.onPending, sink: h.sink)
        }
        flushInstances()
    }

    var heldCount: Int { held.count }

    // MARK: feeding workers

    /// The most inputs one ``pump(_:)`` call sends (about a millisecond of loop time).
    static let pumpSlice = 1024

    /// Sends an instance everything it has not yet been sent, within its in-flight window.
    func pump(_ instance: WorkerInstance) {
        guard !instance.isDead else { return }
        // Primary first: a standby (shadow, candidate, probation) gets an input only after the primary applied it,
        // so no standby ever executes the input that kills the primary — it is there to take over.
        let head = instance === primary ? lastSequence : min(lastSequence, primaryAppliedBound)
        let window = UInt64(configuration.inflightWindow)
        // A standby catching up may be thousands of inputs behind: feed it in slices, so one call never holds
        // the loop (and every client on it) for long; its results call pump again.
        var slice = Self.pumpSlice
        while instance.sentSequence < head && instance.sentSequence - instance.appliedSequence < window {
            guard slice > 0 else { return }
            slice -= 1
            let next = instance.sentSequence + 1
            if let i = log.index(of: next) {
                instance.send(.apply(feedable(log[i].request)))
                instance.sentSequence = next
            } else {
                // Older than the in-memory window: read from disk off the event loop (a catching-up
                // standby must never stall the clients), then carry on from where the read ended.
                guard !instance.diskReadInFlight else { return }
                let want = Int(min(window - (instance.sentSequence - instance.appliedSequence), log.base - next, UInt64(Self.pumpSlice)))
                instance.diskReadInFlight = true
                let journal = self.journal
                threadPool.runIfActive(eventLoop: loop) { try journal.read(from: next, maxCount: want) }
                    .assumeIsolated().whenComplete { result in
                        instance.diskReadInFlight = false
                        guard !instance.isDead, instance.sentSequence + 1 == next else { return }
                        switch result {
                        case .success(let records):
                            guard !records.isEmpty else { return }
                            for r in records {
                                instance.send(.apply(self.feedable(ApplyRequest(sequence: r.sequence, time: r.time, seed: r.seed, tag: r.tag, payload: r.payload))))
                                instance.sentSequence = r.sequence
                            }
                            self.pump(instance)
                        case .failure(let error):
                            instance.fail(SupervisorError(.journal, "cannot read the journal from sequence \(next) for instance \(instance.id): \(error)"))
                        }
                    }
                return
            }
        }
    }

    /// The input as an instance is fed it: a quarantined input is replaced by a no-op with the same sequence number.
    @inline(__always)
    private func feedable(_ r: ApplyRequest) -> ApplyRequest {
        guard quarantine.contains(r.sequence) else { return r }
        return ApplyRequest(sequence: r.sequence, time: r.time, seed: r.seed, tag: InputTag.quarantine, payload: [])
    }

    /// Sends the primary advice: keys the prediction engine expects soon (never journaled, never applied as data).
    func sendPrefetch(_ keys: [[UInt8]]) {
        guard let primary, primary.isLive, !intakePaused else { return }
        primary.send(.prefetch(keys: keys))
        prefetchHintsDelivered += 1
        scheduleFlush()
    }

    func instanceFlushNeeded() {
        scheduleFlush()
    }

    func clientNeedsFlush(_ client: any Flushable) {
        dirtyClients.append(client)
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.assumeIsolated().execute { self.flushAll() }
    }

    private func flushAll() {
        flushScheduled = false
        if journalWakePending {
            journalWakePending = false
            journal.wakeWriter()
        }
        flushInstances()
        if trimPending { trimLog() }
        adjustIntakeThrottle()
        let clients = dirtyClients
        dirtyClients.removeAll(keepingCapacity: true)
        for c in clients { c.flushNow() }
    }

    func flushInstances() {
        primary?.flush()
        for s in standbys { s.flush() }
    }

    /// The command class of a log entry, classified on first use.
    private func commandClass(_ i: InputLog.Index) -> String {
        if let command = log[i].command { return command }
        let command = metrics.classifier.classify(tag: log[i].request.tag, payload: log[i].request.payload)
        log[i].command = command
        return command
    }


    // MARK: results

    func instanceApplied(_ instance: WorkerInstance, _ result: ApplyResult) {
        let seq = result.sequence
        // Waiters are told last: what they run (a swap's next step may flip roles) must see this result
        // recorded and released as the instance's role was when it arrived.
        defer { if !appliedWaiters.isEmpty { resolveAppliedWaiters(instance) } }
        // Held intake is reconsidered at the end of this loop turn (nothing else may happen while it is held).
        if intakeThrottle.engaged { scheduleFlush() }
        if instance === primary {
            primaryAppliedBound = max(primaryAppliedBound, seq)
            instances.primaryProgressed()
        }
        // The primary went first; the standbys may now have this input too.
        defer { if instance === primary { for s in standbys where !s.isDead && s.phase != .restoring { pump(s) } } }
        if let i = log.index(of: seq) {
            instance.appliedTime = log[i].request.time
            let tag = log[i].request.tag
            if tag == InputTag.checkpoint || tag == InputTag.quarantine || quarantine.contains(seq) {
                if tag == InputTag.checkpoint { checkpointObservers[seq]?(instance, result.response) }
                if instance === primary {
                    // A quarantined input's client already has its error reply (set before the failover).
                    if log[i].response == nil {
                        log[i].response = tag == InputTag.checkpoint || tag == InputTag.quarantine ? result.response : quarantineReply(seq)
                    }
                    release(i)
                }
                if instance.phase == .catchingUp && hasCaughtUp(instance) { instance.phase = .live }
                pump(instance)
                requestTrim()
                return
            }
            if instance === primary {
                log[i].response = result.response
                log[i].pending = result.pending
                log[i].deferred = result.deferredReplies
                if !log[i].early.isEmpty {
                    let mine = InstanceReply(result)
                    for (otherID, reply) in log[i].early {
                        if let other = standbys.first(where: { $0.id == otherID }) {
                            comparator.compare(request: log[i].request, command: commandClass(i), primary: mine, other: reply, instance: other)
                        }
                    }
                    log[i].early = []
                }
                release(i)
                primaryResultObserver?(log[i].request, result)
            } else {
                if !log[i].released && instance === failoverTarget {
                    log[i].standbyReply = InstanceReply(result)
                }
                if let primaryReply = log[i].response {
                    let primary = InstanceReply(response: primaryReply, pending: log[i].pending, deferred: log[i].deferred)
                    comparator.compare(request: log[i].request, command: commandClass(i), primary: primary, other: InstanceReply(result), instance: instance)
                } else {
                    log[i].early.append((instance.id, InstanceReply(result)))
                }
            }
        }
        if instance.phase == .catchingUp && hasCaughtUp(instance) {
            instance.phase = .live
            logger.info("instance caught up", metadata: ["understudy.instance": "\(instance.id)", "understudy.role": "\(instance.role.rawValue)", "understudy.seq": "\(seq)"])
        }
        pump(instance)
        requestTrim()
    }

    /// A standby catching up is level with the primary: it has applied everything the primary has (a live standby
    /// is never further ahead; standbys are fed only what the primary applied). Not `lastSequence`: under a
    /// continuous load the head is always ahead of both — a new shadow measured against it stayed "catching up"
    /// until the load ended, and no failover target existed meanwhile.
    private func hasCaughtUp(_ instance: WorkerInstance) -> Bool {
        guard let primary, primary !== instance else { return instance.appliedSequence >= lastSequence }
        return instance.appliedSequence >= min(lastSequence, max(primaryAppliedBound, primary.appliedSequence))
    }

    private func release(_ i: InputLog.Index) {
        guard !log[i].released, let response = log[i].response else { return }
        let seq = log[i].request.sequence
        if seq > releasedDurableSequence { return }
        log[i].released = true
        if !log[i].deferred.isEmpty {
            // Replies to earlier, held-back requests leave with the input that produced them: it is durable too.
            // (Kept in the entry: standbys that apply it later are compared against them.)
            for d in log[i].deferred { deliverDeferred(d) }
        }
        if log[i].pending {
            // The reply comes later: the client waits, whichever instance will be primary then.
            if let sink = log[i].sink {
                log[i].sink = nil
                deferredWaiters[seq] = DeferredWaiter(tag: log[i].request.tag, sink: sink, enqueuedAt: log[i].enqueuedAt, command: commandClass(i))
            }
            if let onPending = log[i].onPending {
                log[i].onPending = nil
                onPending(seq)
            }
            return
        }
        log[i].onPending = nil
        let elapsed = NIODeadline.now() - log[i].enqueuedAt
        if let sink = log[i].sink {
            log[i].sink = nil
            sink(response)
            let isError = response.first == UInt8(ascii: "-")
            metrics.recordRequest(command: commandClass(i), latency: elapsed, error: isError)
            latencyObserver?(elapsed, isError)
        }
    }

    /// Hands a held-back reply to the client still waiting for it (none after its connection closed or a
    /// supervisor restart, or when it was delivered already: a promoted standby produces the same reply again).
    private func deliverDeferred(_ reply: DeferredReply) {
        guard let waiter = deferredWaiters.removeValue(forKey: reply.sequence) else { return }
        waiter.sink(reply.response)
        let elapsed = NIODeadline.now() - waiter.enqueuedAt
        let isError = reply.response.first == UInt8(ascii: "-")
        metrics.recordRequest(command: waiter.command, latency: elapsed, error: isError)
    }

    /// Answers every client waiting for a held-back reply with `failure`, in sequence order.
    private func failDeferredWaiters(_ failure: PipelineFailure) {
        let waiting = deferredWaiters.sorted { $0.key < $1.key }
        deferredWaiters = [:]
        for (_, w) in waiting { w.sink(failureReply(w.tag, failure)) }
    }

    func durabilityAdvanced(_ seq: UInt64) {
        guard seq > releasedDurableSequence else { return }
        releasedDurableSequence = seq
        var s = max(releaseScan, log.base)
        while s <= seq, let i = log.index(of: s) {
            release(i)
            s += 1
        }
        releaseScan = s
        requestTrim()
    }

    /// A trim of the input window is due at the end of this loop turn (once per turn, not once per result).
    private var trimPending = false

    private func requestTrim() {
        guard !trimPending else { return }
        trimPending = true
        scheduleFlush()
    }

    /// Drops released entries that every live standby has applied (or any released entry once the window is over
    /// its size: standbys that far behind read the journal).
    private func trimLog() {
        trimPending = false
        var excess = log.count - configuration.logWindow
        let standbys = self.standbys
        log.trim { first in
            guard first.isSettled else { return false }
            excess -= 1
            if excess >= 0 { return true }
            let seq = first.request.sequence
            return !standbys.contains { !$0.isDead && $0.appliedSequence < seq }
        }
    }

    // MARK: instance deaths, failover

    func instanceDied(_ instance: WorkerInstance, reason: String) {
        logger.error("instance died", metadata: ["understudy.instance": "\(instance.id)", "understudy.role": "\(instance.role.rawValue)", "understudy.reason": "\(reason)"])
        metrics.workerRestarts.increment()
        restarts += 1
        comparator.forget(instance.id)
        for observer in instanceDeathObservers { observer(instance, reason) }
        let wasPrimary = instance === primary
        instances.remove(instance)
        if wasPrimary {
            // A primary that dies before its state was restored fails its start; whoever started it retries.
            guard !stopping, instance.restored else { return }
            let death = instance.death ?? DeathReport(reason: reason)
            // An input the primary was executing is judged; one already quarantined (or the stand-in no-op) is not.
            var verdict = BlameVerdict.noInput
            if let seq = death.executing, seq <= lastSequence, !quarantine.contains(seq) {
                verdict = BlameVerdict.judge(death, earlierDeaths: blameCounts[seq] ?? 0)
            }
            switch verdict {
            case .quarantine(let seq, let why):
                blameCounts[seq] = nil
                quarantineInput(seq, reason: why, instance: instance) { self.failover(reason: reason) }
            case .retry(let seq):
                blameCounts[seq, default: 0] += 1
                logger.warning("the primary was killed from outside while executing an input; the standby retries it once", metadata: ["understudy.seq": "\(seq)"])
                failover(reason: reason)
            case .noInput:
                failover(reason: reason, unexplained: true)
            }
        } else if instance.role == .shadow && configuration.shadow && !stopping {
            instances.shadowDied(instance, reason: reason)
        }
    }

    /// The error reply a quarantined input's client gets.
    func quarantineReply(_ seq: UInt64) -> [UInt8] {
        let reason = quarantine.entries[seq]?.reason ?? "it made the service fail"
        let tag = log.index(of: seq).map { log[$0].request.tag } ?? InputTag.resp
        return failureReply(tag, .quarantined(sequence: seq, reason: reason))
    }

    /// Formatters of the supervisor's own replies per input tag, registered by front-ends (RESP is the default).
    private var failureFormatters: [UInt8: FailureFormatter] = [:]

    func registerFailureFormatter(tag: UInt8, _ formatter: @escaping FailureFormatter) {
        failureFormatters[tag] = formatter
    }

    var serviceHello: Hello? { primary?.hello }

    /// The supervisor's own reply to an input of `tag`, in its front-end's protocol.
    func failureReply(_ tag: UInt8, _ failure: PipelineFailure) -> [UInt8] {
        failureFormatters[tag]?(failure) ?? failure.respBytes
    }

    /// Quarantines an input: a journal record made durable first; then the client's error reply, the
    /// observers, and `then` (the failover). From the moment the set holds it, every feed replaces it by a no-op.
    func quarantineInput(_ seq: UInt64, reason: String, instance: WorkerInstance, then: @escaping () -> Void) {
        let command: String
        if let i = log.index(of: seq) {
            command = commandClass(i)
        } else if let r = try? journal.read(from: seq, maxCount: 1).first, r.sequence == seq {
            command = metrics.classifier.classify(tag: r.tag, payload: r.payload)
        } else {
            command = "?"
        }
        let entry = QuarantineEntry(
            sequence: seq, command: command, reason: reason, instance: instance.id, time: QuarantineLog.now(),
            version: instance.hello?.version)
        logger.error("input quarantined", metadata: [
            "understudy.seq": "\(seq)", "understudy.command": "\(command)", "understudy.reason": "\(reason)",
            "understudy.instance": "\(instance.id)",
        ])
        pauseIntake(reason: "quarantine")
        let recordSequence = nextSequence
        // A standby journals nothing: the active supervisor journals its own quarantine record, and until then
        // this one keeps the input out of its instances by itself.
        if !followsJournal {
            sequence(tag: InputTag.quarantine, payload: QuarantineRecord(sequence: seq, reason: reason).encoded, sink: nil)
            journal.wakeWriter()
        }
        let journal = self.journal
        let durable = followsJournal ? loop.makeSucceededVoidFuture() : nextSequence > recordSequence
            ? threadPool.runIfActive(eventLoop: loop) { try journal.sync(through: recordSequence) }
            : loop.makeFailedFuture(SupervisorError(.journal, "the quarantine record could not be journaled"))
        durable.assumeIsolated().whenComplete { result in
            if case .failure(let error) = result {
                // Nothing can be made durable any more; still, no instance is fed the input again in this run.
                self.logger.critical("the quarantine record of input \(seq) is not durable: \(error)")
            }
            self.quarantine.add(entry)
            for observer in self.quarantineObservers { observer(entry) }
            if let i = self.log.index(of: seq), !self.log[i].released {
                self.log[i].response = self.quarantineReply(seq)
                self.release(i)
            }
            self.resumeIntake(reason: "quarantine")
            then()
        }
    }

    /// The standby that takes over when the primary dies (see ``Roster/failoverTarget(primaryVersion:standbys:)``).
    var failoverTarget: WorkerInstance? { instances.failoverTarget }

    /// The instance snapshots are taken from: a live shadow with the primary's version and schema.
    var snapshotSource: WorkerInstance? { instances.snapshotSource }

    private func failover(reason: String, unexplained: Bool = false) {
        pauseIntake(reason: "failover")
        if unexplained && failoverTarget == nil {
            // No standby, and nothing to blame: restart with back-off, within the intensity limit.
            switch instances.primaryRestartDecision() {
            case .restart(let delay):
                logger.warning("no shadow to fail over to; restarting the primary in \(delay.nanoseconds / 1_000_000) ms")
                loop.assumeIsolated().scheduleTask(in: delay) { if self.primary == nil { self.restartPrimary() } }
            case .giveUp(let count):
                giveUpPrimary("\(count) restarts within \(instances.windowSeconds) s; last: \(reason)")
            }
            return
        }
        if let target = failoverTarget {
            logger.warning("failing over to the shadow", metadata: ["understudy.instance": "\(target.id)"])
            promote(target)
            resumeIntake(reason: "failover")
            if serving { instances.scheduleShadowRespawn() }
        } else {
            logger.warning("no shadow to fail over to; restarting the primary from the newest snapshot and the journal")
            restartPrimary()
        }
    }

    /// Starts a new primary from the newest snapshot and the journal (quarantined inputs skipped). A start that
    /// fails is retried with back-off, and the role is given up past the intensity limit.
    private func restartPrimary() {
        guard !stopping, !instances.primaryRestarts.givenUp else { return }
        spawnInstance(binary: serviceBinary, role: .primary).assumeIsolated().flatMap { bound in
            let instance = bound.value
            self.instances.setPrimary(instance)
            return self.bootstrap(instance).assumeIsolated().map { instance.phase = .catchingUp }.nonisolated()
        }.whenComplete { result in
            switch result {
            case .success:
                self.resumeIntake(reason: "failover")
                if self.serving { self.instances.scheduleShadowRespawn() }
            case .failure(let error):
                if let failed = self.primary, !failed.restored {
                    failed.retire(reason: "start failed")
                    self.instances.setPrimary(nil)
                }
                switch self.instances.primaryRestartDecision() {
                case .restart(let delay):
                    self.logger.critical("could not restart the primary: \(error); retrying in \(delay.nanoseconds / 1_000_000) ms")
                    self.loop.assumeIsolated().scheduleTask(in: delay) { if self.primary == nil { self.restartPrimary() } }
                case .giveUp(let count):
                    self.giveUpPrimary("\(count) failed restarts within \(self.instances.windowSeconds) s; last: \(error)")
                }
            }
        }
    }

    /// Stops restarting the primary (reported in status and health); held requests get an error.
    private func giveUpPrimary(_ reason: String) {
        instances.giveUp(role: "primary", reason: reason)
        while let h = held.popFirst() {
            h.sink?(failureReply(h.tag, .unavailable(reason)))
        }
        // Blocked clients would wait for a primary that is not coming.
        failDeferredWaiters(.unavailable(reason))
        endPrimaryWaits()
    }

    /// Makes `target` the primary: its replies for requests the old primary never answered are used.
    func promote(_ target: WorkerInstance) {
        instances.promote(target)
        var i = log.startIndex
        while i != log.endIndex {
            // The target's own reply when it already applied the request (it need not be the instance that
            // `failoverTarget` named while the old primary lived, e.g. the probation instance after a crash
            // during probation); else the recorded standby reply; else it answers when it applies the request.
            if !log[i].released && log[i].response == nil,
               let reply = log[i].early.first(where: { $0.0 == target.id })?.1 ?? log[i].standbyReply {
                log[i].response = reply.response
                log[i].pending = reply.pending
                log[i].deferred = reply.deferred
                release(i)
            }
            i = log.index(after: i)
        }
        pump(target)
        flushInstances()
    }

    /// Makes `target` primary and keeps the old primary replaying as a standby (a planned swap).
    func flipRoles(to target: WorkerInstance, oldRole: InstanceRole) {
        instances.flipRoles(to: target, oldRole: oldRole)
        comparator.addRules(target.hello?.comparisonRules ?? [:])
    }

    /// Retires (shuts down) every standby matching `predicate`.
    func retireStandbys(where predicate: (WorkerInstance) -> Bool) {
        for s in instances.retireStandbys(where: predicate) { comparator.forget(s.id) }
    }

    /// Stops feeding a standby (it was retired elsewhere).
    func removeStandby(_ instance: WorkerInstance) {
        instances.removeStandby(instance)
        comparator.forget(instance.id)
    }

    /// Adds an instance that has been restored at `sequence` as a standby and starts feeding it.
    func addStandby(_ instance: WorkerInstance, restoredAt sequence: UInt64) {
        instance.restored = true
        instance.sentSequence = sequence
        instance.appliedSequence = sequence
        instance.phase = .catchingUp
        instances.addStandby(instance)
        pump(instance)
        flushInstances()
    }

    // MARK: timers, health, snapshots

    private func startTimers() {
        let pipeline = NIOLoopBound(self, eventLoop: loop)
        timers.append(loop.scheduleRepeatedTask(initialDelay: configuration.tickInterval, delay: configuration.tickInterval) { _ in
            let p = pipeline.value
            guard !p.intakePaused, p.primary != nil, !p.stopping, !p.followsJournal else { return }
            p.submit(tag: InputTag.tick, payload: [], sink: nil)
        })
        timers.append(loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .milliseconds(500)) { _ in
            pipeline.value.healthCheck()
        })
        timers.append(loop.scheduleRepeatedTask(initialDelay: configuration.snapshotInterval, delay: .seconds(1)) { _ in
            pipeline.value.scheduledSnapshot()
        })
    }

    private func healthCheck() {
        // Also when no client is read (the throttle engaged, the standby gone): never stay throttled by mistake.
        adjustIntakeThrottle()
        instances.healthCheck()
        flushInstances()
        returnFreeMemoryAfterBurst()
    }

    /// Sequence number at the last return of free memory to the system.
    private var trimmedAtSequence: UInt64 = 0

    /// After a burst (many inputs since the last trim, and the input window drained again), returns the heap glibc
    /// keeps after freeing — the window's entries, frames and snapshot buffers — to the system, on the thread pool
    /// (it takes the allocator's locks for a moment; never on the loop). Measured after a 1 M-key bulk load: the
    /// supervisor's resident memory fell from 143 MB to 84 MB.
    private func returnFreeMemoryAfterBurst() {
        guard lastSequence &- trimmedAtSequence >= Self.trimAfterInputs, log.count < Self.trimWhenWindowBelow else { return }
        trimmedAtSequence = lastSequence
        threadPool.submit { _ in _ = understudy_return_free_memory() }
    }

    /// Inputs after which a drained window triggers ``returnFreeMemoryAfterBurst()``.
    static let trimAfterInputs: UInt64 = 100_000
    /// The window counts as drained below this many entries.
    static let trimWhenWindowBelow = 4_096

    /// A snapshot the schedule asks for: never while one is in flight, never sooner than the minimum spacing after
    /// the last, and never while a standby is catching up (its lag would make every snapshot stale at birth, and
    /// the snapshot would compete with the catch-up).
    private func scheduledSnapshot() {
        guard !followsJournal else { return }
        snapshotter.takeIfDue(
            head: lastSequence, source: snapshotSource,
            standbyCatchingUp: standbys.contains { $0.phase == .catchingUp || $0.phase == .restoring })
    }

    /// The live standby's lag behind the head, in time: how long ago the oldest input it has not applied arrived.
    var standbyLag: TimeAmount {
        guard let s = failoverTarget, s.isLive, s.appliedSequence < lastSequence else { return .zero }
        guard let i = log.index(of: s.appliedSequence + 1) else { return .hours(1) }
        return NIODeadline.now() - log[i].enqueuedAt
    }

    /// How far behind `instance` is, projected (see ``IntakeGovernor``): the larger of how long ago the oldest input
    /// it has not applied arrived (`counting age`; not for a standby replaying from a snapshot, whose oldest input is
    /// as old as the snapshot) and how long applying its backlog takes at its measured rate. Feeds its rate meter.
    private func projectedLag(_ instance: WorkerInstance, now: NIODeadline, countingAge: Bool = true) -> Int64 {
        let backlog = lastSequence &- min(instance.appliedSequence, lastSequence)
        instance.applyRate.observe(nanoseconds: Int64(now.uptimeNanoseconds), applied: instance.appliedSequence, backlog: backlog)
        guard backlog > 0 else { return 0 }
        var lag = instance.applyRate.drainTime(backlog: backlog)
        if countingAge, let i = log.index(of: instance.appliedSequence + 1) {
            lag = max(lag, (now - log[i].enqueuedAt).nanoseconds)
        }
        return lag
    }

    /// Holds client intake as the ``IntakeGovernor`` decides from the primary's queue, the live standby's lag and
    /// a standby's catch-up (`--max-standby-lag-ms`): a bulk loader slows first, and everyone only when the standby
    /// itself stalls.
    private func adjustIntakeThrottle() {
        let now = NIODeadline.now()
        var queue: Int64 = 0
        var standby: Int64 = 0
        if let p = primary, !p.isDead { queue = projectedLag(p, now: now) }
        let target = failoverTarget
        for s in standbys where !s.isDead {
            if s.phase == .catchingUp {
                let lag = projectedLag(s, now: now, countingAge: false)
                // A deploy's candidate catching up never slows clients: its speed is what the deploy gate judges.
                guard s.role == .shadow else { continue }
                queue = max(queue, lag)
            } else if s.isLive {
                let lag = projectedLag(s, now: now)
                if s === target { standby = lag }
            }
        }
        let before = intakeThrottle.level
        intakeThrottle.set(IntakeGovernor.level(
            current: before, limit: configuration.maxStandbyLag.nanoseconds, queue: queue, standby: standby))
        if before == .open && intakeThrottle.engaged { metrics.intakeThrottled.increment() }
    }

    /// Takes a snapshot from the shadow (never pausing the primary) and writes it to the journal directory.
    @discardableResult
    func takeSnapshot() -> EventLoopFuture<UInt64> {
        snapshotter.take(from: snapshotSource ?? (configuration.shadow ? nil : primary))
    }

    // MARK: stopping

    /// Stops intake and timers, waits for in-flight replies, takes a final snapshot, retires workers.
    func shutdown() -> EventLoopFuture<Void> {
        stopping = true
        instances.stopping = true
        for t in timers { t.cancel() }
        timers = []
        while let h = held.popFirst() { h.sink?(failureReply(h.tag, .shuttingDown)) }
        endPrimaryWaits()
        let drained: EventLoopFuture<Void>
        if let primary {
            drained = waitUntilApplied(primary, lastSequence, timeout: .seconds(10)).assumeIsolated().flatMap {
                guard let target = self.failoverTarget else { return self.loop.makeSucceededVoidFuture() }
                return self.waitUntilApplied(target, self.lastSequence, timeout: .seconds(10))
            }.nonisolated()
        } else {
            drained = loop.makeSucceededVoidFuture()
        }
        return drained.assumeIsolated().flatMap { () -> EventLoopFuture<Void> in
            guard self.lastSequence > self.lastSnapshotSequence, !self.followsJournal else { return self.loop.makeSucceededVoidFuture() }
            return self.takeSnapshot().map { _ in () }.recover { _ in () }
        }.recover { _ in () }.map {
            self.primary?.retire(reason: "supervisor shutting down")
            for s in self.standbys { s.retire(reason: "supervisor shutting down") }
            self.comparator.close()
        }.nonisolated()
    }
}
