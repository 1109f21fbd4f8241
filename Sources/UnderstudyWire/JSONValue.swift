/// A JSON value with a deterministic encoding: object keys sorted, no insignificant whitespace.
///
/// Shared by the SDK (services build and parse bodies with it) and the supervisor (which compares HTTP bodies
/// under a service's rules), so both sides read JSON the same way. Numbers without a fraction or exponent that fit
/// an `Int64` are integers; every other number is a `Double`.
public enum JSONValue: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// An integer that fits 64 bits.
    case int(Int64)
    /// Any other number.
    case double(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object (encoded with its keys sorted by their UTF-8 bytes).
    case object([String: JSONValue])

    /// The member `key` of an object; nil for a missing key or a value that is not an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The string, when this is one.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer, when this is one.
    public var intValue: Int64? {
        if case .int(let i) = self { return i }
        return nil
    }

    /// The elements, when this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members, when this is an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The deterministic encoding (sorted keys, no whitespace).
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        write(into: &out)
        return out
    }

    /// The deterministic encoding as a string.
    public var text: String { String(decoding: encoded, as: UTF8.self) }

    /// Appends the deterministic encoding to `out`.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(let b): out.append(contentsOf: b ? Array("true".utf8) : Array("false".utf8))
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if d.isFinite {
                out.append(contentsOf: String(d).utf8)
            } else {
                out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
            }
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            // Sorted by UTF-8 bytes: the same order in every process and on every platform.
            let keys = o.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (i, k) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                o[k]!.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Parses a complete JSON text (surrounding whitespace allowed).
    /// - Throws: ``DecodingError`` naming the offset of the first problem.
    public init(parsing bytes: some Collection<UInt8>) throws(DecodingError) {
        var p = JSONParser(bytes: Array(bytes))
        p.skipWhitespace()
        let value = try p.parseValue(depth: 0)
        p.skipWhitespace()
        guard p.offset == p.bytes.count else { throw DecodingError("JSON: unexpected byte at offset \(p.offset)") }
        self = value
    }

    /// The values at a dotted path, where `*` matches every element of an array or member of an object
    /// (`""` is the value itself).
    public func values(at path: [Substring]) -> [JSONValue] {
        guard let first = path.first else { return [self] }
        let rest = Array(path.dropFirst())
        switch self {
        case .object(let o):
            if first == "*" { return o.values.flatMap { $0.values(at: rest) } }
            return o[String(first)].map { $0.values(at: rest) } ?? []
        case .array(let a) where first == "*":
            return a.flatMap { $0.values(at: rest) }
        default:
            return []
        }
    }

    /// A copy with the members at `path` removed (dotted, `*` for every element or member).
    public func removing(path: [Substring]) -> JSONValue {
        guard let first = path.first else { return self }
        let rest = Array(path.dropFirst())
        switch self {
        case .object(var o):
            if rest.isEmpty {
                if first == "*" { return .object([:]) }
                o[String(first)] = nil
                return .object(o)
            }
            if first == "*" {
                for (k, v) in o { o[k] = v.removing(path: rest) }
            } else if let v = o[String(first)] {
                o[String(first)] = v.removing(path: rest)
            }
            return .object(o)
        case .array(let a) where first == "*":
            return rest.isEmpty ? .array([]) : .array(a.map { $0.removing(path: rest) })
        default:
            return self
        }
    }

    /// A copy with the arrays at `path` sorted by their encoding (so that order does not matter in comparisons).
    public func sortingArrays(at path: [Substring]) -> JSONValue {
        guard let first = path.first else {
            if case .array(let a) = self {
                return .array(a.sorted { $0.encoded.lexicographicallyPrecedes($1.encoded) })
            }
            return self
        }
        let rest = Array(path.dropFirst())
        switch self {
        case .object(var o):
            if first == "*" {
                for (k, v) in o { o[k] = v.sortingArrays(at: rest) }
            } else if let v = o[String(first)] {
                o[String(first)] = v.sortingArrays(at: rest)
            }
            return .object(o)
        case .array(let a) where first == "*":
            return .array(a.map { $0.sortingArrays(at: rest) })
        default:
            return self
        }
    }

    /// Splits a dotted path (`"a.*.b"`); the empty path is the root.
    public static func path(_ text: String) -> [Substring] {
        text.isEmpty ? [] : text.split(separator: ".", omittingEmptySubsequences: false)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

/// A small recursive-descent JSON parser (RFC 8259), bounded in depth.
struct JSONParser {
    let bytes: [UInt8]
    var offset = 0
    static let maximumDepth = 512

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipWhitespace() {
        while offset < bytes.count, bytes[offset] == 0x20 || bytes[offset] == 0x0A || bytes[offset] == 0x0D || bytes[offset] == 0x09 {
            offset += 1
        }
    }

    func fail(_ what: String) -> DecodingError { DecodingError("JSON: \(what) at offset \(offset)") }

    mutating func expect(_ literal: String, _ value: JSONValue) throws(DecodingError) -> JSONValue {
        let l = Array(literal.utf8)
        guard offset + l.count <= bytes.count, Array(bytes[offset..<offset + l.count]) == l else { throw fail("invalid literal") }
        offset += l.count
        return value
    }

    mutating func parseValue(depth: Int) throws(DecodingError) -> JSONValue {
        guard depth < Self.maximumDepth else { throw fail("nesting too deep") }
        guard offset < bytes.count else { throw fail("unexpected end") }
        switch bytes[offset] {
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "["):
            offset += 1
            var out: [JSONValue] = []
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
                offset += 1
                return .array(out)
            }
            while true {
                skipWhitespace()
                out.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard offset < bytes.count else { throw fail("unterminated array") }
                if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                if bytes[offset] == UInt8(ascii: "]") { offset += 1; return .array(out) }
                throw fail("expected , or ]")
            }
        case UInt8(ascii: "{"):
            offset += 1
            var out: [String: JSONValue] = [:]
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return .object(out)
            }
            while true {
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try parseString()
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw fail("expected :") }
                offset += 1
                skipWhitespace()
                out[key] = try parseValue(depth: depth + 1)
                skipWhitespace()
                guard offset < bytes.count else { throw fail("unterminated object") }
                if bytes[offset] == UInt8(ascii: ",") { offset += 1; continue }
                if bytes[offset] == UInt8(ascii: "}") { offset += 1; return .object(out) }
                throw fail("expected , or }")
            }
        default:
            return try parseNumber()
        }
    }

    mutating func parseNumber() throws(DecodingError) -> JSONValue {
        let start = offset
        var integral = true
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let digitsStart = offset
        while offset < bytes.count, bytes[offset] >= 0x30 && bytes[offset] <= 0x39 { offset += 1 }
        guard offset > digitsStart else { throw fail("invalid value") }
        if bytes[digitsStart] == 0x30 && offset - digitsStart > 1 { throw fail("leading zero") }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            integral = false
            offset += 1
            let f = offset
            while offset < bytes.count, bytes[offset] >= 0x30 && bytes[offset] <= 0x39 { offset += 1 }
            guard offset > f else { throw fail("invalid fraction") }
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
            integral = false
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            let e = offset
            while offset < bytes.count, bytes[offset] >= 0x30 && bytes[offset] <= 0x39 { offset += 1 }
            guard offset > e else { throw fail("invalid exponent") }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if integral, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw fail("invalid number") }
        return .double(d)
    }

    mutating func parseString() throws(DecodingError) -> String {
        offset += 1  // the opening quote
        var out: [UInt8] = []
        while true {
            guard offset < bytes.count else { throw fail("unterminated string") }
            let b = bytes[offset]
            offset += 1
            switch b {
            case UInt8(ascii: "\""):
                guard let s = String(validating: out, as: UTF8.self) else { throw fail("invalid UTF-8 in string") }
                return s
            case UInt8(ascii: "\\"):
                guard offset < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[offset]
                offset += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard offset + 1 < bytes.count, bytes[offset] == 0x5C, bytes[offset + 1] == UInt8(ascii: "u") else {
                            throw fail("lone surrogate")
                        }
                        offset += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid escape") }
                    out.append(contentsOf: String(Character(u)).utf8)
                default: throw fail("invalid escape")
                }
            case 0..<0x20:
                throw fail("control character in string")
            default:
                out.append(b)
            }
        }
    }

    mutating func hex4() throws(DecodingError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[offset]
            offset += 1
            v <<= 4
            switch c {
            case 0x30...0x39: v |= UInt32(c - 0x30)
            case 0x41...0x46: v |= UInt32(c - 0x41 + 10)
            case 0x61...0x66: v |= UInt32(c - 0x61 + 10)
            default: throw fail("invalid \\u escape")
            }
        }
        return v
    }
}
