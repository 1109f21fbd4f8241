import Foundation
import Logging
import NIOCore
import NIOPosix
import UnderstudyWire

/// The role an instance plays.
public enum InstanceRole: String, Sendable, Codable {
    /// Answers clients.
    case primary
    /// A same-version hot standby replaying the journal.
    case shadow
    /// A new version under validation.
    case candidate
    /// The previous primary, kept replaying through the probation window so a rollback is a swap.
    case probation
}

/// Callbacks from an instance to whoever owns it (the request pipeline), on the core event loop.
protocol WorkerInstanceOwner: AnyObject {
    func instanceApplied(_ instance: WorkerInstance, _ result: ApplyResult)
    func instanceDied(_ instance: WorkerInstance, reason: String)
    func instanceFlushNeeded()
    /// The instance will apply nothing more (it failed or was retired): waits on it end now. Told at once, before
    /// ``instanceDied(_:reason:)``, which may wait for the exit status.
    func instanceStoppedApplying(_ instance: WorkerInstance, reason: String)
}

/// Why the supervisor itself killed a worker (a death it caused is not an outside kill).
enum KillCause: Equatable, Sendable {
    /// The input it was executing passed the request deadline.
    case deadline(sequence: UInt64, millis: Int64)
    /// Any other reason (a failed health check, a broken stream, a retirement).
    case supervisor
}

/// How a worker ended, as far as the supervisor can tell, for deciding whether an input is to blame.
struct DeathReport: Sendable, Equatable {
    /// The message logged and shown.
    var reason: String
    /// The input the worker had started and not finished when it died (from its progress file), if any.
    var executing: UInt64?
    /// The signal that ended the process, if a signal did.
    var signal: Int32?
    /// The exit status, if the process exited.
    var exitStatus: Int32?
    /// Set when the supervisor sent the kill.
    var killedBySupervisor: KillCause?
}

/// One worker process and its connection: spawn, handshake, frames, health, death.
///
/// Confined to the supervisor's core event loop: every method runs on `loop`. It is not Sendable, so the compiler
/// keeps it there: closures that may run elsewhere (NIO's Sendable callbacks, the process's termination handler)
/// carry a ``NIOLoopBound`` of it, which checks the loop, and futures carry it the same way.
final class WorkerInstance {
    enum Phase: Equatable {
        case starting
        case restoring
        case catchingUp
        case live
        case dead(String)
    }

    let id: UInt32
    let binary: String
    let arguments: [String]
    let environment: [String: String]
    let loop: any EventLoop
    let logger: Logger
    /// The pipeline (strong: it lives as long as the supervisor, and a weak reference would give it a side table,
    /// which puts every retain and release of it on the slow path — measurable on the request path).
    var owner: (any WorkerInstanceOwner)?
    var role: InstanceRole
    var phase: Phase = .starting
    private(set) var hello: Hello?
    private(set) var pid: Int32 = 0
    private var process: Process?
    private var channel: (any Channel)?
    private var listener: (any Channel)?
    private let socketPath: String
    /// The worker's progress file (see ``WorkerProgress``): which input it is executing.
    let progressPath: String
    /// Why the supervisor killed it, when it did.
    var killCause: KillCause?
    /// How the process ended, once known.
    private var exitInfo: (status: Int32, signaled: Bool)?
    /// The death is known but the owner is told only once the process has been reaped (its exit status
    /// decides whether the input it was executing is to blame), or after a short wait.
    private var deathPending = false
    /// How the worker ended; set just before the owner is told.
    private(set) var death: DeathReport?
    private var helloPromise: EventLoopPromise<Hello>
    private var controlQueue = CircularBuffer<EventLoopPromise<WireMessage>>()
    /// Snapshot requests waiting for their stream, apart from the other control requests: a worker encodes a
    /// snapshot beside its other work and answers digests, pings and the rest while it does.
    private var snapshotQueue = CircularBuffer<EventLoopPromise<WireMessage>>()
    private var snapshotBytes: [UInt8] = []
    private var pendingWrites = false
    var startedAt = NIODeadline.now()

    /// Its state has been restored (or starts empty) and it is being fed: a death from here on is judged.
    var restored = false
    /// A journal read for this instance is running on the thread pool.
    var diskReadInFlight = false
    /// The highest sequence number sent to the worker.
    var sentSequence: UInt64 = 0
    /// The highest sequence number the worker has applied.
    var appliedSequence: UInt64 = 0
    /// How fast it has been applying inputs while it had work (the intake governor's projection).
    var applyRate = ApplyRateMeter()
    /// The journaled time of the last input the worker applied.
    var appliedTime: Int64 = 0
    /// When the last pong arrived.
    var lastPong = NIODeadline.now()
    var outstandingPing: (nonce: UInt64, sentAt: NIODeadline, applied: UInt64)?
    /// Requests whose replies matched / differed from the primary's (for standbys).
    var comparedReplies = 0
    var differingReplies = 0

    var isLive: Bool { phase == .live }
    var isDead: Bool { if case .dead = phase { return true } else { return false } }
    var version: String { hello?.version ?? "?" }

    private init(
        id: UInt32, binary: String, arguments: [String], environment: [String: String], role: InstanceRole,
        loop: any EventLoop, logger: Logger
    ) {
        self.id = id
        self.binary = binary
        self.arguments = arguments
        self.environment = environment
        self.role = role
        self.loop = loop
        var logger = logger
        logger[metadataKey: "understudy.instance"] = "\(id)"
        self.logger = logger
        let unique = "\(getpid())-\(id)-\(UInt32.random(in: 0...UInt32.max))"
        self.socketPath = "/tmp/understudy-\(unique).sock"
        // A memory file system where there is one: the worker stores to it around every input.
        self.progressPath = (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/understudy-\(unique).progress"
        self.helloPromise = loop.makePromise()
    }

    /// Starts a worker process and completes when its greeting has been accepted. Called on `loop`.
    static func spawn(
        id: UInt32, binary: String, arguments: [String] = [], environment: [String: String] = [:],
        role: InstanceRole, loop: any EventLoop, owner: any WorkerInstanceOwner, logger: Logger,
        handshakeTimeout: TimeAmount = .seconds(15)
    ) -> EventLoopFuture<NIOLoopBound<WorkerInstance>> {
        let instance = WorkerInstance(
            id: id, binary: binary, arguments: arguments, environment: environment, role: role, loop: loop,
            logger: logger)
        instance.owner = owner
        let bound = NIOLoopBound(instance, eventLoop: loop)
        var isDirectory: ObjCBool = false
        // Every early exit fails the greeting promise too: a promise dropped unfulfilled is a fatal error in debug builds.
        func failEarly(_ error: SupervisorError) -> EventLoopFuture<NIOLoopBound<WorkerInstance>> {
            instance.helloPromise.fail(error)
            return loop.makeFailedFuture(error)
        }
        guard FileManager.default.fileExists(atPath: binary, isDirectory: &isDirectory), !isDirectory.boolValue else {
            return failEarly(
                SupervisorError(.binaryNotFound, "worker binary \(binary) does not exist; build it or pass the right path to --service"))
        }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            return failEarly(SupervisorError(.binaryNotFound, "worker binary \(binary) is not executable (chmod +x?)"))
        }
        return ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 4)
            // The worker's channel lives on `loop` (the bootstrap's only one), where the instance is bound.
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let instance = bound.value
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(WorkerFrameDecoder(instance: instance)))
                    try channel.pipeline.syncOperations.addHandler(WorkerChannelHandler(instance: instance))
                    instance.attach(channel)
                }
            }
            .bind(unixDomainSocketPath: instance.socketPath, cleanupExistingSocketFile: true)
            .assumeIsolated()
            .flatMapError { error -> EventLoopFuture<any Channel> in
                let failure = SupervisorError(.workerExited, "could not listen for worker \(binary) on \(instance.socketPath): \(error)")
                instance.helloPromise.fail(failure)
                return loop.makeFailedFuture(failure)
            }
            .flatMap { listener in
                instance.listener = listener
                do {
                    try instance.startProcess()
                } catch {
                    instance.cleanupListener()
                    return failEarly(SupervisorError(.workerExited, "could not start worker \(binary): \(error)"))
                }
                let timeout = loop.assumeIsolated().scheduleTask(in: handshakeTimeout) {
                    instance.fail(
                        SupervisorError(.timeout, "worker \(binary) did not complete the handshake within \(handshakeTimeout.nanoseconds / 1_000_000_000) s"))
                }
                return instance.helloPromise.futureResult.assumeIsolated().map { _ in
                    timeout.cancel()
                    return bound
                }.flatMapErrorThrowing { error in
                    timeout.cancel()
                    instance.kill()
                    throw error
                }.nonisolated()
            }
            .nonisolated()
    }

    private func startProcess() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--understudy-socket", socketPath] + arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        // A crashing worker keeps its (unsymbolicated) backtrace but dies at once: symbolicating takes the Swift
        // runtime ~120 ms, during which every request queued behind the crashing input waits. An explicit
        // SWIFT_BACKTRACE (the supervisor's environment, or --env) wins.
        if env["SWIFT_BACKTRACE"] == nil { env["SWIFT_BACKTRACE"] = "enable=yes,symbolicate=off" }
        env[WorkerProgress.environmentVariable] = progressPath
        env["UNDERSTUDY_SUPERVISOR_PID"] = String(getpid())
        process.environment = env
        let fd = open(progressPath, O_CREAT | O_RDWR | O_TRUNC, 0o600)
        guard fd >= 0, ftruncate(fd, off_t(WorkerProgress.size)) == 0 else {
            if fd >= 0 { close(fd) }
            throw SupervisorError(.workerFailed, "cannot create the progress file \(progressPath): \(String(cString: strerror(errno)))")
        }
        close(fd)
        process.standardInput = FileHandle.nullDevice
        let loop = self.loop
        // Strong on purpose (no weak reference, for the same reason as `owner`): the cycle instance → process →
        // handler → instance lasts until the worker exits, which is exactly as long as the exit must be observed;
        // processExited breaks it.
        let bound = NIOLoopBound(self, eventLoop: loop)
        process.terminationHandler = { p in
            let status = p.terminationStatus
            let signaled = p.terminationReason == .uncaughtSignal
            loop.execute {
                bound.value.processExited(status: status, signaled: signaled)
            }
        }
        try process.run()
        self.process = process
        self.pid = process.processIdentifier
    }

    private func attach(_ channel: any Channel) {
        logger.debug("worker connected")
        guard self.channel == nil else {
            channel.close(promise: nil)
            return
        }
        self.channel = channel
    }

    private func cleanupListener() {
        listener?.close(promise: nil)
        listener = nil
        unlink(socketPath)
    }

    // MARK: sending

    /// Frames queued since the last flush, written to the socket in one go.
    private var outbound = ByteBuffer()

    /// Queues a frame for the worker; the owner flushes once per event-loop turn.
    func send(_ message: WireMessage) {
        guard channel != nil, !isDead else { return }
        if case .apply(let r) = message {
            // The hot path: the shared encoder writes straight into the outbound buffer.
            FrameCodec.encodeApply(r, into: &outbound)
        } else {
            var writer = ByteWriter(capacity: 64)
            FrameCodec.encode(message, into: &writer)
            outbound.writeBytes(writer.bytes)
        }
        if !pendingWrites {
            pendingWrites = true
            owner?.instanceFlushNeeded()
        }
    }

    /// Writes queued frames to the socket.
    func flush() {
        guard pendingWrites else { return }
        pendingWrites = false
        guard let channel, outbound.readableBytes > 0 else { return }
        channel.writeAndFlush(outbound, promise: nil)
        outbound = channel.allocator.buffer(capacity: 4096)
    }

    /// Sends a control request and completes with the worker's reply (or fails on an error frame or death).
    func request(_ message: WireMessage) -> EventLoopFuture<WireMessage> {
        guard !isDead else {
            return loop.makeFailedFuture(SupervisorError(.workerFailed, "instance \(id) is not running"))
        }
        let promise = loop.makePromise(of: WireMessage.self)
        if case .snapshotRequest = message { snapshotQueue.append(promise) } else { controlQueue.append(promise) }
        send(message)
        flush()
        return promise.futureResult
    }

    // MARK: receiving

    func received(_ message: WireMessage) {
        logger.trace("frame from worker", metadata: ["understudy.frame": "\(message.frameType)"])
        switch message {
        case .hello(let hello):
            guard hello.protocolVersion == wireProtocolVersion else {
                fail(SupervisorError(
                    .protocolMismatch,
                    "worker \(binary) speaks worker protocol version \(hello.protocolVersion); this supervisor speaks version \(wireProtocolVersion)"))
                return
            }
            self.hello = hello
            // Closing the listener only now: closing it while the accepted child is still being set up closes the child too.
            cleanupListener()
            send(.helloAck(instanceID: id))
            flush()
            helloPromise.succeed(hello)
        case .applied(let result):
            appliedSequence = result.sequence
            owner?.instanceApplied(self, result)
        case .pong(let nonce, let sequence):
            if outstandingPing?.nonce == nonce { outstandingPing = nil }
            lastPong = .now()
            _ = sequence
        case .snapshotChunk(let chunk):
            snapshotBytes.append(contentsOf: chunk.data)
            if chunk.isFinal {
                var whole = chunk
                whole.data = snapshotBytes
                snapshotBytes = []
                if let waiter = snapshotQueue.popFirst() {
                    waiter.succeed(.snapshotChunk(whole))
                } else {
                    logger.warning("worker sent a snapshot nobody asked for")
                }
            }
        case .error(let code, let text):
            if controlQueue.isEmpty {
                logger.error("worker reported an error", metadata: ["understudy.code": "\(code)", "understudy.message": "\(text)"])
                fail(SupervisorError(.workerFailed, "worker \(id) (\(binary)) reported: \(text)"))
            } else {
                resolveControl(.failure(SupervisorError(.workerFailed, text)))
            }
        case .digest, .drillDownResult, .fetchResult, .patched, .restored, .forkAck, .forkResult, .validationReport:
            resolveControl(.success(message))
        case .helloAck, .apply, .snapshotRequest, .digestRequest, .downgradeDigestRequest, .drillDown, .fetch, .patch,
            .prefetch, .ping, .shutdown, .forkCreate, .forkApply, .forkDrop, .validate:
            fail(SupervisorError(.workerFailed, "worker \(id) sent an unexpected frame (type \(message.frameType))"))
        }
    }

    private func resolveControl(_ result: Result<WireMessage, any Error>) {
        guard let head = controlQueue.popFirst() else {
            logger.warning("worker sent a reply nobody asked for")
            return
        }
        head.completeWith(result)
    }

    func connectionClosed() {
        fail(SupervisorError(.workerExited, "worker \(id) (\(binary)) closed its connection"))
    }

    func connectionFailed(_ error: any Error) {
        fail(SupervisorError(.workerFailed, "worker \(id) (\(binary)) broke the protocol: \(error)"))
    }

    private func processExited(status: Int32, signaled: Bool) {
        process?.terminationHandler = nil
        exitInfo = (status, signaled)
        let how = signaled ? "was killed by signal \(status) (\(signalName(status)))" : "exited with status \(status)"
        if deathPending {
            tellOwnerOfDeath(addingToReason: how)
        } else {
            fail(SupervisorError(.workerExited, "worker \(binary) \(how)\(hello == nil ? " before completing the handshake" : "")"))
        }
    }

    /// Marks the instance dead (once), fails everything waiting on it, and stops the process.
    ///
    /// The owner is told once the process has been reaped — at most a second later — so that its exit status is
    /// known: whether an input it was executing is to blame (a trap, or a kill from outside), and whether a
    /// standby's death counts toward the restart intensity. An idle primary's death is told at once.
    func fail(_ error: SupervisorError) {
        guard !isDead else { return }
        phase = .dead(error.message)
        owner?.instanceStoppedApplying(self, reason: error.message)
        helloPromise.fail(error)
        while let waiter = controlQueue.popFirst() { waiter.fail(error) }
        while let waiter = snapshotQueue.popFirst() { waiter.fail(error) }
        channel?.close(promise: nil)
        cleanupListener()
        kill()
        death = DeathReport(reason: error.message, killedBySupervisor: killCause)
        // The exit status decides blame (an input being executed) and whether a standby's death counts toward the
        // restart intensity (a kill from outside does not): wait for it, except for an idle primary, whose standby
        // takes over at once.
        if exitInfo == nil, process != nil, role != .primary || WorkerProgress.executing(path: progressPath) != nil {
            deathPending = true
            loop.assumeIsolated().scheduleTask(in: .seconds(1)) {
                if self.deathPending { self.tellOwnerOfDeath(addingToReason: nil) }
            }
        } else {
            tellOwnerOfDeath(addingToReason: nil)
        }
    }

    private func tellOwnerOfDeath(addingToReason detail: String?) {
        deathPending = false
        var report = death ?? DeathReport(reason: "worker \(id) died")
        report.executing = WorkerProgress.executing(path: progressPath)
        if let exitInfo {
            if exitInfo.signaled { report.signal = exitInfo.status } else { report.exitStatus = exitInfo.status }
        }
        if let detail, !report.reason.contains(detail) { report.reason += " (the process \(detail))" }
        report.killedBySupervisor = killCause
        death = report
        unlink(progressPath)
        owner?.instanceDied(self, reason: report.reason)
    }

    /// Sends SIGKILL to the process if it is still running.
    func kill() {
        // Not a cause by itself: the supervisor names its reasons (deadline, failed health check) before it kills;
        // this is also the clean-up after a worker that already died or closed its connection.
        if let process, process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    /// Asks the worker to exit and closes the connection.
    func retire(reason: String) {
        guard !isDead else { return }
        unlink(progressPath)
        // A retired worker's exit is expected and nobody waits for it: no hop to the loop when it comes (at
        // shutdown the loop may be gone by then).
        process?.terminationHandler = nil
        send(.shutdown)
        flush()
        let process = self.process
        loop.scheduleTask(in: .seconds(2)) {
            if let process, process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        }
        phase = .dead(reason)
        owner?.instanceStoppedApplying(self, reason: reason)
        while let waiter = controlQueue.popFirst() { waiter.fail(SupervisorError(.workerExited, reason)) }
        while let waiter = snapshotQueue.popFirst() { waiter.fail(SupervisorError(.workerExited, reason)) }
        channel?.close(promise: nil)
        cleanupListener()
    }
}

/// A signal's name, for messages ("SIGILL").
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGILL: return "SIGILL, a trap"
    case SIGTRAP: return "SIGTRAP, a trap"
    case SIGABRT: return "SIGABRT"
    case SIGSEGV: return "SIGSEGV"
    case SIGBUS: return "SIGBUS"
    case SIGFPE: return "SIGFPE"
    case SIGKILL: return "SIGKILL"
    case SIGTERM: return "SIGTERM"
    case SIGINT: return "SIGINT"
    case SIGHUP: return "SIGHUP"
    case SIGSYS: return "SIGSYS"
    default: return "signal \(signal)"
    }
}
