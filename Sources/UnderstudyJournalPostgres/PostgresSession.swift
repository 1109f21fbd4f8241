import Dispatch
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization
import UnderstudyJournal

/// One connection to the journal's database, used by one caller at a time from ordinary threads (never from an
/// event loop): it connects on first use and again after the connection is lost.
final class PostgresSession: Sendable {
    let address: PostgresJournalAddress
    let group: any EventLoopGroup
    let logger: Logger
    let name: String
    /// Statements run on every new connection (session settings survive reconnections this way).
    let setup: [String]
    private let connection = Mutex<PostgresConnection?>(nil)
    private static let ids = Atomic<Int>(1)

    init(address: PostgresJournalAddress, group: any EventLoopGroup, name: String, logger: Logger, setup: [String] = []) {
        self.setup = setup
        self.address = address
        self.group = group
        self.name = name
        self.logger = logger
    }

    /// The connection's settings: the application name shows in `pg_stat_activity`.
    static func configuration(_ address: PostgresJournalAddress, name: String) -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: address.host, port: address.port, username: address.user, password: address.password,
            database: address.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", "understudy \(name)")]
        return configuration
    }

    static func connect(
        _ address: PostgresJournalAddress, group: any EventLoopGroup, name: String, logger: Logger
    ) throws -> PostgresConnection {
        do {
            return try PostgresConnection.connect(
                on: group.next(), configuration: configuration(address, name: name),
                id: ids.wrappingAdd(1, ordering: .relaxed).oldValue, logger: logger
            ).wait()
        } catch {
            throw JournalError(.database, "cannot connect to \(address) (\(name)): \(PostgresSession.describe(error))")
        }
    }

    /// Runs `body` with a live connection; a connection that failed is dropped so the next call reconnects.
    func with<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        try connection.withLock { (current: inout PostgresConnection?) throws -> T in
            if let c = current, c.isClosed { current = nil }
            let c: PostgresConnection
            if let existing = current {
                c = existing
            } else {
                c = try Self.connect(address, group: group, name: name, logger: logger)
                for statement in setup {
                    do {
                        _ = try Self.run(c, PostgresQuery(unsafeSQL: statement), logger: logger, limit: .seconds(30))
                    } catch {
                        Self.release(c)
                        throw error
                    }
                }
                current = c
            }
            do {
                return try body(c)
            } catch {
                if c.isClosed || !Self.isServerError(error) {
                    PostgresSession.release(c)
                    current = nil
                }
                throw error
            }
        }
    }

    /// Closes `c` without waiting; the connection is kept until it is closed (PostgresNIO requires it).
    @discardableResult
    static func release(_ c: PostgresConnection) -> EventLoopFuture<Void> {
        let closed: EventLoopFuture<Void> = c.close()
        closed.whenComplete { _ in withExtendedLifetime(c) {} }
        return closed
    }

    /// Closes `c` and waits (at most two seconds) until it is closed: before its event loop group shuts down, a
    /// close still in flight would be a promise left unfulfilled.
    static func closeAndWait(_ c: PostgresConnection) {
        let done = DispatchSemaphore(value: 0)
        release(c).whenComplete { _ in done.signal() }
        _ = done.wait(timeout: .now() + 2)
    }

    /// Runs one statement and collects its rows (at most 30 s: then the connection is dropped).
    func query(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try with { c in try Self.run(c, query, logger: logger, limit: .seconds(30)) }
    }

    /// Runs one statement on `c` and waits for its rows — but not forever: a connection found closed while the
    /// answer is still missing fails the wait (a lost connection's outcome is unknown), and so does `limit` (the
    /// connection is closed then). Without a limit, only a closed connection ends the wait (a COMMIT waiting
    /// for a synchronous standby may take as long as the standby is away).
    static func run(_ c: PostgresConnection, _ query: PostgresQuery, logger: Logger, limit: TimeAmount?) throws -> PostgresQueryResult {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<PostgresQueryResult, any Error>?>(nil)
        c.query(query, logger: logger).whenComplete { r in
            result.withLock { $0 = r }
            done.signal()
        }
        let started = DispatchTime.now()
        var closedSince: DispatchTime?
        while true {
            if done.wait(timeout: .now() + .milliseconds(100)) == .success { break }
            if c.isClosed {
                // Give the library a moment to fail the query itself.
                if let since = closedSince, DispatchTime.now() > since + .milliseconds(500) {
                    throw JournalError(.database, "the connection to the journal's database was lost while waiting for an answer")
                }
                closedSince = closedSince ?? .now()
            }
            if let limit, DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds > UInt64(limit.nanoseconds) {
                PostgresSession.release(c)
                throw JournalError(.database, "the journal's database did not answer within \(limit.nanoseconds / 1_000_000_000) s")
            }
        }
        return try result.withLock { $0! }.get()
    }

    /// Closes the connection, if open, and waits for it to close.
    func close() {
        connection.withLock { current in
            if let c = current { PostgresSession.closeAndWait(c) }
            current = nil
        }
    }

    /// Whether the server answered with an error (the statement failed and did nothing; the connection is fine),
    /// as opposed to a lost connection (the outcome of the statement is unknown).
    static func isServerError(_ error: any Error) -> Bool {
        guard let e = error as? PSQLError else { return false }
        return e.serverInfo != nil
    }

    /// The server's SQLSTATE code, if it answered with an error.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// A readable account of a PostgreSQL error (PSQLError's description hides the server's message).
    static func describe(_ error: any Error) -> String {
        if let e = error as? PSQLError {
            if let info = e.serverInfo {
                let message = info[.message] ?? "?"
                let state = info[.sqlState] ?? "?"
                return "\(message) (SQLSTATE \(state))"
            }
            return "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }
}
