import CoreMetrics
import Metrics
import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyJournalPostgres
import UnderstudyPrediction
import UnderstudyWire

/// One instance as `GET /status` shows it.
public struct InstanceStatus: Codable, Sendable {
    public var id: UInt32
    public var role: String
    public var phase: String
    public var service: String
    public var version: String
    public var schemaVersion: UInt32
    public var pid: Int32
    public var binary: String
    public var appliedSequence: UInt64
    public var lagRecords: UInt64
    public var lagMillis: Int64
    public var comparedReplies: Int
    public var differingReplies: Int
    public var discrepancyRate: Double
}

/// The supervisor's state as `GET /status` and `understudy status --json` show it.
public struct SupervisorStatus: Codable, Sendable {
    public var service: String
    public var version: String
    public var listen: String
    public var admin: String?
    public var dataDirectory: String
    public var fsync: String
    public var lastSequence: UInt64
    public var durableSequence: UInt64
    public var intakePaused: Bool
    public var heldRequests: Int
    public var snapshotSequence: UInt64
    public var snapshotInProgress: Bool
    public var instances: [InstanceStatus]
    public var probation: ProbationStatus?
    public var swaps: Int
    public var discrepancies: Int
    public var workerRestarts: Int
    public var uptimeSeconds: Double
    /// Inputs no instance will apply again (they made an instance trap, exit or pass the request deadline).
    public var quarantined: [QuarantineEntry]
    /// Roles given up after too many restarts that no input explains ("primary", "shadow").
    public var givenUpRoles: [String]
    /// The request deadline, in milliseconds.
    public var requestDeadlineMillis: Int64
    /// The live standby's lag behind the head, in milliseconds (0 when in step).
    public var standbyLagMillis: Int64
    /// Client sockets are not being read until the standby catches up (`--max-standby-lag-ms`).
    public var intakeThrottled: Bool
    /// How many times intake was throttled so far.
    public var intakeThrottleEngagements: Int
    /// The TLS client listener (`HOST:PORT`), if any.
    public var tlsListen: String?
    /// Whether clients must authenticate (`--requirepass`, `--aclfile`).
    public var authenticationRequired: Bool?
    /// `active` (serves clients) or `standby` (follows the supervisor that holds the PostgreSQL journal's lease).
    public var mode: String?
    /// The lease and recent active/standby steps (PostgreSQL journals only).
    public var replication: ReplicationStatus?
    /// Clients waiting for a reply the service held back (blocked in BLPOP and the like).
    public var pendingReplies: Int? = nil
    /// How much intake is held: `open`, `pipelinesHeld` (a connection with an unanswered request is not read) or
    /// `closed` (no client socket is read) — see `--max-standby-lag-ms`.
    public var intakeThrottleLevel: String? = nil
}

/// Probation as `GET /status` shows it.
public struct ProbationStatus: Codable, Sendable {
    public var previousPrimary: UInt32
    public var previousVersion: String
    public var newPrimary: UInt32
    public var secondsLeft: Double
    public var requests: Int
    public var errors: Int
}

/// Everything that runs on the core event loop, wired together.
///
/// Not Sendable: the lifecycle task and the admin API hold a ``NIOLoopBound`` of it, made on its loop, and use it
/// only inside closures they submit to that loop.
package final class SupervisorCore {
    /// The loop everything in the core runs on.
    package let loop: any EventLoop
    /// What the supervisor was started with.
    package let configuration: SupervisorConfiguration
    /// The supervisor's logger.
    package let logger: Logger
    let journal: Journal
    let pipeline: RequestPipeline
    let comparator: Comparator
    let metrics: SupervisorMetrics
    let registry: PrometheusCollectorRegistry
    let transfer: TransferRunner
    let deploys: DeployRunner
    let prediction: PredictionAdvisor
    let threadPool: NIOThreadPool
    let startedAt = Date()
    private var listener: (any Channel)?
    /// The admin API (nil with `--admin off`, or when the supervisor was given none to attach). Set while the core is
    /// made, never after, so ``stopAdmin()`` may read it from the lifecycle task.
    private var admin: (any SupervisorAdmin)?
    /// The client front-end (RESP, or HTTP/1.1 when the service declared HTTP in its greeting), chosen when the
    /// listeners start.
    private var frontend: (any ClientFrontend)?
    /// The TLS client listener (SupervisorCore+TLS.swift).
    var tlsListener: (any Channel)?
    /// Where this process's client connections begin in the journal (shared by every RESP connection).
    let connections = ConnectionEpoch()
    /// Active and standby over a PostgreSQL journal (nil with the file journal: always active).
    private(set) var replication: ReplicationController?
    /// Completed with true when this supervisor was taken over and must restart as a standby, or with false when
    /// it stops for another reason (``finishDemotionWait()``).
    let demotion: EventLoopPromise<Bool>?
    private var demotionCompleted = false

    init(
        loop: any EventLoop, journal: Journal, configuration: SupervisorConfiguration, threadPool: NIOThreadPool, logger: Logger,
        replication setup: ReplicationSetup? = nil, admin makeAdmin: SupervisorAdminFactory? = nil
    ) throws {
        self.loop = loop
        self.configuration = configuration
        self.logger = logger
        self.journal = journal
        self.threadPool = threadPool
        self.registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Group commits range from one record (fsync always, one client) to a second's worth (everysec).
        factory.valueHistogramBuckets["understudy_journal_fsync_group_records"] =
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536, 262144, 1_048_576]
        self.metrics = SupervisorMetrics(factory: factory)
        self.comparator = Comparator(dataDirectory: configuration.dataDirectory, classifier: metrics.classifier)
        self.pipeline = RequestPipeline(
            loop: loop, journal: journal, configuration: configuration.pipeline, serviceBinary: configuration.servicePath,
            threadPool: threadPool, comparator: comparator, metrics: metrics, logger: logger,
            quarantine: QuarantineLog(directory: configuration.dataDirectory))
        // Blocked requests from before this process (in the snapshot and the journal) have no client any more:
        // the connections reset is journaled as soon as intake opens, before a push could serve one of them.
        pipeline.intakeOpenObservers.append { [connections, pipeline] in
            if pipeline.lastSequence > 0 && pipeline.declaresBlockingCommands { connections.begin(pipeline) }
        }
        pipeline.quarantineObservers.append { [metrics, comparator, pipeline] entry in
            metrics.quarantinedInputs.increment()
            let request = pipeline.log.index(of: entry.sequence).map { pipeline.log[$0].request }
            comparator.record(Discrepancy(
                sequence: entry.sequence, instance: entry.instance, role: "primary", version: entry.version ?? "?",
                kind: .quarantine, command: entry.command,
                request: request.map { Comparator.render(tag: $0.tag, payload: $0.payload) } ?? entry.command,
                primary: entry.reason, other: "quarantined: no instance applies it again", keys: [],
                timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
        }
        if let setup {
            let controller = ReplicationController(
                loop: loop, journal: setup.journal, pipeline: pipeline, threadPool: threadPool, logger: logger,
                leaseMillis: setup.leaseMillis, holder: setup.holder, mode: setup.mode, epoch: setup.epoch, events: setup.events)
            let promise = loop.makePromise(of: Bool.self)
            self.replication = controller
            self.demotion = promise
        } else {
            self.replication = nil
            self.demotion = nil
        }
        pipeline.serviceArguments = configuration.serviceArguments
        pipeline.serviceEnvironment = configuration.serviceEnvironment
        self.transfer = TransferRunner(
            pipeline: pipeline, configuration: configuration.transfer, metrics: metrics, comparator: comparator, logger: logger)
        self.deploys = DeployRunner(
            pipeline: pipeline, transfer: transfer, comparator: comparator, gate: UpdateGateConfiguration(),
            threadPool: threadPool, logger: logger)
        // The engine's thread hands hints to the loop, where the pipeline is bound (the core is made on its loop).
        let boundPipeline = NIOLoopBound(pipeline, eventLoop: loop)
        self.prediction = PredictionAdvisor(logger: logger, hintSink: { [loop] keys in
            loop.execute { boundPipeline.value.sendPrefetch(keys) }
        })
        if configuration.admin != nil, let makeAdmin { self.admin = try makeAdmin(self) }
        if configuration.prediction {
            let sampler = PredictionSampler(loop: loop, advisor: prediction)
            pipeline.primaryResultObserver = { request, result in
                sampler.observe(request: request, result: result)
            }
        }
        deploys.surpriseProvider = { [prediction] in prediction.currentSurprise }
        deploys.swapTiming = configuration.swapTiming
        if configuration.prediction {
            transfer.forecastRateProvider = { [prediction] in prediction.forecastRequestsPerSecond }
        }
        // Journal fsyncs, reported from the journal's writer thread (these metric objects are thread-safe).
        let fsyncLatency = Metrics.Timer(label: "understudy_journal_fsync_seconds", factory: metrics.factory)
        let groupRecords = Recorder(label: "understudy_journal_fsync_group_records", factory: metrics.factory)
        let fsyncs = Counter(label: "understudy_journal_fsyncs_total", factory: metrics.factory)
        journal.onSync { sync in
            fsyncs.increment()
            fsyncLatency.recordNanoseconds(Int64(sync.nanoseconds))
            if sync.records > 0 { groupRecords.record(Int64(sync.records)) }
        }
    }

    /// Starts the pipeline (recovery), then the client listener and the admin server.
    func start() -> EventLoopFuture<Void> {
        let started = NIODeadline.now()
        if let replication, let demotion {
            replication.onDemoted = { [unowned self] in self.completeDemotion(demotion, true) }
        }
        return pipeline.start().assumeIsolated().flatMap {
            self.replication?.start()
            self.logger.info("recovered", metadata: [
                "understudy.seq": "\(self.pipeline.lastSequence)",
                "understudy.ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
            ])
            return self.startListener()
        }.flatMap {
            self.startTLSListener()
        }.flatMap {
            if self.configuration.prediction { self.prediction.start() }
            guard let address = self.configuration.admin, let admin = self.admin else {
                return self.loop.makeSucceededVoidFuture()
            }
            guard address.isLoopback || self.configuration.allowRemoteAdmin else {
                return self.loop.makeFailedFuture(SupervisorError(
                    .bindFailed, "refusing to serve the admin API on non-loopback address \(address); pass --allow-remote-admin to do so"))
            }
            return admin.start(address: address)
        }.nonisolated()
    }

    private func startListener() -> EventLoopFuture<Void> {
        // The front-end follows the service's greeting: HTTP/1.1 when it declares HTTP, RESP otherwise — on the
        // plain and the TLS listener alike.
        if pipeline.primary?.hello?.http != nil {
            frontend = HTTPFrontend(pipeline: pipeline, configuration: configuration.http, access: configuration.access)
        } else {
            frontend = RESPFrontend(
                pipeline: pipeline, limits: configuration.limits, access: configuration.access, connections: connections)
        }
        guard configuration.plainText else { return loop.makeSucceededVoidFuture() }
        let core = NIOLoopBound(self, eventLoop: loop)
        return ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // Clients take turns in small slices: one read per connection per loop turn, at most 16 KiB, so a bulk
            // loader's socket cannot queue thousands of requests ahead of everyone else in one turn.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 4096, maximum: 16384))
            // Client channels live on the core's loop (the bootstrap's only one), where the core is bound.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try core.value.initializeClientChannel(channel) }
            }
            .bind(host: configuration.listen.host, port: configuration.listen.port)
            .assumeIsolated()
            .map { self.listener = $0 }
            .flatMapErrorThrowing { error in
                throw SupervisorError(.bindFailed, "cannot listen on \(self.configuration.listen): \(error)")
            }
            .nonisolated()
    }

    /// Adds a client connection's handlers after whatever is already there (TLS): the intake throttle and the
    /// service's front-end — HTTP/1.1 when it declared HTTP, RESP otherwise.
    func initializeClientChannel(_ channel: any Channel) throws {
        guard let frontend else { throw SupervisorError(.bindFailed, "a client connected before the front-end was chosen") }
        try frontend.initialize(channel)
    }

    /// What the ready line says (on the core's loop, once started).
    func readyInfo() -> ReadyInfo {
        let port = listener?.localAddress?.port ?? configuration.listen.port
        return ReadyInfo(
            listen: ListenAddress(host: configuration.listen.host, port: port),
            admin: admin?.boundAddress, tls: tlsAddress, plainText: configuration.plainText,
            dataDirectory: configuration.dataDirectory,
            service: "\(pipeline.primary?.hello?.service ?? "?") \(pipeline.primary?.version ?? "?")")
    }

    /// Ends a wait on ``demotion`` that no takeover will end (the supervisor stops).
    func finishDemotionWait() {
        if let demotion { completeDemotion(demotion, false) }
    }

    private func completeDemotion(_ promise: EventLoopPromise<Bool>, _ value: Bool) {
        guard !demotionCompleted else { return }
        demotionCompleted = true
        promise.succeed(value)
    }

    /// Whether this supervisor follows another one (a standby).
    var mode: ReplicationMode { replication?.mode ?? .active }

    /// Stops accepting, drains, takes a final snapshot, retires workers.
    func stop() -> EventLoopFuture<Void> {
        replication?.stop()
        finishDemotionWait()
        prediction.stop()
        let closed = listener?.close() ?? loop.makeSucceededVoidFuture()
        listener = nil
        frontend?.shutdown()
        let closedTLS = tlsListener?.close() ?? loop.makeSucceededVoidFuture()
        tlsListener = nil
        return closed.recover { _ in }.and(closedTLS.recover { _ in }).assumeIsolated().flatMap { _ in
            self.pipeline.shutdown()
        }.nonisolated()
    }

    /// The admin API, to be stopped after the core (it is Sendable: stopping it is asynchronous, off the loop).
    var adminServer: (any SupervisorAdmin)? { admin }

    // MARK: views

    /// The supervisor's state (`GET /status`); also refreshes the gauges the metrics report.
    package func status() -> SupervisorStatus {
        let last = pipeline.lastSequence
        let headTime = pipeline.log.last?.request.time ?? 0
        var instances: [InstanceStatus] = []
        for i in [pipeline.primary].compactMap({ $0 }) + pipeline.standbys {
            let lag = last > i.appliedSequence ? last - i.appliedSequence : 0
            let phase: String
            switch i.phase {
            case .starting: phase = "starting"
            case .restoring: phase = "restoring"
            case .catchingUp: phase = "catching_up"
            case .live: phase = "live"
            case .dead: phase = "dead"
            }
            instances.append(InstanceStatus(
                id: i.id, role: i.role.rawValue, phase: phase, service: i.hello?.service ?? "?", version: i.version,
                schemaVersion: i.hello?.schemaVersion ?? 0, pid: i.pid, binary: i.binary, appliedSequence: i.appliedSequence,
                lagRecords: lag, lagMillis: lag == 0 || i.appliedTime == 0 ? 0 : max(0, headTime - i.appliedTime),
                comparedReplies: i.comparedReplies, differingReplies: i.differingReplies,
                discrepancyRate: comparator.windowRate(i.id)))
        }
        if let s = pipeline.standbys.first(where: { $0.role == .shadow }) {
            metrics.shadowLagRecords.record(Int64(last > s.appliedSequence ? last - s.appliedSequence : 0))
            metrics.discrepancyRate.record(comparator.windowRate(s.id))
        }
        metrics.journalSequence.record(Int64(last))
        metrics.journalDurableSequence.record(Int64(pipeline.durableSequence))
        metrics.heldRequests.record(Int64(pipeline.heldCount))
        metrics.discrepanciesTotal.record(Int64(comparator.totalDiscrepancies))
        let predictions = prediction.snapshot()
        for p in predictions.report?.predictors ?? [] { metrics.recordPredictor(p.name, top1: p.windowTop1) }
        metrics.predictionDrops.record(Int64(predictions.dropped))
        let probation = transfer.probation.map {
            ProbationStatus(
                previousPrimary: $0.oldPrimary.id, previousVersion: $0.oldPrimary.version, newPrimary: $0.newPrimary.id,
                secondsLeft: max(0, Double(($0.until - .now()).nanoseconds) / 1e9), requests: $0.requests, errors: $0.errors)
        }
        return SupervisorStatus(
            service: pipeline.primary?.hello?.service ?? "?", version: pipeline.primary?.version ?? "?",
            listen: configuration.plainText
                ? "\(configuration.listen.host):\(listener?.localAddress?.port ?? configuration.listen.port)" : "off",
            admin: admin?.boundAddress?.description, dataDirectory: configuration.dataDirectory,
            fsync: configuration.pipeline.fsync.rawValue, lastSequence: last, durableSequence: pipeline.durableSequence,
            intakePaused: pipeline.intakePaused, heldRequests: pipeline.heldCount,
            snapshotSequence: pipeline.lastSnapshotSequence, snapshotInProgress: pipeline.snapshotInProgress,
            instances: instances, probation: probation, swaps: transfer.history.count,
            discrepancies: comparator.totalDiscrepancies, workerRestarts: pipeline.restarts,
            uptimeSeconds: Date().timeIntervalSince(startedAt), quarantined: pipeline.quarantine.list,
            givenUpRoles: pipeline.givenUpRoles,
            requestDeadlineMillis: configuration.pipeline.requestDeadline.nanoseconds / 1_000_000,
            standbyLagMillis: pipeline.standbyLag.nanoseconds / 1_000_000, intakeThrottled: pipeline.intakeThrottle.engaged,
            intakeThrottleEngagements: pipeline.intakeThrottle.engagements, tlsListen: tlsAddress?.description,
            authenticationRequired: configuration.access.authenticationRequired, mode: mode.rawValue,
            replication: replication?.status(), pendingReplies: pipeline.pendingReplyCount,
            intakeThrottleLevel: "\(pipeline.intakeThrottle.level)")
    }

    /// `understudy swap`: the live same-version shadow takes over.
    package func swapToShadow() -> EventLoopFuture<SwapRecord> {
        guard mode == .active else {
            return loop.makeFailedFuture(SupervisorError(.rejected, "this supervisor is a standby: swaps are made on the active one"))
        }
        guard let target = pipeline.standbys.first(where: {
            $0.role == .shadow && $0.isLive && $0.version == pipeline.primary?.version
        }) else {
            return loop.makeFailedFuture(SupervisorError(.busy, "there is no live same-version shadow to swap to (it may still be catching up)"))
        }
        return transfer.swapWhenQuiet(to: target, reason: .planned, policy: configuration.swapTiming)
    }
}

/// How a supervisor over a PostgreSQL journal starts: its role, its epoch, its name in the lease.
struct ReplicationSetup: Sendable {
    var journal: PostgresJournal
    var mode: ReplicationMode
    var epoch: UInt64
    var holder: String
    var leaseMillis: Int
    var events: [ReplicationEvent] = []
}
