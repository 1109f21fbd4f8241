import Logging
import NIOCore
import UnderstudyWire

/// What the roster's decisions need to know of an instance (``WorkerInstance`` in the supervisor; plain values in
/// tests).
protocol RosterMember: AnyObject {
    var role: InstanceRole { get }
    var phase: WorkerInstance.Phase { get }
    var version: String { get }
    var schemaVersion: UInt32? { get }
}

extension RosterMember {
    var isLive: Bool { phase == .live }
    var isDead: Bool { if case .dead = phase { return true } else { return false } }
}

extension WorkerInstance: RosterMember {
    var schemaVersion: UInt32? { hello?.schemaVersion }
}

/// The roster's decisions, as pure functions over its members.
enum Roster {
    /// The standby that takes over when the primary dies: a replaying shadow of the primary's version, else the
    /// previous primary still in probation, else any replaying shadow.
    static func failoverTarget<M: RosterMember>(primaryVersion: String?, standbys: [M]) -> M? {
        // Lazy: asked for every standby result on the request path; no array per call.
        let replaying = standbys.lazy.filter { !$0.isDead && ($0.phase == .live || $0.phase == .catchingUp) }
        return replaying.first { $0.role == .shadow && $0.version == primaryVersion }
            ?? replaying.first { $0.role == .probation }
            ?? replaying.first { $0.role == .shadow }
    }

    /// The instance snapshots are taken from: a live shadow with the primary's version and schema.
    static func snapshotSource<M: RosterMember>(primaryVersion: String?, primarySchema: UInt32?, standbys: [M]) -> M? {
        standbys.first { $0.role == .shadow && $0.isLive && $0.version == primaryVersion && $0.schemaVersion == primarySchema }
    }

    /// What the health check does with one instance.
    enum HealthAction: Equatable {
        /// Send a ping (none outstanding).
        case ping
        /// The outstanding ping is answered late but the worker keeps applying: progress, not a hang; re-arm it.
        case rearm
        /// Wait for the answer.
        case wait
        /// No answer and no progress for longer than the hang timeout.
        case hung
    }

    /// The health check's verdict for one instance.
    static func health(
        outstandingPing: (sentAt: NIODeadline, applied: UInt64)?, applied: UInt64, now: NIODeadline, hangTimeout: TimeAmount
    ) -> HealthAction {
        guard let ping = outstandingPing else { return .ping }
        if applied > ping.applied { return .rearm }
        return now - ping.sentAt > hangTimeout ? .hung : .wait
    }

    /// What the request deadline does with the primary.
    enum DeadlineAction: Equatable {
        /// Nothing executing: forget any watch.
        case idle
        /// A new input started executing at `now`: watch it.
        case watch(sequence: UInt64)
        /// Still within the deadline.
        case wait
        /// The same input has been executing for longer than the deadline.
        case kill(sequence: UInt64)
    }

    /// The request deadline's verdict, from the input the primary is executing and the current watch.
    static func deadline(
        executing: UInt64?, watched: (sequence: UInt64, since: NIODeadline)?, now: NIODeadline, deadline: TimeAmount
    ) -> DeadlineAction {
        guard let executing else { return .idle }
        guard let watched, watched.sequence == executing else { return .watch(sequence: executing) }
        return now - watched.since >= deadline ? .kill(sequence: executing) : .wait
    }
}

/// The instances and their roles: spawning and respawning, the roster (primary, standbys, failover target,
/// snapshot source), health checks and the request deadline, and the restart policy for deaths no input explains.
///
/// Loop-bound: every method runs on the core event loop. How a new instance is brought up to date (restore and
/// catch-up) is the request path's job, given as ``bootstrap``.
final class ShadowInstanceManager {
    let loop: any EventLoop
    let logger: Logger
    let configuration: PipelineConfiguration
    /// Receives every instance's results and death (the request path). Strong, like ``WorkerInstance/owner``: the
    /// request path and this manager live as long as the supervisor, and a weak reference would put every retain
    /// of the request path on the runtime's slow path.
    let owner: any WorkerInstanceOwner
    /// Restores an instance from the newest snapshot and starts feeding it.
    var bootstrap: (WorkerInstance) -> EventLoopFuture<Void> = { $0.loop.makeSucceededVoidFuture() }

    var serviceBinary: String
    var serviceArguments: [String] = []
    var serviceEnvironment: [String: String] = [:]

    /// The instance whose replies go to clients.
    private(set) var primary: WorkerInstance? {
        didSet { if primary !== oldValue { primaryChanged(primary) } }
    }
    /// Told each new primary (nil: none), once its greeting is known.
    var primaryChanged: (WorkerInstance?) -> Void = { _ in }
    /// Every other instance being fed: shadows, candidates, the previous primary in probation.
    private(set) var standbys: [WorkerInstance] = []
    private var nextInstanceID: UInt32 = 1
    /// Restart histories of deaths no input explains, per role.
    private(set) var primaryRestarts: RestartIntensity
    private(set) var shadowRestarts: RestartIntensity
    /// Roles given up after too many restarts (shown in status and health), and why the last one was.
    private(set) var givenUpRoles: [String] = []
    private(set) var givenUpReason: String?
    private var shadowRespawnScheduled = false
    /// The input the primary was last seen executing, and since when (the request deadline).
    private(set) var deadlineWatch: (instance: WorkerInstance, sequence: UInt64, since: NIODeadline)?
    /// Set while the supervisor stops: nothing is spawned any more.
    var stopping = false

    init(loop: any EventLoop, configuration: PipelineConfiguration, serviceBinary: String, owner: any WorkerInstanceOwner, logger: Logger) {
        self.loop = loop
        self.configuration = configuration
        self.serviceBinary = serviceBinary
        self.owner = owner
        self.logger = logger
        self.primaryRestarts = RestartIntensity(policy: configuration.restartPolicy)
        self.shadowRestarts = RestartIntensity(policy: configuration.restartPolicy)
    }

    /// The primary and every standby.
    var all: [WorkerInstance] { (primary.map { [$0] } ?? []) + standbys }

    var failoverTarget: WorkerInstance? { Roster.failoverTarget(primaryVersion: primary?.version, standbys: standbys) }

    var snapshotSource: WorkerInstance? {
        Roster.snapshotSource(primaryVersion: primary?.version, primarySchema: primary?.hello?.schemaVersion, standbys: standbys)
    }

    /// Some standby is restoring or catching up.
    var standbyCatchingUp: Bool { standbys.contains { $0.phase == .catchingUp || $0.phase == .restoring } }

    // MARK: spawning

    /// Starts a worker process; completes when its greeting was accepted (with the instance, bound to `loop`).
    func spawn(
        binary: String, role: InstanceRole, arguments: [String]? = nil, environment: [String: String]? = nil
    ) -> EventLoopFuture<NIOLoopBound<WorkerInstance>> {
        let id = nextInstanceID
        nextInstanceID += 1
        return WorkerInstance.spawn(
            id: id, binary: binary, arguments: arguments ?? serviceArguments,
            environment: environment ?? serviceEnvironment, role: role, loop: loop, owner: owner, logger: logger)
    }

    // MARK: roles

    /// Makes `instance` the primary (at start, or a restarted one).
    func setPrimary(_ instance: WorkerInstance?) {
        primary = instance
    }

    /// Feeds `instance` as a standby from now on (once).
    func addStandby(_ instance: WorkerInstance) {
        guard instance !== primary, !standbys.contains(where: { $0 === instance }) else { return }
        standbys.append(instance)
    }

    /// Stops feeding a standby.
    func removeStandby(_ instance: WorkerInstance) {
        standbys.removeAll { $0 === instance }
    }

    /// Shuts down every standby matching `predicate`; returns them.
    @discardableResult
    func retireStandbys(where predicate: (WorkerInstance) -> Bool) -> [WorkerInstance] {
        let leaving = standbys.filter(predicate)
        standbys.removeAll(where: predicate)
        for s in leaving { s.retire(reason: "retired") }
        return leaving
    }

    /// Failover: `target` becomes the primary; a previous primary still alive stays on as the probation instance.
    func promote(_ target: WorkerInstance) {
        standbys.removeAll { $0 === target }
        if let old = primary, old !== target { old.role = .probation }
        target.role = .primary
        primary = target
    }

    /// A planned swap: `target` becomes the primary and the old primary keeps replaying as a standby in `oldRole`.
    func flipRoles(to target: WorkerInstance, oldRole: InstanceRole) {
        guard let old = primary else { return }
        standbys.removeAll { $0 === target }
        target.role = .primary
        primary = target
        old.role = oldRole
        standbys.append(old)
    }

    /// An instance died: it leaves the roster (the caller decides what follows).
    func remove(_ instance: WorkerInstance) {
        if instance === primary { primary = nil }
        standbys.removeAll { $0 === instance }
        if deadlineWatch?.instance === instance { deadlineWatch = nil }
    }

    // MARK: shadows

    /// Starts a same-version shadow of the current primary after `delay` (once; none while one lives).
    func scheduleShadowRespawn(after delay: TimeAmount = .milliseconds(200)) {
        guard configuration.shadow, !shadowRespawnScheduled, !stopping, !shadowRestarts.givenUp else { return }
        shadowRespawnScheduled = true
        loop.assumeIsolated().scheduleTask(in: delay) {
            self.shadowRespawnScheduled = false
            guard !self.stopping, !self.standbys.contains(where: { $0.role == .shadow && !$0.isDead }) else { return }
            self.startShadow()
        }
    }

    /// Starts a same-version shadow of the current primary, restored and fed by ``bootstrap``.
    func startShadow() {
        let binary = primary?.binary ?? serviceBinary
        spawn(binary: binary, role: .shadow, arguments: primary?.arguments, environment: primary?.environment)
            .assumeIsolated().flatMap { instance in
            self.bootstrap(instance.value)
        }.whenFailure { error in
            switch self.shadowRestarts.died(at: .now()) {
            case .restart(let delay):
                self.logger.error("could not start a shadow: \(error); retrying in \(delay.nanoseconds / 1_000_000) ms")
                self.scheduleShadowRespawn(after: delay)
            case .giveUp(let count):
                self.giveUp(role: "shadow", reason: "\(count) failed starts within \(self.windowSeconds) s; last: \(error)")
            }
        }
    }

    /// A shadow died (no input explains it: shadows only run inputs the primary survived). A kill from outside
    /// (an operator, the OOM killer, a chaos test) says nothing about the worker: it is replaced at once without
    /// counting; a crash, an exit or a failed health check counts toward the intensity limit.
    func shadowDied(_ instance: WorkerInstance, reason: String) {
        if let death = instance.death, death.killedBySupervisor == nil, let signal = death.signal,
            BlameVerdict.outsideSignals.contains(signal)
        {
            scheduleShadowRespawn()
            return
        }
        switch shadowRestarts.died(at: .now()) {
        case .restart(let delay):
            scheduleShadowRespawn(after: max(delay, .milliseconds(200)))
        case .giveUp(let count):
            giveUp(role: "shadow", reason: "\(count) restarts within \(windowSeconds) s; last: \(reason)")
        }
    }

    /// A primary start failed, or a primary died with nothing to blame and no standby: when to try again.
    func primaryRestartDecision() -> RestartIntensity.Decision {
        primaryRestarts.died(at: .now())
    }

    /// Stops restarting a role (reported in status and health).
    func giveUp(role: String, reason: String) {
        guard !givenUpRoles.contains(role) else { return }
        givenUpRoles.append(role)
        givenUpReason = "\(role): \(reason)"
        logger.critical("role given up after too many restarts", metadata: ["understudy.role": "\(role)", "understudy.reason": "\(reason)"])
    }

    var windowSeconds: Int64 { configuration.restartPolicy.window.nanoseconds / 1_000_000_000 }

    // MARK: health and the request deadline

    /// Pings every instance; kills one that neither answers nor makes progress for the hang timeout. A primary
    /// busy with one input is the request deadline's to judge (and blame), not the health check's.
    func healthCheck() {
        let now = NIODeadline.now()
        for instance in all where !instance.isDead && instance.phase != .starting {
            if instance === primary && deadlineWatch?.instance === instance { continue }
            let outstanding = instance.outstandingPing.map { (sentAt: $0.sentAt, applied: $0.applied) }
            switch Roster.health(outstandingPing: outstanding, applied: instance.appliedSequence, now: now, hangTimeout: configuration.hangTimeout) {
            case .ping:
                let nonce = UInt64.random(in: 1...UInt64.max)
                instance.outstandingPing = (nonce, now, instance.appliedSequence)
                instance.send(.ping(nonce: nonce))
            case .rearm:
                if let ping = instance.outstandingPing { instance.outstandingPing = (ping.nonce, now, instance.appliedSequence) }
            case .wait:
                break
            case .hung:
                instance.killCause = .supervisor
                instance.fail(SupervisorError(.timeout, "worker \(instance.id) did not answer a health check for \(configuration.hangTimeout.nanoseconds / 1_000_000) ms; killed as hung"))
            }
        }
    }

    /// Kills a primary that has spent longer than the request deadline on one input (read from its progress file;
    /// the input is then quarantined when its death is judged).
    func checkRequestDeadline() {
        guard let p = primary, !p.isDead, p.sentSequence > p.appliedSequence else {
            deadlineWatch = nil
            return
        }
        let now = NIODeadline.now()
        let watched = deadlineWatch.flatMap { $0.instance === p ? (sequence: $0.sequence, since: $0.since) : nil }
        switch Roster.deadline(
            executing: WorkerProgress.executing(path: p.progressPath), watched: watched, now: now,
            deadline: configuration.requestDeadline)
        {
        case .idle:
            deadlineWatch = nil
        case .watch(let seq):
            deadlineWatch = (p, seq, now)
        case .wait:
            break
        case .kill(let seq):
            let millis = configuration.requestDeadline.nanoseconds / 1_000_000
            p.killCause = .deadline(sequence: seq, millis: millis)
            p.fail(SupervisorError(.timeout, "instance \(p.id) spent more than \(millis) ms on input \(seq); killed"))
        }
    }

    /// The primary reported a result: whatever it was executing has finished.
    func primaryProgressed() {
        deadlineWatch = nil
    }
}
