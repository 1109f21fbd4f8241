import KVStore
import Testing

/// A line-by-line port of Redis 7.0's `stringmatchlen_impl` (recursive, with `skipLongerMatches` and the
/// nesting limit; chars compared as signed C chars; reads past the end see the terminating NUL), the
/// reference ``globMatch(_:_:nocase:)`` must agree with.
func redisStringMatch(_ pattern: [UInt8], _ string: [UInt8]) -> Bool {
    var skipLongerMatches = false
    func at(_ a: [UInt8], _ i: Int) -> Int8 { i < a.count ? Int8(bitPattern: a[i]) : 0 }
    let star = Int8(UInt8(ascii: "*"))
    func impl(_ p0: Int, _ patternLen0: Int, _ s0: Int, _ stringLen0: Int, _ nesting: Int) -> Bool {
        var p = p0, patternLen = patternLen0, s = s0, stringLen = stringLen0
        if nesting > 1000 { return false }
        while patternLen > 0 && stringLen > 0 {
            switch UInt8(bitPattern: at(pattern, p)) {
            case UInt8(ascii: "*"):
                while patternLen > 0 && at(pattern, p + 1) == star {
                    p += 1
                    patternLen -= 1
                }
                if patternLen == 1 { return true }
                while stringLen > 0 {
                    if impl(p + 1, patternLen - 1, s, stringLen, nesting + 1) { return true }
                    if skipLongerMatches { return false }
                    s += 1
                    stringLen -= 1
                }
                skipLongerMatches = true
                return false
            case UInt8(ascii: "?"):
                s += 1
                stringLen -= 1
            case UInt8(ascii: "["):
                p += 1
                patternLen -= 1
                let not = at(pattern, p) == Int8(UInt8(ascii: "^"))
                if not {
                    p += 1
                    patternLen -= 1
                }
                var match = false
                while true {
                    if at(pattern, p) == Int8(UInt8(ascii: "\\")) && patternLen >= 2 {
                        p += 1
                        patternLen -= 1
                        if at(pattern, p) == at(string, s) { match = true }
                    } else if at(pattern, p) == Int8(UInt8(ascii: "]")) {
                        break
                    } else if patternLen == 0 {
                        p -= 1
                        patternLen += 1
                        break
                    } else if patternLen >= 3 && at(pattern, p + 1) == Int8(UInt8(ascii: "-")) {
                        var start = Int(at(pattern, p)), end = Int(at(pattern, p + 2))
                        let c = Int(at(string, s))
                        if start > end { swap(&start, &end) }
                        p += 2
                        patternLen -= 2
                        if c >= start && c <= end { match = true }
                    } else if at(pattern, p) == at(string, s) {
                        match = true
                    }
                    p += 1
                    patternLen -= 1
                }
                if not { match = !match }
                if !match { return false }
                s += 1
                stringLen -= 1
            case UInt8(ascii: "\\"):
                if patternLen >= 2 {
                    p += 1
                    patternLen -= 1
                }
                fallthrough
            default:
                if at(pattern, p) != at(string, s) { return false }
                s += 1
                stringLen -= 1
            }
            p += 1
            patternLen -= 1
            if stringLen == 0 {
                while at(pattern, p) == star {
                    p += 1
                    patternLen -= 1
                }
                break
            }
        }
        return patternLen == 0 && stringLen == 0
    }
    return impl(0, pattern.count, 0, string.count, 0)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Patterns that are malformed, escape-heavy, or exponential for a naive backtracking matcher.
let hostilePatterns: [[UInt8]] = {
    var p: [[UInt8]] = [
        "", "*", "**", "?", "??", "[", "[^", "[]", "[]]", "[]a]", "[^]]", "[^]", "[a-", "[a-]", "[-a]", "[a-c]",
        "[c-a]", "[\\]", "[\\", "[\\]]", "\\", "a\\", "\\*", "\\[", "\\\\", "[[]", "[^a-z]", "*[", "*\\", "a*[",
        "[*", "?*?", "*?*", "a*b*c", "[a]*", "*]", "^", "-", "a[]", "[a-b-c]", "[z-a-]", "[--]", "[\\-]",
        "*a", "a*", "*a*", "[!a]", "a?", "?a", "[?]", "[*]", "a\\", "\\a", "[a\\", "[^\\",
    ].map(bytes)
    p += [[0x5B, 0x80, 0x2D, 0xFF, 0x5D], [0x5B, 0x61, 0x2D, 0xFF, 0x5D], [0x5B, 0xFF, 0x2D, 0x61, 0x5D],
          [0x5B, 0x5E, 0x80, 0x2D, 0xFF, 0x5D], [0x2A, 0xFF], [0x5B, 0x00, 0x2D, 0x7F, 0x5D], [0x00, 0x2A]]
    p.append(bytes(String(repeating: "a*", count: 20) + "b"))
    p.append(bytes(String(repeating: "*a", count: 20) + "*b"))
    p.append(bytes(String(repeating: "?*", count: 30) + "c"))
    p.append(bytes(String(repeating: "*[a-z]", count: 25) + "x"))
    p.append(bytes(String(repeating: "*a", count: 1000) + "*"))
    p.append(bytes(String(repeating: "*a", count: 1001) + "*"))
    p.append(bytes(String(repeating: "a*", count: 1000) + "a"))
    p.append(bytes(String(repeating: "a*", count: 1001) + "a"))
    p.append(bytes(String(repeating: "a*", count: 1001)))
    p.append(bytes(String(repeating: "*", count: 5000) + "a"))
    return p
}()

/// Keys the patterns are matched against (the empty key, specials, high bytes, long runs of 'a').
let hostileKeys: [[UInt8]] = {
    var k: [[UInt8]] = ["", "a", "ab", "abc", "a]", "[", "]", "\\", "-", "^", "*", "?", "a-b", "A", "z", "b", "x\\y",
                        "[a]", "!", "aa", "ba"].map(bytes)
    k += [[0x80], [0xFF], [0x00], [0x7F], [0x61, 0xFF]]
    k.append(bytes(String(repeating: "a", count: 40)))
    k.append(bytes(String(repeating: "a", count: 1200)))
    k.append(bytes(String(repeating: "a", count: 60) + "x"))
    return k
}()

@Suite("Glob patterns")
struct GlobMatchTests {
    @Test("hostile patterns give the answers of Redis's own algorithm")
    func hostile() {
        var differences: [String] = []
        for p in hostilePatterns {
            for k in hostileKeys where globMatch(p, k) != redisStringMatch(p, k) {
                differences.append("\(String(decoding: p.prefix(40), as: UTF8.self).debugDescription) vs \(k.prefix(20))")
            }
        }
        #expect(differences.isEmpty, "\(differences.prefix(20))")
    }

    @Test("random patterns agree with Redis's algorithm", arguments: [1, 2, 3] as [UInt64])
    func random(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        let alphabet: [UInt8] = Array("ab*?[]^-\\".utf8) + [0x80, 0xFF, 0x00]
        let keyAlphabet: [UInt8] = Array("ab]-\\[*".utf8) + [0x80, 0xFF]
        var differences: [String] = []
        for _ in 0..<20_000 {
            let pattern = (0..<rng.int(12)).map { _ in rng.pick(alphabet) }
            let key = (0..<rng.int(12)).map { _ in rng.pick(keyAlphabet) }
            if globMatch(pattern, key) != redisStringMatch(pattern, key), differences.count < 20 {
                differences.append("\(pattern) vs \(key)")
            }
        }
        #expect(differences.isEmpty, "\(differences)")
    }

    @Test("exponential patterns answer correctly (Redis's nesting limit included)")
    func pathological() {
        let a40 = bytes(String(repeating: "a", count: 40))
        let a1200 = bytes(String(repeating: "a", count: 1200))
        #expect(!globMatch(bytes(String(repeating: "a*", count: 20) + "b"), a40))
        #expect(!globMatch(bytes(String(repeating: "*a", count: 30) + "*b"), bytes(String(repeating: "a", count: 5000))))
        #expect(globMatch(bytes(String(repeating: "a*", count: 20) + "a"), a40))
        #expect(globMatch(bytes(String(repeating: "a*", count: 1000) + "a"), a1200))
        #expect(!globMatch(bytes(String(repeating: "a*", count: 1001) + "a"), a1200))
        #expect(globMatch(bytes(String(repeating: "a*", count: 1001)), a1200))
        #expect(globMatch(bytes(String(repeating: "*a", count: 1000) + "*"), a1200))
        #expect(!globMatch(bytes(String(repeating: "*a", count: 1001) + "*"), a1200))
        #expect(!globMatch(bytes(String(repeating: "*a", count: 1000)), a40))
    }
}
