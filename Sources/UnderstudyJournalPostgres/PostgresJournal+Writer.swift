import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import UnderstudyJournal

extension PostgresJournal {
    /// What a group commit found.
    enum CommitOutcome {
        case committed
        /// A lost answer, looked up: the batch's records through this sequence are committed (an earlier attempt
        /// may have carried fewer records than this one).
        case committedThrough(UInt64)
        case fenced(String)
    }

    func startWriter() {
        // The thread holds the journal until `close()` ends it.
        let thread = Thread { self.runWriter() }
        thread.name = "understudy-pg-journal-writer"
        thread.start()
    }

    private func runWriter() {
        var retryDelay = 0.01
        while true {
            condition.lock()
            while true {
                let (work, closed) = state.withLock { s in
                    (!s.unconfirmed.isEmpty && s.failure == nil && s.epoch != 0, s.closed)
                }
                if work || closed { break }
                _ = condition.wait(until: Date().addingTimeInterval(0.5))
            }
            condition.unlock()
            let (batch, epoch, closed) = state.withLock { s -> ([JournalRecord], UInt64, Bool) in
                var bytes = 0
                var n = 0
                for r in s.unconfirmed {
                    if n > 0 && bytes + r.payload.count > configuration.batchBytes { break }
                    bytes += r.payload.count
                    n += 1
                }
                return (Array(s.unconfirmed.prefix(n)), s.epoch, s.closed)
            }
            if closed { return }
            guard !batch.isEmpty else { continue }
            let started = DispatchTime.now().uptimeNanoseconds
            do {
                switch try commit(batch, epoch: epoch) {
                case .committed:
                    confirm(batch, nanoseconds: DispatchTime.now().uptimeNanoseconds - started)
                    retryDelay = 0.01
                case .committedThrough(let last):
                    let done = batch.prefix { $0.sequence <= last }
                    if !done.isEmpty { confirm(Array(done), nanoseconds: DispatchTime.now().uptimeNanoseconds - started) }
                case .fenced(let why):
                    fence(JournalError(.fenced, why, sequence: batch.first?.sequence))
                }
            } catch {
                logger.warning("journal commit failed; retrying", metadata: [
                    "understudy.error": "\(PostgresSession.describe(error))", "understudy.seq": "\(batch.first?.sequence ?? 0)",
                ])
                Thread.sleep(forTimeInterval: retryDelay)
                retryDelay = min(retryDelay * 2, 1)
            }
        }
    }

    /// One statement: the lease check and the inserts commit together or not at all; the commit announces the new
    /// tail. A lost connection leaves the outcome unknown: it is looked up before anything else happens.
    private func commit(_ batch: [JournalRecord], epoch: UInt64) throws -> CommitOutcome {
        var seqs: [Int64] = [], times: [Int64] = [], seeds: [Int64] = [], tags: [Int16] = [], payloads: [ByteBuffer] = []
        for r in batch {
            seqs.append(Int64(r.sequence))
            times.append(r.time)
            seeds.append(Int64(bitPattern: r.seed))
            tags.append(Int16(r.tag))
            payloads.append(ByteBuffer(bytes: r.payload))
        }
        let query: PostgresQuery = """
            WITH lease AS (SELECT epoch FROM understudy_lease WHERE id = 1 AND epoch = \(Int64(epoch)) FOR SHARE),
            ins AS (INSERT INTO understudy_journal (seq, time, seed, tag, payload, epoch)
                SELECT u.seq, u.time, u.seed, u.tag, u.payload, lease.epoch
                FROM unnest(\(seqs)::bigint[], \(times)::bigint[], \(seeds)::bigint[], \(tags)::smallint[], \(payloads)::bytea[])
                    AS u(seq, time, seed, tag, payload)
                CROSS JOIN lease
                RETURNING seq),
            summary AS (SELECT count(*)::bigint AS n, coalesce(max(seq), 0)::bigint AS m FROM ins)
            SELECT summary.n, summary.m FROM summary, LATERAL (SELECT pg_notify('understudy_journal', summary.m::text)) AS notified
            """
        do {
            // One statement in its own (implicit) transaction. PostgreSQL answers it *before* the commit that
            // follows it at the protocol's Sync — so its answer alone proves nothing. The answer to the next query
            // on the connection comes after that commit (and, with a synchronous standby, after the standby has
            // it): only then are the records durable.
            let inserted: Int64 = try writerSession.with { c in
                let rows = try PostgresSession.run(c, query, logger: logger, limit: nil).rows
                let inserted = try rows[0].decode((Int64, Int64).self).0
                do {
                    _ = try PostgresSession.run(c, "SELECT 1", logger: logger, limit: nil)
                } catch {
                    // Whatever went wrong, the commit may have happened (a connection cut while PostgreSQL waited
                    // for its synchronous standby, for one): look it up before anything else.
                    throw CommitOutcomeUnknown(underlying: error)
                }
                return inserted
            }
            if inserted == Int64(batch.count) { return .committed }
            return .fenced("another supervisor took the journal over: lease epoch \(epoch) is no longer current; records from \(batch[0].sequence) were not appended")
        } catch {
            if let unknown = error as? CommitOutcomeUnknown {
                writerSession.close()
                return try resolveUnknownCommit(batch, epoch: epoch, error: unknown.underlying)
            }
            writerSession.close()
            // A lost connection (the statement's commit follows its answer at once: it may have happened), or
            // sequence numbers already taken (an earlier attempt did commit, or another supervisor wrote them):
            // look the records up. Any other answer from the server means the statement failed as a whole.
            if PostgresSession.sqlState(error) == "23505" || !PostgresSession.isServerError(error) {
                return try resolveUnknownCommit(batch, epoch: epoch, error: error)
            }
            throw error
        }
    }

    private func resolveUnknownCommit(_ batch: [JournalRecord], epoch: UInt64, error: any Error) throws -> CommitOutcome {
        let first = Int64(batch[0].sequence)
        let last = Int64(batch[batch.count - 1].sequence)
        let rows = try writerSession.query("""
            SELECT count(*)::bigint, coalesce(max(seq), 0)::bigint, coalesce(min(epoch), 0)::bigint, coalesce(max(epoch), 0)::bigint
            FROM understudy_journal WHERE seq BETWEEN \(first) AND \(last)
            """).rows
        let (count, through, lowest, highest) = try rows[0].decode((Int64, Int64, Int64, Int64).self)
        guard count > 0 else {
            logger.notice("journal commit outcome unknown after \(PostgresSession.describe(error)): not committed, sending again")
            throw error
        }
        guard lowest == Int64(epoch) && highest == Int64(epoch) else {
            return .fenced("sequence numbers from \(first) were appended under epoch \(highest == Int64(epoch) ? lowest : highest), not this supervisor's \(epoch): it was taken over")
        }
        // Committed on the server — but perhaps not yet on a synchronous standby (the wait for it is what the
        // lost connection cut short). A later write transaction commits only once the standby has everything
        // before it: after that, these records are as durable as any other.
        _ = try writerSession.with { c in
            _ = try PostgresSession.run(c, "UPDATE understudy_meta SET value = value WHERE key = 'schema_version'", logger: logger, limit: nil)
            _ = try PostgresSession.run(c, "SELECT 1", logger: logger, limit: nil)
        }
        logger.notice("journal commit outcome unknown after \(PostgresSession.describe(error)): committed through \(through)")
        return .committedThrough(UInt64(through))
    }

    private func confirm(_ batch: [JournalRecord], nanoseconds: UInt64) {
        let last = batch[batch.count - 1].sequence
        let bytes = batch.reduce(0) { $0 + $1.payload.count }
        let (durable, sync, ready) = state.withLock { s -> ([@Sendable (UInt64) -> Void], [@Sendable (JournalSync) -> Void], [CheckedContinuation<Void, any Error>]) in
            s.unconfirmed.removeFirst(batch.count)
            s.committedSequence = last
            var ready: [CheckedContinuation<Void, any Error>] = []
            s.waiters.removeAll { w in
                guard w.0 <= last else { return false }
                ready.append(w.1)
                return true
            }
            return (s.durableHandlers, s.syncHandlers, ready)
        }
        for h in sync { h(JournalSync(nanoseconds: nanoseconds, records: UInt64(batch.count), bytes: bytes)) }
        for h in durable { h(last) }
        for c in ready { c.resume() }
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// Another supervisor holds the journal: fail everything not committed and tell the supervisor.
    func fence(_ error: JournalError) {
        logger.error("journal fenced: \(error.message)")
        let (handlers, waiters) = state.withLock { s -> ([@Sendable (JournalError) -> Void], [(UInt64, CheckedContinuation<Void, any Error>)]) in
            s.failure = error
            s.unconfirmed = []
            s.lastSequence = s.committedSequence
            let w = s.waiters
            s.waiters = []
            return (s.fencedHandlers, w)
        }
        for (_, c) in waiters { c.resume(throwing: error) }
        for h in handlers { h(error) }
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// The journal's last committed sequence, as the database has it.
    public func databaseTail() throws -> UInt64 {
        let rows = try readerSession.query("""
            SELECT greatest((SELECT coalesce(max(seq), 0) FROM understudy_journal), (SELECT coalesce(max(seq), 0) FROM understudy_snapshot_index))::bigint
            """).rows
        return UInt64(try rows[0].decode(Int64.self))
    }

    /// Appends are made under `epoch` from now on (this supervisor just took the lease): the journal continues
    /// from the database's tail, which no one else can extend any more.
    ///
    /// - Returns: The tail: the caller applies everything through it before appending.
    @discardableResult
    public func activate(epoch: UInt64) throws -> UInt64 {
        let tail = try databaseTail()
        continueFromTail(tail, epoch: epoch)
        return tail
    }

    /// Stops appending (fenced, or giving the journal up): what was not committed is dropped, the journal
    /// follows the database's tail from now on.
    ///
    /// - Returns: The database's tail.
    @discardableResult
    public func demote() throws -> UInt64 {
        let tail = try databaseTail()
        continueFromTail(tail, epoch: 0)
        return tail
    }

    /// Appends continue after `tail` under `epoch` (0: none); nothing unconfirmed is kept.
    private func continueFromTail(_ tail: UInt64, epoch: UInt64) {
        state.withLock { s in
            s.epoch = epoch
            s.failure = nil
            s.unconfirmed = []
            s.lastSequence = tail
            s.committedSequence = tail
        }
    }

    /// A standby learned that the journal reaches `sequence` (it applies the records itself; nothing is appended).
    public func adoptTail(_ sequence: UInt64) {
        state.withLock { s in
            guard s.epoch == 0, sequence > s.lastSequence else { return }
            s.lastSequence = sequence
            s.committedSequence = sequence
        }
    }
}

/// A COMMIT that failed in a way that leaves its outcome open.
struct CommitOutcomeUnknown: Error {
    var underlying: any Error
}
