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
    private let connection = Mutex<PostgresConnection?>(nil)
    private static let ids = Atomic<Int>(1)

    init(address: PostgresJournalAddress, group: any EventLoopGroup, name: String, logger: Logger) {
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
                current = c
            }
            do {
                return try body(c)
            } catch {
                if c.isClosed || !Self.isServerError(error) {
                    try? (c.close() as EventLoopFuture<Void>).wait()
                    current = nil
                }
                throw error
            }
        }
    }

    /// Runs one statement and collects its rows.
    func query(_ query: PostgresQuery) throws -> PostgresQueryResult {
        try with { c in try c.query(query, logger: logger).wait() }
    }

    /// Closes the connection, if open.
    func close() {
        connection.withLock { current in
            if let c = current { try? (c.close() as EventLoopFuture<Void>).wait() }
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
