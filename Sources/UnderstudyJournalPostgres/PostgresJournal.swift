import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import UnderstudyJournal

/// Settings of a PostgreSQL journal.
public struct PostgresJournalConfiguration: Sendable {
    /// `always`: a record is durable when its COMMIT returned with `synchronous_commit = on` (with a synchronous
    /// standby configured, once the standby has it too). `everysec` and `no`: `synchronous_commit = off` — the
    /// commit returns before PostgreSQL flushes its WAL (within about three `wal_writer_delay`s, 600 ms by
    /// default); a crash of the PostgreSQL server can lose what it acknowledged in that window, a crash of the
    /// supervisor cannot.
    public var fsync: FsyncPolicy
    /// The largest payload one record may have (PostgreSQL's `bytea` holds at most 1 GB).
    public var maximumPayloadSize: Int
    /// The most payload bytes one group commit carries (a batch holds at least one record).
    public var batchBytes: Int
    /// Snapshots are stored in rows of this many bytes.
    public var snapshotChunkBytes: Int

    /// Creates a configuration.
    public init(fsync: FsyncPolicy, maximumPayloadSize: Int = (1 << 30) - 4096, batchBytes: Int = 8 << 20, snapshotChunkBytes: Int = 1 << 20) {
        self.fsync = fsync
        self.maximumPayloadSize = maximumPayloadSize
        self.batchBytes = batchBytes
        self.snapshotChunkBytes = snapshotChunkBytes
    }
}

/// The lease as stored: who holds the journal, in which epoch, for how much longer (by the database's clock).
public struct PostgresLeaseState: Sendable, Equatable {
    /// The epoch: raised by every takeover; every append checks it.
    public var epoch: UInt64
    /// Who holds it (host, process, start).
    public var holder: String
    /// Milliseconds until it expires by the database's clock (negative: expired that long ago).
    public var remainingMilliseconds: Int64

    /// A lease state.
    public init(epoch: UInt64, holder: String, remainingMilliseconds: Int64) {
        self.epoch = epoch
        self.holder = holder
        self.remainingMilliseconds = remainingMilliseconds
    }
}

/// A journal kept in PostgreSQL: records, chunked snapshots and the lease of the active supervisor.
///
/// Appends are group-committed by a writer thread: one statement per batch inserts the records and checks, in
/// the same transaction, that this supervisor's lease epoch is still the current one (the lease row is locked
/// `FOR SHARE`, so a takeover waits for an append in progress and every later append sees the new epoch). A
/// record is durable when its statement committed; a statement whose outcome is unknown (the connection was
/// lost) is resolved on reconnect by looking for its last record — it is never acknowledged before that, and
/// never written twice. An append that finds another epoch fences the journal: it fails, and so does every
/// later one (see ``onFenced(_:)``).
///
/// A journal opened without a lease (a standby) appends nothing: it follows the tail (``onTail(_:)``) until
/// ``activate(epoch:)``.
public final class PostgresJournal: JournalBackend {
    /// The schema version this code creates and understands.
    public static let schemaVersion = 1
    /// The channel on which every commit announces the journal's new last sequence.
    static let channel = "understudy_journal"

    public let address: PostgresJournalAddress
    let configuration: PostgresJournalConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let writerSession: PostgresSession
    let readerSession: PostgresSession
    let snapshotSession: PostgresSession
    let leaseSession: PostgresSession
    let state: Mutex<State>
    let condition = NSCondition()
    /// Signalled when the listener thread ends.
    let listenerExited = DispatchSemaphore(value: 0)
    public let recoveryReport: RecoveryReport

    struct State {
        /// The highest sequence appended (or adopted from the database's tail).
        var lastSequence: UInt64
        /// The highest sequence known committed.
        var committedSequence: UInt64
        /// Appended, not yet known committed, in order.
        var unconfirmed: [JournalRecord] = []
        /// The lease epoch appends are made under (0: none — a standby).
        var epoch: UInt64 = 0
        var failure: JournalError?
        var closing = false
        var closed = false
        var durableHandlers: [@Sendable (UInt64) -> Void] = []
        var syncHandlers: [@Sendable (JournalSync) -> Void] = []
        var fencedHandlers: [@Sendable (JournalError) -> Void] = []
        var tailHandlers: [@Sendable (UInt64) -> Void] = []
        var leaseReleasedHandlers: [@Sendable () -> Void] = []
        var waiters: [(UInt64, CheckedContinuation<Void, any Error>)] = []
        var snapshotRejections: [RecoveryReport.RejectedSnapshot] = []
        var oldestSequence: UInt64 = 1
        var listener: PostgresConnection?
    }

    private init(address: PostgresJournalAddress, configuration: PostgresJournalConfiguration, logger: Logger, group: MultiThreadedEventLoopGroup, tail: UInt64, oldest: UInt64, report: RecoveryReport) {
        self.address = address
        self.configuration = configuration
        self.logger = logger
        self.group = group
        self.writerSession = PostgresSession(
            address: address, group: group, name: "journal writer", logger: logger,
            setup: ["SET synchronous_commit TO \(configuration.fsync == .always ? "on" : "off")"])
        self.readerSession = PostgresSession(address: address, group: group, name: "journal reader", logger: logger)
        self.snapshotSession = PostgresSession(address: address, group: group, name: "snapshots", logger: logger)
        self.leaseSession = PostgresSession(address: address, group: group, name: "lease", logger: logger)
        var state = State(lastSequence: tail, committedSequence: tail)
        state.oldestSequence = oldest
        self.state = Mutex(state)
        self.recoveryReport = report
    }

    /// Connects, creates or checks the schema, and reads where the journal ends. Blocks; call it off event loops.
    ///
    /// - Throws: ``JournalError`` `database` when the server cannot be reached or refuses, or when the schema was
    ///   made by a newer version.
    public static func open(address: PostgresJournalAddress, configuration: PostgresJournalConfiguration, logger: Logger) throws -> PostgresJournal {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let setup = PostgresSession(address: address, group: group, name: "setup", logger: logger)
            defer { setup.close() }
            try createSchema(setup, address: address)
            let rows = try setup.query("SELECT coalesce(max(seq), 0)::bigint, coalesce(min(seq), 0)::bigint, count(*)::bigint FROM understudy_journal").rows
            let (maxSeq, minSeq, count) = try rows[0].decode((Int64, Int64, Int64).self)
            let snapshotRows = try setup.query("SELECT coalesce(max(seq), 0)::bigint FROM understudy_snapshot_index").rows
            let newestSnapshot = UInt64(try snapshotRows[0].decode(Int64.self))
            let tail = max(UInt64(maxSeq), newestSnapshot)
            var report = RecoveryReport(directory: address.description)
            report.recordCount = Int(count)
            report.firstSequence = count > 0 ? UInt64(minSeq) : nil
            report.lastRecordSequence = count > 0 ? UInt64(maxSeq) : nil
            report.lastSequence = tail
            let journal = PostgresJournal(
                address: address, configuration: configuration, logger: logger, group: group, tail: tail,
                oldest: count > 0 ? UInt64(minSeq) : tail + 1, report: report)
            try journal.writerSession.with { _ in }
            journal.startWriter()
            journal.startListener()
            logger.info("PostgreSQL journal opened", metadata: [
                "understudy.journal": "\(address)", "understudy.seq": "\(tail)", "understudy.records": "\(count)",
            ])
            return journal
        } catch {
            try? group.syncShutdownGracefully()
            if let e = error as? JournalError { throw e }
            throw JournalError(.database, "cannot open the journal at \(address): \(PostgresSession.describe(error))")
        }
    }

    /// Creates the tables if absent (under an advisory lock, so two supervisors starting at once do not race) and
    /// refuses a schema newer than this code.
    static func createSchema(_ session: PostgresSession, address: PostgresJournalAddress) throws {
        try session.with { c in
            let logger = session.logger
            _ = try PostgresSession.run(c, "BEGIN", logger: logger, limit: .seconds(30))
            do {
                _ = try PostgresSession.run(c, "SELECT pg_advisory_xact_lock(7305844506237498739)", logger: logger, limit: .seconds(30))
                for statement in [
                    "CREATE TABLE IF NOT EXISTS understudy_meta (key text PRIMARY KEY, value text NOT NULL)",
                    """
                    CREATE TABLE IF NOT EXISTS understudy_journal (seq bigint PRIMARY KEY, time bigint NOT NULL, \
                    seed bigint NOT NULL, tag smallint NOT NULL, payload bytea NOT NULL, epoch bigint NOT NULL)
                    """,
                    """
                    CREATE TABLE IF NOT EXISTS understudy_snapshot_index (seq bigint PRIMARY KEY, service text NOT NULL, \
                    schema_version integer NOT NULL, size bigint NOT NULL, crc bigint NOT NULL, chunks integer NOT NULL, \
                    epoch bigint NOT NULL, created timestamptz NOT NULL DEFAULT clock_timestamp())
                    """,
                    """
                    CREATE TABLE IF NOT EXISTS understudy_snapshot_chunks (seq bigint NOT NULL, chunk integer NOT NULL, \
                    data bytea NOT NULL, PRIMARY KEY (seq, chunk))
                    """,
                    """
                    CREATE TABLE IF NOT EXISTS understudy_lease (id integer PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL, \
                    holder text NOT NULL, expires_at timestamptz NOT NULL)
                    """,
                    "INSERT INTO understudy_meta (key, value) VALUES ('schema_version', '\(schemaVersion)') ON CONFLICT (key) DO NOTHING",
                ] {
                    _ = try PostgresSession.run(c, PostgresQuery(unsafeSQL: statement), logger: logger, limit: .seconds(30))
                }
                let rows = try PostgresSession.run(c, "SELECT value FROM understudy_meta WHERE key = 'schema_version'", logger: logger, limit: .seconds(30)).rows
                let version = Int(try rows[0].decode(String.self)) ?? 0
                guard version <= schemaVersion else {
                    throw JournalError(.database, "the journal at \(address) has schema version \(version), newer than this supervisor understands (\(schemaVersion)); upgrade understudy")
                }
                _ = try PostgresSession.run(c, "COMMIT", logger: logger, limit: .seconds(30))
            } catch {
                _ = try? PostgresSession.run(c, "ROLLBACK", logger: logger, limit: .seconds(30))
                throw error
            }
        }
    }

    // MARK: JournalBackend

    public var location: String { address.description }
    public var snapshotRejections: [RecoveryReport.RejectedSnapshot] { state.withLock { $0.snapshotRejections } }
    public var lastSequence: UInt64 { state.withLock { $0.lastSequence } }
    public var durableSequence: UInt64 { state.withLock { $0.committedSequence } }
    /// The oldest record the database still has (another supervisor may have pruned since this one last looked:
    /// asked of the database, the cached value only when it cannot answer).
    public var oldestSequence: UInt64 {
        let cached = state.withLock { ($0.oldestSequence, $0.lastSequence) }
        guard let rows = try? readerSession.query("SELECT coalesce(min(seq), -1)::bigint FROM understudy_journal").rows,
              let oldest = try? rows.first?.decode(Int64.self)
        else { return cached.0 }
        // No records at all: everything up to the last sequence is in the snapshot.
        let value = oldest >= 0 ? UInt64(oldest) : cached.1 + 1
        state.withLock { $0.oldestSequence = max($0.oldestSequence, min(value, $0.lastSequence + 1)) }
        return value
    }
    /// The lease epoch appends are made under (0 while a standby).
    public var epoch: UInt64 { state.withLock { $0.epoch } }

    public func append(_ record: JournalRecord, wakeWriter: Bool) throws {
        guard record.payload.count <= configuration.maximumPayloadSize else {
            throw JournalError(.recordTooLarge, "record \(record.sequence) has a payload of \(record.payload.count) bytes; the journal takes at most \(configuration.maximumPayloadSize)", sequence: record.sequence)
        }
        try state.withLock { (s: inout State) throws -> Void in
            if let failure = s.failure { throw failure }
            if s.closing || s.closed { throw JournalError(.closed, "the journal is closed") }
            guard s.epoch != 0 else {
                throw JournalError(.fenced, "this supervisor holds no lease on the journal (it is a standby); nothing is appended")
            }
            guard record.sequence == s.lastSequence + 1 else {
                throw JournalError(.sequenceOutOfOrder, "expected sequence \(s.lastSequence + 1), got \(record.sequence)", sequence: record.sequence)
            }
            s.lastSequence = record.sequence
            s.unconfirmed.append(record)
        }
        if wakeWriter { self.wakeWriter() }
    }

    public func wakeWriter() {
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    public func onSync(_ handler: @escaping @Sendable (JournalSync) -> Void) { state.withLock { $0.syncHandlers.append(handler) } }
    public func onDurable(_ handler: @escaping @Sendable (UInt64) -> Void) { state.withLock { $0.durableHandlers.append(handler) } }

    /// Registers a handler called (on the writer thread) when an append finds that another supervisor took the
    /// journal over; nothing appended after that point is ever acknowledged.
    public func onFenced(_ handler: @escaping @Sendable (JournalError) -> Void) { state.withLock { $0.fencedHandlers.append(handler) } }

    /// Registers a handler called with the journal's last committed sequence whenever another supervisor commits
    /// (PostgreSQL notifications), and after every reconnection of the listener (to catch up on what it missed).
    public func onTail(_ handler: @escaping @Sendable (UInt64) -> Void) { state.withLock { $0.tailHandlers.append(handler) } }

    /// Registers a handler called when the active supervisor gives the lease up (a clean stop): a standby looks
    /// at the lease at once.
    public func onLeaseReleased(_ handler: @escaping @Sendable () -> Void) { state.withLock { $0.leaseReleasedHandlers.append(handler) } }

    public func waitDurable(_ sequence: UInt64) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let outcome: Result<Void, any Error>? = state.withLock { s in
                if s.committedSequence >= sequence { return .success(()) }
                if let failure = s.failure { return .failure(failure) }
                if s.closed { return .failure(JournalError(.closed, "the journal is closed")) }
                s.waiters.append((sequence, c))
                return nil
            }
            if let outcome { c.resume(with: outcome) }
        }
    }

    public func sync(through sequence: UInt64) throws {
        // A commit is as durable as this backend makes anything (with `everysec`/`no`, an asynchronous commit):
        // wait for it.
        condition.lock()
        defer { condition.unlock() }
        while true {
            let (done, failure, closed) = state.withLock { ($0.committedSequence >= sequence, $0.failure, $0.closed) }
            if done { return }
            if let failure { throw failure }
            if closed { throw JournalError(.closed, "the journal is closed") }
            condition.signal()
            _ = condition.wait(until: Date().addingTimeInterval(0.05))
        }
    }

    public func read(from: UInt64, maxCount: Int) throws -> [JournalRecord] {
        guard maxCount > 0 else { return [] }
        let (committed, pending, oldest) = state.withLock { s -> (UInt64, [JournalRecord], UInt64) in
            let wanted = s.unconfirmed.drop { $0.sequence < from }.prefix(maxCount)
            return (s.committedSequence, Array(wanted), s.oldestSequence)
        }
        if from > committed, !pending.isEmpty { return pending }
        let rows = try readerSession.query("""
            SELECT seq, time, seed, tag, payload FROM understudy_journal WHERE seq >= \(Int64(from)) ORDER BY seq LIMIT \(maxCount)
            """).rows
        var records: [JournalRecord] = []
        records.reserveCapacity(rows.count)
        for row in rows {
            let (seq, time, seed, tag, payload) = try row.decode((Int64, Int64, Int64, Int16, ByteBuffer).self)
            records.append(JournalRecord(
                sequence: UInt64(seq), time: time, seed: UInt64(bitPattern: seed), tag: UInt8(truncatingIfNeeded: tag),
                payload: Array(buffer: payload)))
        }
        if let first = records.first, first.sequence != from {
            throw JournalError(.sequenceUnavailable, "records from \(from) were removed after a snapshot (the journal keeps \(first.sequence) on)", sequence: from)
        }
        if records.isEmpty && from < oldest {
            throw JournalError(.sequenceUnavailable, "records from \(from) were removed after a snapshot (the journal keeps \(oldest) on)", sequence: from)
        }
        if records.count < maxCount {
            let next = (records.last?.sequence ?? from - 1) + 1
            records += pending.drop { $0.sequence < next }.prefix(maxCount - records.count)
        }
        return records
    }

    public func follow(from: UInt64) -> AsyncThrowingStream<JournalRecord, any Error> {
        AsyncThrowingStream { continuation in
            let thread = Thread { [self] in
                var next = max(from, 1)
                while true {
                    if state.withLock({ $0.closed }) { continuation.finish(); return }
                    do {
                        let records = try read(from: next, maxCount: 1024)
                        for r in records { continuation.yield(r) }
                        if let last = records.last { next = last.sequence + 1 } else { Thread.sleep(forTimeInterval: 0.02) }
                    } catch {
                        continuation.finish(throwing: error)
                        return
                    }
                }
            }
            thread.start()
        }
    }

    public func claim(service: String) throws {
        let rows = try snapshotSession.query("""
            WITH ins AS (INSERT INTO understudy_meta (key, value) VALUES ('service', \(service)) ON CONFLICT (key) DO NOTHING RETURNING value)
            SELECT value FROM ins UNION ALL SELECT value FROM understudy_meta WHERE key = 'service'
            """).rows
        let holder = try rows.first?.decode(String.self) ?? service
        guard holder == service else {
            throw JournalError(.wrongService, "the journal at \(address) holds the state of service '\(holder)', not '\(service)': give each service its own database")
        }
    }

    public func close() throws {
        let alreadyClosed = state.withLock { s -> Bool in
            defer { s.closing = true }
            return s.closed || s.closing
        }
        guard !alreadyClosed else { return }
        // Let the writer commit what is waiting (bounded: a database that is gone does not hold the exit up).
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline, state.withLock({ !$0.unconfirmed.isEmpty && $0.failure == nil && $0.epoch != 0 }) {
            wakeWriter()
            Thread.sleep(forTimeInterval: 0.01)
        }
        let waiters = state.withLock { s -> [(UInt64, CheckedContinuation<Void, any Error>)] in
            s.closed = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for (_, c) in waiters { c.resume(throwing: JournalError(.closed, "the journal is closed")) }
        wakeWriter()
        // The listener thread ends once its connection is closed; it must be gone before the event loops are.
        if let listener = state.withLock({ s -> PostgresConnection? in defer { s.listener = nil }; return s.listener }) {
            PostgresSession.closeAndWait(listener)
        }
        _ = listenerExited.wait(timeout: .now() + 10)
        for session in [writerSession, readerSession, snapshotSession, leaseSession] { session.close() }
        try? group.syncShutdownGracefully()
    }

    deinit {
        try? close()
    }
}
