import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import UnderstudyJournal

extension PostgresJournal {
    /// The lease as the database has it, or nil when no supervisor ever held it.
    public func inspectLease() throws -> PostgresLeaseState? {
        let rows = try leaseSession.query("""
            SELECT epoch, holder, (extract(epoch FROM (expires_at - clock_timestamp())) * 1000)::bigint FROM understudy_lease WHERE id = 1
            """).rows
        guard let row = rows.first else { return nil }
        let (epoch, holder, remaining) = try row.decode((Int64, String, Int64).self)
        return PostgresLeaseState(epoch: UInt64(epoch), holder: holder, remainingMilliseconds: remaining)
    }

    /// Takes the lease if it is free, expired, or `force`d: a new epoch, valid `milliseconds` by the database's
    /// clock. Appends are not made under it until ``activate(epoch:)``.
    ///
    /// - Returns: The new epoch, or nil when another supervisor holds an unexpired lease.
    public func acquireLease(holder: String, milliseconds: Int) throws -> UInt64? {
        let rows = try leaseSession.query("""
            INSERT INTO understudy_lease AS l (id, epoch, holder, expires_at)
            VALUES (1, 1, \(holder), clock_timestamp() + \(Double(milliseconds)) * interval '1 millisecond')
            ON CONFLICT (id) DO UPDATE SET epoch = l.epoch + 1, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
            WHERE l.expires_at < clock_timestamp()
            RETURNING epoch
            """).rows
        guard let row = rows.first else { return nil }
        return UInt64(try row.decode(Int64.self))
    }

    /// Extends the lease of `epoch` by `milliseconds` from now (the database's clock).
    ///
    /// - Returns: False when the epoch is no longer current (another supervisor took over).
    public func renewLease(epoch: UInt64, milliseconds: Int) throws -> Bool {
        let rows = try leaseSession.query("""
            UPDATE understudy_lease SET expires_at = clock_timestamp() + \(Double(milliseconds)) * interval '1 millisecond'
            WHERE id = 1 AND epoch = \(Int64(epoch)) RETURNING epoch
            """).rows
        return !rows.isEmpty
    }

    /// Ends the lease of `epoch` now, so a standby takes over at once (a clean shutdown).
    public func releaseLease(epoch: UInt64) throws {
        _ = try leaseSession.query("""
            UPDATE understudy_lease SET expires_at = clock_timestamp() - interval '1 millisecond' WHERE id = 1 AND epoch = \(Int64(epoch))
            """)
        // Standbys look at the lease at once instead of at their next quarter-lease check.
        _ = try leaseSession.query("SELECT pg_notify('understudy_journal', 'lease released')")
    }

    /// Listens for commits of other supervisors (`LISTEN`), reconnecting when the connection drops; after each
    /// (re)connection the tail handlers hear the current tail, so nothing missed meanwhile is left unread.
    ///
    /// A thread, not a task: it must not depend on the cooperative pool (blocking callers may fill it).
    func startListener() {
        let exited = listenerExited
        let thread = Thread { [weak self] in
            defer { exited.signal() }
            var delay = 0.1
            while let journal = self {
                if journal.state.withLock({ $0.closed }) { return }
                do {
                    let connection = try PostgresSession.connect(journal.address, group: journal.group, name: "journal listener", logger: journal.logger)
                    // On the connection's loop, where it cannot close under us: PostgresNIO traps on a listener
                    // handed to a connection that is already closed.
                    let listening = try connection.eventLoop.submit { () -> Bool in
                        guard !connection.isClosed else { return false }
                        connection.addListener(channel: PostgresJournal.channel) { [weak journal] _, notification in
                            guard let journal else { return }
                            if notification.payload == "lease released" {
                                for h in journal.state.withLock({ $0.leaseReleasedHandlers }) { h() }
                            } else if let sequence = UInt64(notification.payload), sequence > 0 {
                                journal.announceTail(sequence)
                            }
                        }
                        return true
                    }.wait()
                    let kept = listening && journal.state.withLock { s -> Bool in
                        guard !s.closed else { return false }
                        if let old = s.listener { PostgresSession.release(old) }  // a dropped one: its group lives on
                        s.listener = connection
                        return true
                    }
                    guard kept else {
                        PostgresSession.closeAndWait(connection)
                        if journal.state.withLock({ $0.closed }) { return }
                        throw JournalError(.database, "the listener's connection closed at once")
                    }
                    _ = try PostgresSession.run(connection, "LISTEN understudy_journal", logger: journal.logger, limit: .seconds(30))
                    journal.announceTail(try journal.databaseTail())
                    delay = 0.1
                    let closed = connection.closeFuture
                    try? closed.wait()
                } catch {
                    if !journal.state.withLock({ $0.closed }) {
                        journal.logger.warning("journal listener: \(PostgresSession.describe(error)); reconnecting")
                    }
                }
                Thread.sleep(forTimeInterval: delay)
                delay = min(delay * 2, 2)
            }
        }
        thread.name = "understudy-pg-journal-listener"
        thread.start()
    }

    func announceTail(_ sequence: UInt64) {
        let handlers = state.withLock { $0.tailHandlers }
        for h in handlers { h(sequence) }
    }
}
