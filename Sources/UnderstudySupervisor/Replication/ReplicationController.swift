import Foundation
import Logging
import NIOCore
import NIOPosix
import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyJournalPostgres

/// Whether this supervisor serves clients or follows another one.
public enum ReplicationMode: String, Codable, Sendable {
    /// Holds the journal's lease: sequences, journals and answers.
    case active
    /// Follows the journal another supervisor writes; refuses clients (`READONLY`); takes over when the lease
    /// expires.
    case standby
}

/// One step of the active/standby protocol, as `GET /status` lists it.
public struct ReplicationEvent: Codable, Sendable {
    /// When (milliseconds since the Unix epoch).
    public var timeMillis: Int64
    /// What happened.
    public var message: String
}

/// The lease and the journal's tail as `GET /status` shows them (PostgreSQL journals only).
public struct ReplicationStatus: Codable, Sendable {
    /// The journal's address, without its password.
    public var journal: String
    /// This supervisor's name in the lease.
    public var holder: String
    /// The lease's epoch this supervisor appends under (0 while a standby).
    public var epoch: UInt64
    /// The lease as last read: holder, epoch, milliseconds left (standby), or this supervisor's own.
    public var leaseHolder: String?
    public var leaseEpoch: UInt64?
    public var leaseRemainingMillis: Int64?
    /// The lease's length (`--lease-ms`).
    public var leaseMillis: Int
    /// Recent steps, oldest first.
    public var events: [ReplicationEvent]
}

/// Active and standby supervisors over one PostgreSQL journal: the active renews its lease and stops
/// acknowledging when it cannot; a standby keeps its instances in step with the journal's tail (notified by
/// PostgreSQL, not polled) and takes over when the lease expires — a new epoch, the tail applied, intake open.
/// An active whose append or renewal finds a newer epoch was taken over: it answers what it had not acknowledged
/// with `READONLY` and asks to become a standby (``onDemoted``).
///
/// Confined to the core's event loop: every entry point runs there (the journal's callbacks hop onto it).
// Not Sendable: the journal's callbacks reach it through a loop-bound weak reference and thread-pool completions
// through `assumeIsolated()`, so the compiler keeps its state on `loop`.
final class ReplicationController {
    let loop: any EventLoop
    let journal: PostgresJournal
    let pipeline: RequestPipeline
    let threadPool: NIOThreadPool
    let logger: Logger
    let leaseMillis: Int
    let holder: String
    private(set) var mode: ReplicationMode
    private(set) var epoch: UInt64
    /// Called once, on the loop, when this supervisor was taken over and must become a standby.
    var onDemoted: (() -> Void)?
    private(set) var events: [ReplicationEvent]
    private var lastLease: PostgresLeaseState?
    private var timer: RepeatedTask?
    /// Active: the lease is surely ours until this moment (renewal sent + lease × 3/4: a margin for clock rates).
    private var validUntil: NIODeadline
    private var renewInFlight = false
    private var pausedForLease = false
    private var followTarget: UInt64 = 0
    private var followInFlight = false
    private var takingOver = false
    private var demoted = false
    private var stopped = false

    /// - Parameters:
    ///   - epoch: The epoch already taken (active), or 0 (standby).
    ///   - events: Steps carried over from an earlier role (a demoted active keeps its history).
    init(
        loop: any EventLoop, journal: PostgresJournal, pipeline: RequestPipeline, threadPool: NIOThreadPool,
        logger: Logger, leaseMillis: Int, holder: String, mode: ReplicationMode, epoch: UInt64, events: [ReplicationEvent]
    ) {
        self.loop = loop
        self.journal = journal
        self.pipeline = pipeline
        self.threadPool = threadPool
        self.logger = logger
        self.leaseMillis = leaseMillis
        self.holder = holder
        self.mode = mode
        self.epoch = epoch
        self.events = events
        self.validUntil = .now() + Self.safeSpan(leaseMillis)
        pipeline.followsJournal = mode == .standby
    }

    /// How long after a renewal was *sent* the lease is surely still ours: three quarters of it, so that a clock
    /// running up to a third slower than the database's still stops in time.
    static func safeSpan(_ leaseMillis: Int) -> TimeAmount { .milliseconds(Int64(leaseMillis) * 3 / 4) }

    /// Starts renewing (active) or following and watching the lease (standby).
    func start() {
        loop.preconditionInEventLoop()
        let loop = self.loop
        // Weak: the journal outlives this controller when the supervisor restarts as a standby. The journal calls
        // from its own threads: the reference travels loop-bound (checked where it is used, on the loop).
        let this = NIOLoopBound(WeakReference(self), eventLoop: loop)
        journal.onTail { sequence in
            loop.execute { this.value.object?.tailAdvanced(sequence) }
        }
        journal.onLeaseReleased {
            loop.execute {
                guard let self = this.value.object else { return }
                if self.mode == .standby && !self.stopped { self.watchLease() }
            }
        }
        journal.onFenced { error in
            loop.execute { this.value.object?.takenOver("an append found a newer lease epoch: \(error.message)") }
        }
        let period = TimeAmount.milliseconds(Int64(max(20, leaseMillis / 4)))
        timer = loop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in this.value.object?.tick() }
        note(mode == .active ? "active: holding the lease at epoch \(epoch)" : "standby: following the journal from sequence \(pipeline.lastSequence)")
        if mode == .standby { followTarget = journal.lastSequence; pull() }
    }

    /// Stops the timers (the core is stopping).
    func stop() {
        stopped = true
        timer?.cancel()
        timer = nil
    }

    func status() -> ReplicationStatus {
        ReplicationStatus(
            journal: journal.address.description, holder: holder, epoch: epoch, leaseHolder: lastLease?.holder,
            leaseEpoch: lastLease?.epoch, leaseRemainingMillis: lastLease?.remainingMilliseconds, leaseMillis: leaseMillis,
            events: events)
    }

    private func note(_ message: String, level: Logger.Level = .notice) {
        logger.log(level: level, "replication: \(message)")
        events.append(ReplicationEvent(timeMillis: Int64(Date().timeIntervalSince1970 * 1000), message: message))
        if events.count > 50 { events.removeFirst(events.count - 50) }
    }

    private func tick() {
        guard !stopped, !demoted else { return }
        switch mode {
        case .active: renew()
        case .standby: watchLease()
        }
    }

    // MARK: active

    private func renew() {
        if !pausedForLease && NIODeadline.now() > validUntil {
            // Not renewed in time: stop acknowledging before the lease can expire and a standby take over.
            pausedForLease = true
            pipeline.pauseIntake(reason: "lease")
            note("cannot renew the lease: intake held until it is renewed (or this supervisor is taken over)", level: .warning)
        }
        guard !renewInFlight else { return }
        renewInFlight = true
        let sentAt = NIODeadline.now()
        let (journal, epoch, leaseMillis) = (self.journal, self.epoch, self.leaseMillis)
        threadPool.runIfActive(eventLoop: loop) { try journal.renewLease(epoch: epoch, milliseconds: leaseMillis) }
            .assumeIsolated().whenComplete { result in
                self.renewInFlight = false
                guard !self.demoted, self.mode == .active else { return }
                switch result {
                case .success(true):
                    self.validUntil = sentAt + Self.safeSpan(leaseMillis)
                    self.lastLease = PostgresLeaseState(epoch: epoch, holder: self.holder, remainingMilliseconds: Int64(leaseMillis))
                    if self.pausedForLease {
                        self.pausedForLease = false
                        self.pipeline.resumeIntake(reason: "lease")
                        self.note("lease renewed again: intake resumed")
                    }
                case .success(false):
                    self.takenOver("the lease's epoch \(epoch) is no longer current")
                case .failure(let error):
                    self.logger.warning("replication: lease renewal failed: \(error)")
                }
            }
    }

    /// Another supervisor holds the journal now: nothing not yet acknowledged will be; become a standby.
    private func takenOver(_ why: String) {
        guard mode == .active, !demoted else { return }
        demoted = true
        note("taken over (\(why)): unacknowledged requests answered READONLY; becoming a standby", level: .error)
        pipeline.followsJournal = true
        pipeline.failUnreleased(.readOnly)
        onDemoted?()
    }

    // MARK: standby

    private func tailAdvanced(_ sequence: UInt64) {
        guard mode == .standby || takingOver else { return }
        followTarget = max(followTarget, sequence)
        pull()
    }

    /// Reads what the journal has beyond the pipeline's last sequence and applies it, one read at a time.
    private func pull() {
        guard !followInFlight, !stopped, pipeline.lastSequence < followTarget else { return }
        followInFlight = true
        let from = pipeline.lastSequence + 1
        let journal = self.journal
        threadPool.runIfActive(eventLoop: loop) { try journal.read(from: from, maxCount: 4096) }
            .assumeIsolated().whenComplete { result in
                self.followInFlight = false
                switch result {
                case .success(let records):
                    guard !records.isEmpty else {
                        // Notified of a tail not readable yet: try again on the next notification or tick.
                        return
                    }
                    self.pipeline.adoptFollowed(records)
                    if self.mode == .standby { journal.adoptTail(self.pipeline.lastSequence) }
                    self.pull()
                    self.resolveCatchUp()
                case .failure(let error as JournalError) where error.code == .sequenceUnavailable && self.mode == .standby:
                    // The active pruned records this standby had not read (it was stopped or far behind): start
                    // again from the newest snapshot.
                    guard !self.demoted else { return }
                    self.demoted = true
                    self.note("fell behind the journal's pruning (records from \(from) were removed after a snapshot): restarting from the newest snapshot", level: .warning)
                    self.onDemoted?()
                case .failure(let error):
                    self.note("cannot read the journal from \(from): \(error)", level: .error)
                }
            }
    }

    private func watchLease() {
        let journal = self.journal
        // A missed notification costs at most one tick.
        threadPool.runIfActive(eventLoop: loop) { () -> (PostgresLeaseState?, UInt64) in
            (try journal.inspectLease(), try journal.databaseTail())
        }.assumeIsolated().whenComplete { result in
            guard self.mode == .standby, !self.stopped else { return }
            switch result {
            case .success(let (lease, tail)):
                self.lastLease = lease
                if tail > self.followTarget { self.tailAdvanced(tail) }
                if lease == nil || lease!.remainingMilliseconds < 0 { self.takeOver(expired: lease) }
            case .failure(let error):
                self.logger.warning("replication: cannot read the lease: \(error)")
            }
        }
    }

    private var catchUp: (tail: UInt64, promise: EventLoopPromise<Void>)?

    private func resolveCatchUp() {
        guard let c = catchUp, pipeline.lastSequence >= c.tail else { return }
        catchUp = nil
        c.promise.succeed(())
    }

    /// The lease expired: take a new epoch, apply the journal through its tail, open intake.
    private func takeOver(expired lease: PostgresLeaseState?) {
        guard !takingOver else { return }
        takingOver = true
        let started = NIODeadline.now()
        let (journal, holder, leaseMillis) = (self.journal, self.holder, self.leaseMillis)
        note(lease.map { "the lease of \($0.holder) (epoch \($0.epoch)) expired \(-$0.remainingMilliseconds) ms ago: taking over" } ?? "no supervisor holds the lease: taking over")
        threadPool.runIfActive(eventLoop: loop) { () -> (UInt64, UInt64)? in
            guard let epoch = try journal.acquireLease(holder: holder, milliseconds: leaseMillis) else { return nil }
            return (epoch, try journal.activate(epoch: epoch))
        }.assumeIsolated().flatMap { taken -> EventLoopFuture<(UInt64, UInt64)?> in
            guard let (epoch, tail) = taken else { return self.loop.makeSucceededFuture(nil) }
            self.validUntil = started + Self.safeSpan(leaseMillis)
            self.epoch = epoch
            guard self.pipeline.lastSequence < tail else { return self.loop.makeSucceededFuture((epoch, tail)) }
            let promise = self.loop.makePromise(of: Void.self)
            self.catchUp = (tail, promise)
            self.followTarget = max(self.followTarget, tail)
            self.pull()
            return promise.futureResult.map { (epoch, tail) }
        }.whenComplete { result in
            self.takingOver = false
            switch result {
            case .success(nil):
                self.note("another standby took the lease first; following it")
            case .success(let (epoch, tail)?):
                self.mode = .active
                self.pipeline.followsJournal = false
                self.lastLease = PostgresLeaseState(epoch: epoch, holder: holder, remainingMilliseconds: Int64(leaseMillis))
                let ms = Double((NIODeadline.now() - started).nanoseconds) / 1e6
                self.note(String(format: "active at epoch %llu: journal applied through %llu, intake open (%.1f ms after the lease expired was seen)", epoch, tail, ms))
            case .failure(let error):
                self.note("takeover failed: \(error); still a standby", level: .error)
                self.threadPool.runIfActive(eventLoop: self.loop) { try journal.demote() }.assumeIsolated().whenFailure { error in
                    self.logger.error("replication: cannot step back to following: \(error)")
                }
            }
        }
    }
}

/// A weak reference, to be held loop-bound by a callback that may outlive its object.
final class WeakReference<Object: AnyObject> {
    weak var object: Object?
    init(_ object: Object) { self.object = object }
}
