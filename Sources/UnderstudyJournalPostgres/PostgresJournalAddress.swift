import Foundation

/// Where a PostgreSQL journal lives: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgresql://`).
///
/// The password may instead come from the `PGPASSWORD` environment variable. IPv6 hosts are written in brackets
/// (`postgres://u@[::1]:5432/db`).
public struct PostgresJournalAddress: Sendable, Equatable, CustomStringConvertible {
    /// The server's host name or address.
    public var host: String
    /// The server's port (default 5432).
    public var port: Int
    /// The role to connect as.
    public var user: String
    /// The password, if any.
    public var password: String?
    /// The database that holds the journal (one service per database).
    public var database: String

    /// Creates an address from its parts.
    public init(host: String, port: Int = 5432, user: String, password: String? = nil, database: String) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    /// Parses a `postgres://` URL; nil when it is not one (the error says what is wrong).
    ///
    /// - Parameters:
    ///   - url: The URL.
    ///   - environment: Where `PGPASSWORD` is looked up when the URL has no password.
    /// - Throws: A message naming what is missing or malformed.
    public init(parsing url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let schemes = ["postgres://", "postgresql://"]
        guard let scheme = schemes.first(where: { url.hasPrefix($0) }) else {
            throw PostgresJournalAddressError(message: "'\(url)' is not a PostgreSQL address: it must start with postgres://")
        }
        var rest = Substring(url.dropFirst(scheme.count))
        if let query = rest.firstIndex(of: "?") { rest = rest[..<query] }
        guard let at = rest.lastIndex(of: "@") else {
            throw PostgresJournalAddressError(message: "'\(Self.redact(url))' names no user: write postgres://USER@HOST:PORT/DATABASE")
        }
        let credentials = rest[..<at]
        var hostPart = rest[rest.index(after: at)...]
        guard let slash = hostPart.firstIndex(of: "/") else {
            throw PostgresJournalAddressError(message: "'\(Self.redact(url))' names no database: write postgres://USER@HOST:PORT/DATABASE")
        }
        let database = String(hostPart[hostPart.index(after: slash)...]).removingPercentEncoding ?? ""
        hostPart = hostPart[..<slash]
        var host: String
        var port = 5432
        if hostPart.hasPrefix("["), let close = hostPart.firstIndex(of: "]") {
            host = String(hostPart[hostPart.index(after: hostPart.startIndex)..<close])
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else {
                    throw PostgresJournalAddressError(message: "'\(Self.redact(url))' has a bad port")
                }
                port = p
            }
        } else if let colon = hostPart.lastIndex(of: ":") {
            host = String(hostPart[..<colon])
            guard let p = Int(hostPart[hostPart.index(after: colon)...]), (1...65535).contains(p) else {
                throw PostgresJournalAddressError(message: "'\(Self.redact(url))' has a bad port")
            }
            port = p
        } else {
            host = String(hostPart)
        }
        var user = String(credentials)
        var password: String?
        if let colon = credentials.firstIndex(of: ":") {
            user = String(credentials[..<colon])
            password = String(credentials[credentials.index(after: colon)...]).removingPercentEncoding
        }
        user = user.removingPercentEncoding ?? user
        guard !user.isEmpty else { throw PostgresJournalAddressError(message: "'\(Self.redact(url))' names no user") }
        guard !host.isEmpty else { throw PostgresJournalAddressError(message: "'\(Self.redact(url))' names no host") }
        guard !database.isEmpty else { throw PostgresJournalAddressError(message: "'\(Self.redact(url))' names no database") }
        if password == nil, let fromEnvironment = environment["PGPASSWORD"], !fromEnvironment.isEmpty {
            password = fromEnvironment
        }
        self.init(host: host, port: port, user: user, password: password, database: database)
    }

    /// Whether `text` is meant as a PostgreSQL address (rather than a directory).
    public static func looksLikeAddress(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// The address without its password, for logs and status.
    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(user)@\(h):\(port)/\(database)"
    }

    private static func redact(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let schemeEnd = url.range(of: "://")?.upperBound,
            let colon = url[schemeEnd..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }
}

/// A PostgreSQL address that could not be parsed.
public struct PostgresJournalAddressError: Error, CustomStringConvertible, Sendable {
    /// What is wrong.
    public var message: String
    public var description: String { message }
}
