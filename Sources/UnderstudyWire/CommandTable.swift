/// The commands a Redis-protocol service knows, each with its arity in Redis's convention, declared in the
/// service's ``Hello``.
///
/// The supervisor's RESP front-end checks every command queued inside MULTI against the primary's table, so a
/// command that could never run (unknown, or with the wrong number of arguments) is refused while queueing and
/// the transaction's EXEC answers `-EXECABORT`, as Redis does. A service without a table has every command queued.
public struct CommandTable: Sendable, Equatable {
    /// Lower-case command name → arity: `n > 0` exactly `n` arguments counting the name, `n < 0` at least `-n`.
    /// A subcommand is named as Redis names it, `command|subcommand` (`config|get`); a command with subcommands
    /// in the table takes only those (the command alone is checked against its own arity).
    public private(set) var arities: [String: Int]
    /// The commands that have subcommands in the table.
    private var containers: Set<String>

    /// Creates a table.
    /// - Parameter arities: command name (any case; stored lower-case), or `command|subcommand`, → arity in
    ///   Redis's convention.
    public init(_ arities: [String: Int]) {
        var table: [String: Int] = [:]
        table.reserveCapacity(arities.count)
        for (name, arity) in arities { table[name.lowercased()] = arity }
        self.arities = table
        self.containers = Self.containers(of: table)
    }

    private static func containers(of table: [String: Int]) -> Set<String> {
        Set(table.keys.compactMap { name in name.firstIndex(of: "|").map { String(name[..<$0]) } })
    }

    /// The arity of a command (any case), or nil when the table does not have it.
    public func arity(of name: String) -> Int? { arities[name.lowercased()] }

    /// True when the service keeps WATCH state (it declares `watch`): the front-end then journals WATCH, UNWATCH
    /// and the EXEC of a watching connection as ``InputTag/connectionCommand`` and
    /// ``InputTag/connectionTransaction`` inputs.
    public var supportsWatch: Bool { arities["watch"] != nil }

    /// Redis's error reply for a command this table refuses before running it — unknown, an unknown subcommand,
    /// or the wrong number of arguments — or nil when the command may run.
    /// - Parameter arguments: The command's arguments, the name first.
    /// - Returns: The error reply's bytes (`-ERR …\r\n`), or nil.
    public func refusal(_ arguments: [[UInt8]]) -> [UInt8]? {
        guard let first = arguments.first else { return Self.unknownCommandError(arguments) }
        var name = String(decoding: first, as: UTF8.self).lowercased()
        guard var arity = arities[name] else { return Self.unknownCommandError(arguments) }
        if arguments.count > 1 && containers.contains(name) {
            let full = name + "|" + String(decoding: arguments[1], as: UTF8.self).lowercased()
            guard let subArity = arities[full] else { return Self.unknownSubcommandError(arguments) }
            name = full
            arity = subArity
        }
        if (arity > 0 && arguments.count != arity) || arguments.count < -arity {
            return Self.arityError(name)
        }
        return nil
    }

    /// Redis's "unknown subcommand" error line: `'SUB'. Try COMMAND HELP.` (the subcommand up to its first NUL
    /// byte and at most 128 bytes, the command upper-cased, CR and LF turned into spaces).
    /// - Parameter arguments: The command's arguments: the name, the subcommand, the rest.
    public static func unknownSubcommandError(_ arguments: [[UInt8]]) -> [UInt8] {
        var out = Array("-ERR unknown subcommand '".utf8)
        if arguments.count > 1 { out.append(contentsOf: cString(arguments[1]).prefix(128)) }
        out.append(contentsOf: "'. Try ".utf8)
        if let name = arguments.first { out.append(contentsOf: String(decoding: cString(name), as: UTF8.self).uppercased().utf8) }
        out.append(contentsOf: " HELP.".utf8)
        for k in 1..<out.count where out[k] == 13 || out[k] == 10 { out[k] = 32 }
        out.append(contentsOf: [13, 10])
        return out
    }

    /// An argument as Redis prints it with `%s`: up to its first NUL byte.
    private static func cString(_ b: [UInt8]) -> ArraySlice<UInt8> { b.firstIndex(of: 0).map { b[..<$0] } ?? b[...] }

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
        self.containers = Self.containers(of: table)
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
