#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A RESP2 reply.
public enum Reply: Sendable, Equatable {
    /// `+text`
    case simple(String)
    /// `-text` (the text includes the error code, e.g. "ERR ...").
    case error(String)
    /// `:n`
    case integer(Int64)
    /// `$n bytes` or `$-1` for nil.
    case bulk([UInt8]?)
    /// `*n ...` or `*-1` for nil.
    case array([Reply]?)

    /// `+OK`
    public static let ok = Reply.simple("OK")
    /// `$-1`
    public static let null = Reply.bulk(nil)
    /// `*-1`
    public static let nullArray = Reply.array(nil)
    /// `*0`
    public static let emptyArray = Reply.array([])
    /// The WRONGTYPE error.
    public static let wrongType = Reply.error("WRONGTYPE Operation against a key holding the wrong kind of value")
    /// The not-an-integer error.
    public static let notInteger = Reply.error("ERR value is not an integer or out of range")
    /// The syntax error.
    public static let syntax = Reply.error("ERR syntax error")

    /// A bulk reply from a string.
    public static func text(_ s: String) -> Reply { .bulk(Array(s.utf8)) }

    /// An array of bulk strings.
    public static func bulks(_ items: [[UInt8]]) -> Reply { .array(items.map { .bulk($0) }) }

    /// The arity error for a command (lower-case full name, e.g. "get" or "config|get").
    public static func arity(_ name: String) -> Reply {
        .error("ERR wrong number of arguments for '\(name)' command")
    }

    /// Appends the RESP2 encoding.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .simple(let s):
            out.append(UInt8(ascii: "+"))
            out.append(contentsOf: s.utf8)
        case .error(let s):
            out.append(UInt8(ascii: "-"))
            for b in s.utf8 { out.append(b == 13 || b == 10 ? 32 : b) }
        case .integer(let n):
            out.append(UInt8(ascii: ":"))
            out.append(contentsOf: String(n).utf8)
        case .bulk(nil):
            out.append(contentsOf: "$-1".utf8)
        case .bulk(let b?):
            out.append(UInt8(ascii: "$"))
            out.append(contentsOf: String(b.count).utf8)
            out.append(13)
            out.append(10)
            out.append(contentsOf: b)
        case .array(nil):
            out.append(contentsOf: "*-1".utf8)
        case .array(let items?):
            out.append(UInt8(ascii: "*"))
            out.append(contentsOf: String(items.count).utf8)
            out.append(13)
            out.append(10)
            for i in items { i.encode(into: &out) }
            return
        }
        out.append(13)
        out.append(10)
    }

    /// The RESP2 encoding.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }
}

/// Redis's number parsing and formatting rules.
public enum RedisNumber {
    /// Redis's `string2ll`: strict decimal, no spaces, no '+', no leading zeros, in range.
    public static func parseInt(_ b: [UInt8]) -> Int64? {
        let n = b.count
        if n == 0 || n >= 21 { return nil }
        if n == 1 && b[0] == UInt8(ascii: "0") { return 0 }
        var i = 0
        var negative = false
        if b[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
            if n == 1 { return nil }
        }
        guard b[i] >= UInt8(ascii: "1") && b[i] <= UInt8(ascii: "9") else { return nil }
        var v: UInt64 = 0
        while i < n {
            let c = b[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        if negative {
            if v > UInt64(Int64.max) + 1 { return nil }
            return v == UInt64(Int64.max) + 1 ? Int64.min : -Int64(v)
        }
        if v > UInt64(Int64.max) { return nil }
        return Int64(v)
    }

    /// Redis's `string2ld` (strtold, whole string, no leading space, not NaN, shorter than 5120 bytes; an
    /// underflow to a subnormal is accepted, one to zero or an overflow is not).
    public static func parseLongDouble(_ b: [UInt8]) -> Float80? {
        if b.isEmpty || b.count >= 5 * 1024 { return nil }
        if b.contains(0) { return nil }
        let first = b[0]
        if first == 32 || (first >= 9 && first <= 13) { return nil }
        var cstr = b.map { CChar(bitPattern: $0) }
        cstr.append(0)
        return cstr.withUnsafeBufferPointer { p -> Float80? in
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let v = strtold(p.baseAddress!, &end)
            guard let end, end == UnsafeMutablePointer(mutating: p.baseAddress! + b.count) else { return nil }
            if (errno == ERANGE && (v.isInfinite || v == 0)) || errno == EINVAL || v.isNaN { return nil }
            return v
        }
    }

    /// Redis's human-friendly long double format (`%.17Lf`, trailing zeros removed).
    public static func formatLongDouble(_ v: Float80) -> [UInt8] {
        if v.isInfinite { return Array((v > 0 ? "inf" : "-inf").utf8) }
        var buf = [CChar](repeating: 0, count: 5200)
        let n = withVaList([v]) { vsnprintf(&buf, buf.count, "%.17Lf", $0) }
        var out = buf[0..<Int(n)].map { UInt8(bitPattern: $0) }
        if out.contains(UInt8(ascii: ".")) {
            while out.last == UInt8(ascii: "0") { out.removeLast() }
            if out.last == UInt8(ascii: ".") { out.removeLast() }
        }
        if out == Array("-0".utf8) { out = [UInt8(ascii: "0")] }
        return out
    }

    /// Decimal bytes of an integer.
    @inlinable public static func format(_ v: Int64) -> [UInt8] { Array(String(v).utf8) }
}

/// Redis's glob matcher (`stringmatchlen` of Redis 7.0), binary safe, in O(pattern × string) time.
///
/// Gives Redis's answer for every pattern, malformed ones included: `?`, `*`, `[abc]`, `[^a]`, `[a-z]`
/// (bounds compared as signed chars, as Redis does, and swapped when reversed), and `\` escapes; an
/// unterminated `[` ends the class at the end of the pattern and a trailing `\` is literal. Like Redis, a
/// pattern fails when matching would have to go past its 1001st group of stars (Redis's nesting limit).
///
/// Redis's recursion gives up on every earlier star once the rest of the pattern after a later star has
/// failed at every position (its `skipLongerMatches`), so a failure only ever moves the most recent star on
/// by one character: this loop keeps that one star as its single backtracking point.
/// - Parameters:
///   - pattern: the glob pattern.
///   - string: the bytes to match.
///   - nocase: compare ASCII letters without case.
/// - Returns: true when the whole string matches the whole pattern.
public func globMatch(_ pattern: [UInt8], _ string: [UInt8], nocase: Bool = false) -> Bool {
    @inline(__always) func fold(_ c: UInt8) -> UInt8 { nocase && c >= 65 && c <= 90 ? c + 32 : c }
    let plen = pattern.count, slen = string.count
    var p = 0, s = 0
    // The pattern index just past the most recent group of stars, and where in the string its current try began.
    var starPattern = -1, starString = 0
    var starGroups = 0
    while true {
        var failed = false
        scan: while p < plen && s < slen {
            switch pattern[p] {
            case UInt8(ascii: "*"):
                while p + 1 < plen && pattern[p + 1] == UInt8(ascii: "*") { p += 1 }
                if p + 1 == plen { return true }
                if starGroups == 1000 { return false }
                starGroups += 1
                starPattern = p + 1
                starString = s
                p = starPattern
                continue scan
            case UInt8(ascii: "?"):
                s += 1
            case UInt8(ascii: "["):
                p += 1
                let not = p < plen && pattern[p] == UInt8(ascii: "^")
                if not { p += 1 }
                var matched = false
                let c = string[s]
                while true {
                    if p + 1 < plen && pattern[p] == UInt8(ascii: "\\") {
                        p += 1
                        if pattern[p] == c { matched = true }
                    } else if p < plen && pattern[p] == UInt8(ascii: "]") {
                        break
                    } else if p >= plen {
                        p -= 1
                        break
                    } else if p + 2 < plen && pattern[p + 1] == UInt8(ascii: "-") {
                        // C compares plain (signed) chars.
                        var start = Int(Int8(bitPattern: pattern[p])), end = Int(Int8(bitPattern: pattern[p + 2]))
                        var x = Int(Int8(bitPattern: c))
                        if start > end { swap(&start, &end) }
                        if nocase {
                            start = Int(Int8(bitPattern: fold(UInt8(bitPattern: Int8(start)))))
                            end = Int(Int8(bitPattern: fold(UInt8(bitPattern: Int8(end)))))
                            x = Int(Int8(bitPattern: fold(c)))
                        }
                        p += 2
                        if x >= start && x <= end { matched = true }
                    } else if fold(pattern[p]) == fold(c) {
                        matched = true
                    }
                    p += 1
                }
                if not { matched = !matched }
                if !matched {
                    failed = true
                    break scan
                }
                s += 1
            case UInt8(ascii: "\\"):
                if p + 1 < plen { p += 1 }
                if fold(pattern[p]) != fold(string[s]) {
                    failed = true
                    break scan
                }
                s += 1
            default:
                if fold(pattern[p]) != fold(string[s]) {
                    failed = true
                    break scan
                }
                s += 1
            }
            p += 1
            if s == slen {
                while p < plen && pattern[p] == UInt8(ascii: "*") { p += 1 }
                break
            }
        }
        if !failed && p == plen && s == slen { return true }
        // Try the rest of the pattern one character further on after the most recent star.
        guard starPattern >= 0 else { return false }
        starString += 1
        if starString >= slen { return false }
        p = starPattern
        s = starString
    }
}
