/// The commands a Redis-protocol service knows, each with its arity in Redis's convention, declared in the
/// service's ``Hello``.
///
/// The supervisor's RESP front-end checks every command queued inside MULTI against the primary's table, so a
/// command that could never run (unknown, or with the wrong number of arguments) is refused while queueing and
/// the transaction's EXEC answers `-EXECABORT`, as Redis does. A service without a table has every command queued.
public struct CommandTable: Sendable, Equatable {
    /// Lower-case command name → arity: `n > 0` exactly `n` arguments counting the name, `n < 0` at least `-n`.
    public var arities: [String: Int]

    /// Creates a table.
    /// - Parameter arities: command name (any case; stored lower-case) → arity in Redis's convention.
    public init(_ arities: [String: Int]) {
        var table: [String: Int] = [:]
        table.reserveCapacity(arities.count)
        for (name, arity) in arities { table[name.lowercased()] = arity }
        self.arities = table
    }

    /// The arity of a command (any case), or nil when the table does not have it.
    public func arity(of name: String) -> Int? { arities[name.lowercased()] }

    /// True when the service keeps WATCH state (it declares `watch`): the front-end then journals WATCH, UNWATCH
    /// and the EXEC of a watching connection as ``InputTag/connectionCommand`` and
    /// ``InputTag/connectionTransaction`` inputs.
    public var supportsWatch: Bool { arities["watch"] != nil }

    /// Redis's error reply for a command this table refuses before running it — unknown, or the wrong number of
    /// arguments — or nil when the command may run.
    /// - Parameter arguments: The command's arguments, the name first (must not be empty).
    /// - Returns: The error reply's bytes (`-ERR …\r\n`), or nil.
    public func refusal(_ arguments: [[UInt8]]) -> [UInt8]? {
        guard let first = arguments.first else { return Self.unknownCommandError(arguments) }
        let name = String(decoding: first, as: UTF8.self).lowercased()
        guard let arity = arities[name] else { return Self.unknownCommandError(arguments) }
        if (arity > 0 && arguments.count != arity) || arguments.count < -arity {
            return Self.arityError(name)
        }
        return nil
    }

    /// Redis's "wrong number of arguments" error line for a command.
    /// - Parameter name: The command's lower-case name (as Redis prints it).
    public static func arityError(_ name: String) -> [UInt8] {
        Array("-ERR wrong number of arguments for '\(name)' command\r\n".utf8)
    }

    /// Redis's "unknown command" error line, byte for byte: the name and the first arguments as Redis prints them
    /// (each up to its first NUL byte, at most 128 bytes of each part, CR and LF turned into spaces).
    /// - Parameter arguments: The command's arguments, the name first.
    public static func unknownCommandError(_ arguments: [[UInt8]]) -> [UInt8] {
        var out = Array("-ERR unknown command '".utf8)
        // Redis formats with %s: every argument ends at its first NUL byte.
        func cString(_ b: [UInt8]) -> ArraySlice<UInt8> { b.firstIndex(of: 0).map { b[..<$0] } ?? b[...] }
        if let name = arguments.first { out.append(contentsOf: cString(name).prefix(128)) }
        out.append(contentsOf: "', with args beginning with: ".utf8)
        var argsPart: [UInt8] = []
        var i = 1
        while i < arguments.count && argsPart.count < 128 {
            let room = 128 - argsPart.count
            argsPart.append(UInt8(ascii: "'"))
            argsPart.append(contentsOf: cString(arguments[i]).prefix(room))
            argsPart.append(contentsOf: "' ".utf8)
            i += 1
        }
        out.append(contentsOf: argsPart)
        for k in 1..<out.count where out[k] == 13 || out[k] == 10 { out[k] = 32 }
        out.append(contentsOf: [13, 10])
        return out
    }

    /// Appends the table (sorted by name, so equal tables encode equally).
    public func encode(to w: inout ByteWriter) {
        let sorted = arities.sorted { $0.key < $1.key }
        w.writeVarint(UInt64(sorted.count))
        for (name, arity) in sorted {
            w.writeString(name)
            w.write(Int64(arity))
        }
    }

    /// Reads a table written by ``encode(to:)``.
    public init(decoding r: inout ByteReader) throws(DecodingError) {
        // Every entry takes at least 9 bytes (an empty name and the arity).
        let count = try r.readCount(limit: r.remaining / 9)
        var table: [String: Int] = [:]
        table.reserveCapacity(count)
        for _ in 0..<count {
            let name = try r.readString()
            let arity = try r.readInt64()
            guard let a = Int(exactly: arity), a != 0, a.magnitude <= UInt(UnderstudyLimits.maxArguments) else {
                throw DecodingError("command '\(name)' has arity \(arity)")
            }
            table[name.lowercased()] = a
        }
        self.arities = table
    }
}

/// The payload of a connection-scoped input (``InputTag/connectionCommand``,
/// ``InputTag/connectionTransaction``, ``InputTag/connectionClosed``): the client connection's id, then the body.
///
/// Connection ids are unique within one supervisor process; ``InputTag/connectionsReset`` marks where a new
/// process starts, so a service drops what it held for the connections of the one before.
public enum ConnectionInput {
    /// The bytes in front of the body (the connection id, 8 bytes little-endian).
    public static let headerSize = 8

    /// Encodes a connection id and a body.
    /// - Parameters:
    ///   - connection: The client connection's id.
    ///   - body: The input's own payload (a command for ``InputTag/connectionCommand``, a transaction for
    ///     ``InputTag/connectionTransaction``, nothing for ``InputTag/connectionClosed``).
    public static func encode(connection: Int64, body: [UInt8] = []) -> [UInt8] {
        var w = ByteWriter(capacity: headerSize + body.count)
        w.write(connection)
        w.writeRaw(body)
        return w.bytes
    }

    /// Splits a payload into the connection id and the body.
    /// - Throws: ``DecodingError`` when the payload is shorter than the id.
    public static func decode(_ payload: [UInt8]) throws(DecodingError) -> (connection: Int64, body: [UInt8]) {
        var r = ByteReader(payload)
        let connection = try r.readInt64()
        return (connection, Array(payload[headerSize...]))
    }
}
