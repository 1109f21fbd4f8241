/// A parsed RESP2 reply, for comparing replies across instances and for the built-in clients.
public indirect enum RESPValue: Sendable, Hashable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8]?)
    case array([RESPValue]?)

    /// Encodes the value as RESP2 bytes.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// Appends the RESP2 encoding.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .simple(let s): out += Array("+\(s)\r\n".utf8)
        case .error(let s): out += Array("-\(s)\r\n".utf8)
        case .integer(let i): out += Array(":\(i)\r\n".utf8)
        case .bulk(nil): out += Array("$-1\r\n".utf8)
        case .bulk(let b?):
            out += Array("$\(b.count)\r\n".utf8)
            out += b
            out += [13, 10]
        case .array(nil): out += Array("*-1\r\n".utf8)
        case .array(let items?):
            out += Array("*\(items.count)\r\n".utf8)
            for item in items { item.encode(into: &out) }
        }
    }

    /// A readable rendering (as redis-cli prints, roughly).
    public var display: String {
        switch self {
        case .simple(let s): return s
        case .error(let s): return "(error) \(s)"
        case .integer(let i): return "(integer) \(i)"
        case .bulk(nil), .array(nil): return "(nil)"
        case .bulk(let b?): return String(decoding: b, as: UTF8.self).debugDescription
        case .array(let items?): return "[" + items.map(\.display).joined(separator: ", ") + "]"
        }
    }

    /// The same value with every array's elements sorted (for order-insensitive comparison).
    public var sortedArrays: RESPValue {
        guard case .array(let items?) = self else { return self }
        return .array(items.map(\.sortedArrays).sorted { $0.encoded.lexicographicallyPrecedes($1.encoded) })
    }

    /// An error reply in RESP2 bytes.
    public static func errorBytes(_ message: String) -> [UInt8] { Array("-\(message)\r\n".utf8) }

    /// `+OK\r\n`.
    public static let ok: [UInt8] = Array("+OK\r\n".utf8)
}

/// Parses RESP2 replies from a byte stream.
public struct RESPReplyParser: Sendable {
    var buffer: [UInt8] = []
    var index = 0

    /// Creates a parser.
    public init() {}

    /// Appends received bytes.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        if index > 0 && index == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            index = 0
        } else if index > 1 << 20 {
            buffer.removeSubrange(0..<index)
            index = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete reply, or nil when more bytes are needed. Throws on malformed input.
    public mutating func next() throws -> RESPValue? {
        var i = index
        guard let value = try Self.parse(buffer, &i) else { return nil }
        index = i
        return value
    }

    /// Parses one complete reply from `bytes` (the whole array must be exactly one reply).
    public static func parseOne(_ bytes: [UInt8]) throws -> RESPValue {
        var i = 0
        guard let v = try parse(bytes, &i), i == bytes.count else { throw RESPParseError(message: "incomplete or trailing reply bytes") }
        return v
    }

    static func readLine(_ b: [UInt8], _ i: inout Int) -> String? {
        var j = i
        while j + 1 < b.count {
            if b[j] == 13 && b[j + 1] == 10 {
                let s = String(decoding: b[i..<j], as: UTF8.self)
                i = j + 2
                return s
            }
            j += 1
        }
        return nil
    }

    static func parse(_ b: [UInt8], _ i: inout Int) throws -> RESPValue? {
        guard i < b.count else { return nil }
        var j = i + 1
        let type = b[i]
        guard let line = readLine(b, &j) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            i = j
            return .simple(line)
        case UInt8(ascii: "-"):
            i = j
            return .error(line)
        case UInt8(ascii: ":"):
            guard let v = Int64(line) else { throw RESPParseError(message: "bad integer \(line)") }
            i = j
            return .integer(v)
        case UInt8(ascii: "$"):
            guard let n = Int(line) else { throw RESPParseError(message: "bad bulk length \(line)") }
            if n < 0 {
                i = j
                return .bulk(nil)
            }
            guard b.count >= j + n + 2 else { return nil }
            let v = Array(b[j..<(j + n)])
            i = j + n + 2
            return .bulk(v)
        case UInt8(ascii: "*"):
            guard let n = Int(line) else { throw RESPParseError(message: "bad array length \(line)") }
            if n < 0 {
                i = j
                return .array(nil)
            }
            var items: [RESPValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n {
                guard let item = try parse(b, &j) else { return nil }
                items.append(item)
            }
            i = j
            return .array(items)
        default:
            throw RESPParseError(message: "unknown reply type byte \(type)")
        }
    }
}

/// A reply that is not valid RESP2.
public struct RESPParseError: Error, Sendable, CustomStringConvertible {
    /// What was wrong.
    public var message: String
    public var description: String { "invalid RESP reply: \(message)" }
}
