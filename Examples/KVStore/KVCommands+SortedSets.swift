#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import UnderstudyKit

/// Redis's double parsing and printing for sorted-set scores.
enum RedisDouble {
    /// `strtod` over the bytes up to the first NUL; returns the value and whether it consumed them all
    /// (nil when not even a prefix was read is reported as (0, consumed nothing)).
    static func strtodPrefix(_ b: ArraySlice<UInt8>) -> (value: Double, rest: Int, rangeError: Bool) {
        var cstr = b.prefix { $0 != 0 }.map { CChar(bitPattern: $0) }
        let length = cstr.count
        cstr.append(0)
        return cstr.withUnsafeBufferPointer { p in
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let v = strtod(p.baseAddress!, &end)
            let used = end.map { $0 - UnsafeMutablePointer(mutating: p.baseAddress!) } ?? 0
            return (v, length - used, errno == ERANGE)
        }
    }

    /// Redis's `getDoubleFromObject`: the whole string, no leading space, no overflow or underflow to zero, not NaN.
    static func parse(_ b: [UInt8]) -> Double? {
        guard let first = b.first, !(first == 32 || (first >= 9 && first <= 13)) else { return nil }
        let (v, rest, rangeError) = strtodPrefix(b[...])
        // An embedded NUL stops strtod early: the rest is then not consumed.
        if rest != 0 || b.contains(0) { return nil }
        if rangeError && (v.isInfinite || v == 0) { return nil }
        if v.isNaN { return nil }
        return v
    }

    /// Redis's `%.17g` printing of a double (`inf`, `-inf`, `-0` included).
    static func format(_ d: Double) -> [UInt8] {
        if d.isInfinite { return Array((d > 0 ? "inf" : "-inf").utf8) }
        var buf = [CChar](repeating: 0, count: 64)
        let n = withVaList([d]) { vsnprintf(&buf, buf.count, "%.17g", $0) }
        return buf[0..<Int(n)].map { UInt8(bitPattern: $0) }
    }
}

/// A score range (`zslParseRange`): `(` makes a bound exclusive.
struct ScoreRange {
    var min: Double, max: Double
    var minExclusive: Bool, maxExclusive: Bool

    /// Parses Redis's range items: strtod up to the end of the C string (so "" and " 1" are accepted, as in
    /// Redis), NaN refused.
    init?(_ minArg: [UInt8], _ maxArg: [UInt8]) {
        func item(_ b: [UInt8]) -> (Double, Bool)? {
            let exclusive = b.first == UInt8(ascii: "(")
            let (v, rest, _) = RedisDouble.strtodPrefix(exclusive ? b.dropFirst() : b[...])
            if rest != 0 || v.isNaN { return nil }
            return (v, exclusive)
        }
        guard let (lo, loEx) = item(minArg), let (hi, hiEx) = item(maxArg) else { return nil }
        (min, minExclusive, max, maxExclusive) = (lo, loEx, hi, hiEx)
    }

    func aboveMin(_ v: Double) -> Bool { minExclusive ? v > min : v >= min }
    func belowMax(_ v: Double) -> Bool { maxExclusive ? v < max : v <= max }

    /// The ranks in range, in ascending order (O(log n)).
    func ranks(in z: KVSortedSet) -> Range<Int> {
        // Below the range: scores under min (exclusive: not above it); in or below: scores under max (inclusive:
        // not above it).
        let lo = z.rank(ofScore: min, inclusive: minExclusive)
        let hi = z.rank(ofScore: max, inclusive: !maxExclusive)
        return lo..<Swift.max(lo, hi)
    }
}

/// A lexicographic range (`zslParseLexRange`): `[x`, `(x`, `-`, `+`.
struct LexRange {
    enum Bound { case minusInfinity, plusInfinity, value([UInt8]) }
    var min: Bound, max: Bound
    var minExclusive: Bool, maxExclusive: Bool

    init?(_ minArg: [UInt8], _ maxArg: [UInt8]) {
        func item(_ b: [UInt8]) -> (Bound, Bool)? {
            guard let c = b.first else { return nil }
            switch c {
            case UInt8(ascii: "+"): return b.count > 1 && b[1] != 0 ? nil : (.plusInfinity, true)
            case UInt8(ascii: "-"): return b.count > 1 && b[1] != 0 ? nil : (.minusInfinity, true)
            case UInt8(ascii: "("): return (.value(Array(b.dropFirst())), true)
            case UInt8(ascii: "["): return (.value(Array(b.dropFirst())), false)
            default: return nil
            }
        }
        guard let (lo, loEx) = item(minArg), let (hi, hiEx) = item(maxArg) else { return nil }
        (min, minExclusive, max, maxExclusive) = (lo, loEx, hi, hiEx)
    }

    /// `sdscmplex`: the infinities compare below and above every string.
    static func compare(_ a: Bound, _ b: Bound) -> Int {
        switch (a, b) {
        case (.minusInfinity, .minusInfinity), (.plusInfinity, .plusInfinity): return 0
        case (.minusInfinity, _), (_, .plusInfinity): return -1
        case (.plusInfinity, _), (_, .minusInfinity): return 1
        case (.value(let x), .value(let y)): return x == y ? 0 : (bytesLess(x, y) ? -1 : 1)
        }
    }

    var isEmpty: Bool {
        let c = Self.compare(min, max)
        return c > 0 || (c == 0 && (minExclusive || maxExclusive))
    }

    func aboveMin(_ m: [UInt8]) -> Bool {
        let c = Self.compare(.value(m), min)
        return minExclusive ? c > 0 : c >= 0
    }

    func belowMax(_ m: [UInt8]) -> Bool {
        let c = Self.compare(.value(m), max)
        return maxExclusive ? c < 0 : c <= 0
    }

    /// The ranks in range, in ascending order (O(log n)). Members are assumed sorted, i.e. all scores equal, as
    /// Redis does: the bounds are placed among the elements with the lowest score.
    func ranks(in z: KVSortedSet) -> Range<Int> {
        if isEmpty || z.isEmpty { return 0..<0 }
        let score = z.order.first!.key.score
        // The elements before a bound: a member above x is one not below x + [0], its successor in byte order.
        func rank(_ bound: Bound, after: Bool) -> Int {
            switch bound {
            case .minusInfinity: return 0
            case .plusInfinity: return z.count
            case .value(let x): return z.rank(ofScore: score, member: after ? x + [0] : x)
            }
        }
        let lo = rank(min, after: minExclusive)
        let hi = rank(max, after: !maxExclusive)
        return lo..<Swift.max(lo, hi)
    }
}

extension Reply {
    static let notFloat = Reply.error("ERR value is not a valid float")
    static let rangeNotFloat = Reply.error("ERR min or max is not a float")
    static let lexRangeInvalid = Reply.error("ERR min or max not valid string range item")
    static func score(_ d: Double) -> Reply { .bulk(RedisDouble.format(d)) }
}

/// What a ZRANGE form ranges over.
enum ZRangeKind { case rank, score, lex }

/// How ZUNION and ZINTER combine the scores of a member.
enum ZAggregate { case sum, min, max }

/// One input of ZUNION/ZINTER/ZDIFF: a sorted set, or a set whose members score 1 (or nothing: a missing key).
struct ZSetOperand {
    var zset: KVSortedSet?
    var set: KVSet?
    var weight: Double = 1

    var count: Int { zset?.count ?? set?.count ?? 0 }

    /// The score of a member, or nil when absent (O(log n)).
    func score(_ m: TrackedKey) -> Double? {
        if let zset { return zset.scores[m] }
        if let set { return set.contains(m) ? 1 : nil }
        return nil
    }

    /// Visits the members with their scores in scan order until `body` returns false.
    func forEach(_ body: (TrackedKey, Double) -> Bool) {
        if let zset {
            for (m, s) in zset.scores.entries() where !body(m, s) { return }
        } else if let set {
            for (m, _) in set.members.entries() where !body(m, 1) { return }
        }
    }
}

extension KVStorage {
    mutating func sortedSetCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "zadd": return cmdZadd(a, incrOnly: false, &env)
        case "zincrby": return cmdZadd(a, incrOnly: true, &env)
        case "zrem":
            switch kind(a[1], &env) {
            case nil: return .integer(0)
            case .zset:
                let n = mutateZset(a[1], &env, create: false) { z in a.dropFirst(2).reduce(0) { $0 + (z.remove($1) != nil ? 1 : 0) } }
                return .integer(Int64(n ?? 0))
            default: return .wrongType
            }
        case "zcard": return Self.withZset(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64($0.count)) }
        case "zscore": return Self.withZset(lookup(a[1], &env), missing: .null) { z in z.score(a[2]).map(Reply.score) ?? .null }
        case "zmscore":
            return Self.withZset(lookup(a[1], &env), missing: .array(a.dropFirst(2).map { _ in .null })) { z in
                .array(a.dropFirst(2).map { m in z.score(m).map(Reply.score) ?? .null })
            }
        case "zrank", "zrevrank":
            return Self.withZset(lookup(a[1], &env), missing: .null) { z in
                guard let r = z.rank(a[2]) else { return .null }
                return .integer(Int64(name == "zrank" ? r : z.count - 1 - r))
            }
        case "zcount":
            guard let range = ScoreRange(a[2], a[3]) else { return .rangeNotFloat }
            return Self.withZset(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64(range.ranks(in: $0).count)) }
        case "zlexcount":
            guard let range = LexRange(a[2], a[3]) else { return .lexRangeInvalid }
            return Self.withZset(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64(range.ranks(in: $0).count)) }
        case "zrange": return cmdZrange(a, keyIndex: 1, store: false, by: nil, reverse: nil, &env)
        case "zrangestore": return cmdZrange(a, keyIndex: 2, store: true, by: nil, reverse: nil, &env)
        case "zrevrange": return cmdZrange(a, keyIndex: 1, store: false, by: .rank, reverse: true, &env)
        case "zrangebyscore": return cmdZrange(a, keyIndex: 1, store: false, by: .score, reverse: false, &env)
        case "zrevrangebyscore": return cmdZrange(a, keyIndex: 1, store: false, by: .score, reverse: true, &env)
        case "zrangebylex": return cmdZrange(a, keyIndex: 1, store: false, by: .lex, reverse: false, &env)
        case "zrevrangebylex": return cmdZrange(a, keyIndex: 1, store: false, by: .lex, reverse: true, &env)
        case "zremrangebyrank", "zremrangebyscore", "zremrangebylex": return cmdZremrange(name, a, &env)
        case "zpopmin", "zpopmax":
            if a.count > 3 { return .syntax }
            var count = 1
            if a.count == 3 {
                guard let n = RedisNumber.parseInt(a[2]), n >= 0 else {
                    return .error("ERR value is out of range, must be positive")
                }
                count = Int(min(n, Int64(Int32.max)))
            }
            switch kind(a[1], &env) {
            case nil: return .emptyArray
            case .zset: if count == 0 { return .emptyArray }
            default: return .wrongType
            }
            let popped = mutateZset(a[1], &env, create: false) { z -> [KVSortedSet.Element] in
                let n = min(count, z.count)
                let range = name == "zpopmin" ? 0..<n : (z.count - n)..<z.count
                var out = z.removeRanks(range)
                if name == "zpopmax" { out.reverse() }
                return out
            } ?? []
            return .array(popped.flatMap { [.bulk($0.member), .score($0.score)] })
        case "zrandmember": return cmdZrandmember(a, &env)
        case "zunion", "zinter", "zdiff", "zunionstore", "zinterstore", "zdiffstore", "zintercard":
            return cmdZsetOperation(name, a, &env)
        case "zscan":
            guard let cursor = parseCursor(a[2]) else { return .error("ERR invalid cursor") }
            switch lookup(a[1], &env) {
            case nil: return .array([.text("0"), .emptyArray])
            case .zset(let z)?:
                return scanCollection(a, optionsFrom: 3, cursor: cursor, small: encodingName(.zset(z)) == "listpack",
                                      whole: { z.elements.map { ($0.member, [.bulk($0.member), .score($0.score)]) } },
                                      tree: z.scores) { k, s in let m = k.bytes; return (m, [.bulk(m), .score(s)]) }
            default: return .wrongType
            }
        default: return .error("ERR unknown command '\(name)'")
        }
    }

    static func withZset(_ value: KVValue?, missing: Reply, _ body: (KVSortedSet) -> Reply) -> Reply {
        switch value {
        case nil: return missing
        case .zset(let z)?: return body(z)
        default: return .wrongType
        }
    }

    /// Mutates a sorted set in place (creating it when `create`); nil on WRONGTYPE or when absent and not created.
    /// Deletes the key when the set ends up empty.
    mutating func mutateZset<R>(_ key: [UInt8], _ env: inout KVEnvironment, create: Bool,
                                _ body: (inout KVSortedSet) -> R) -> R? {
        switch kind(key, &env) {
        case nil: if !create { return nil }
        case .zset: break
        default: return nil
        }
        return modify(key, now: env.now) { v -> R? in
            var z: KVSortedSet
            if case .zset(let x)? = v { z = x } else { z = KVSortedSet() }
            v = nil
            let r = body(&z)
            if !z.isEmpty { v = .zset(z) }
            return r
        }
    }

    /// Replaces `key` with a sorted set (deleting it when empty), as a STORE form does; replies with the count.
    mutating func storeZset(_ key: [UInt8], _ z: KVSortedSet, _ env: KVEnvironment) -> Reply {
        delete(key)
        if !z.isEmpty { write(key, .zset(z), expireAt: kvNoExpiry, now: env.now) }
        return .integer(Int64(z.count))
    }

    mutating func cmdZadd(_ a: [[UInt8]], incrOnly: Bool, _ env: inout KVEnvironment) -> Reply {
        var nx = false, xx = false, gt = false, lt = false, ch = false, incr = incrOnly
        var j = 2
        if !incrOnly {
            while j < a.count {
                if eq(a[j], "nx") { nx = true } else if eq(a[j], "xx") { xx = true } else if eq(a[j], "gt") {
                    gt = true
                } else if eq(a[j], "lt") { lt = true } else if eq(a[j], "ch") { ch = true } else if eq(a[j], "incr") {
                    incr = true
                } else { break }
                j += 1
            }
            let elements = a.count - j
            if elements == 0 || elements % 2 == 1 { return .syntax }
            if nx && xx { return .error("ERR XX and NX options at the same time are not compatible") }
            if (gt && nx) || (lt && nx) || (gt && lt) {
                return .error("ERR GT, LT, and/or NX options at the same time are not compatible")
            }
            if incr && elements > 2 { return .error("ERR INCR option supports a single increment-element pair") }
        }
        var pairs: [(Double, [UInt8])] = []
        var k = j
        while k < a.count {
            guard let s = RedisDouble.parse(a[k]) else { return .notFloat }
            pairs.append((s, a[k + 1]))
            k += 2
        }
        switch kind(a[1], &env) {
        case nil: if xx { return incr ? .null : .integer(0) }
        case .zset: break
        default: return .wrongType
        }
        let reply = mutateZset(a[1], &env, create: true) { z -> Reply in
            var added = 0, updated = 0, processed = 0
            var newScore = 0.0
            for (score, member) in pairs {
                if let current = z.score(member) {
                    if nx { continue }
                    var s = score
                    if incr {
                        s += current
                        if s.isNaN { return .error("ERR resulting score is not a number (NaN)") }
                    }
                    if (lt && s >= current) || (gt && s <= current) { continue }
                    newScore = s
                    processed += 1
                    if s != current {
                        z.set(member, s)
                        updated += 1
                    }
                } else {
                    if xx { continue }
                    z.set(member, score)
                    newScore = score
                    added += 1
                    processed += 1
                }
            }
            if incr { return processed > 0 ? .score(newScore) : .null }
            return .integer(Int64(ch ? added + updated : added))
        }
        return reply ?? .wrongType
    }

    mutating func cmdZrange(_ a: [[UInt8]], keyIndex: Int, store: Bool, by fixedKind: ZRangeKind?, reverse fixedReverse: Bool?,
                            _ env: inout KVEnvironment) -> Reply {
        var by = fixedKind
        var reverse = fixedReverse
        var withScores = false
        var offset: Int64 = 0, limit: Int64 = -1
        var j = keyIndex + 3
        while j < a.count {
            let left = a.count - j - 1
            if !store && eq(a[j], "withscores") {
                withScores = true
            } else if eq(a[j], "limit") && left >= 2 {
                guard let o = RedisNumber.parseInt(a[j + 1]), let l = RedisNumber.parseInt(a[j + 2]) else {
                    return .notInteger
                }
                (offset, limit) = (o, l)
                j += 2
            } else if reverse == nil && eq(a[j], "rev") {
                reverse = true
            } else if by == nil && eq(a[j], "bylex") {
                by = .lex
            } else if by == nil && eq(a[j], "byscore") {
                by = .score
            } else {
                return .syntax
            }
            j += 1
        }
        let kind = by ?? .rank
        let rev = reverse ?? false
        if limit != -1 && kind == .rank {
            return .error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX")
        }
        if withScores && kind == .lex {
            return .error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
        }
        var minArg = a[keyIndex + 1], maxArg = a[keyIndex + 2]
        if rev && kind != .rank { swap(&minArg, &maxArg) }
        var start: Int64 = 0, end: Int64 = 0
        var scoreRange: ScoreRange?
        var lexRange: LexRange?
        switch kind {
        case .rank:
            guard let s = RedisNumber.parseInt(minArg), let e = RedisNumber.parseInt(maxArg) else { return .notInteger }
            (start, end) = (s, e)
        case .score:
            guard let r = ScoreRange(minArg, maxArg) else { return .rangeNotFloat }
            scoreRange = r
        case .lex:
            guard let r = LexRange(minArg, maxArg) else { return .lexRangeInvalid }
            lexRange = r
        }
        let z: KVSortedSet
        switch lookup(a[keyIndex], &env) {
        case nil:
            return store ? storeZset(a[1], KVSortedSet(), env) : .emptyArray
        case .zset(let x)?: z = x
        default: return .wrongType
        }
        var picked: [KVSortedSet.Element] = []
        switch kind {
        case .rank:
            let n = Int64(z.count)
            if start < 0 { start = n + start }
            if end < 0 { end = n + end }
            if start < 0 { start = 0 }
            if !(start > end || start >= n) {
                if end >= n { end = n - 1 }
                let range = rev ? (z.count - 1 - Int(end))..<(z.count - Int(start)) : Int(start)..<(Int(end) + 1)
                picked = z.elements(range)
                if rev { picked.reverse() }
            }
        case .score, .lex:
            let range = kind == .score ? scoreRange!.ranks(in: z) : lexRange!.ranks(in: z)
            if offset >= 0 && offset < Int64(range.count) && limit != 0 {
                let available = range.count - Int(offset)
                let take = limit < 0 ? available : Int(min(Int64(available), limit))
                if rev {
                    let top = range.upperBound - Int(offset)
                    picked = z.elements((top - take)..<top).reversed()
                } else {
                    let bottom = range.lowerBound + Int(offset)
                    picked = z.elements(bottom..<(bottom + take))
                }
            }
        }
        if store {
            var out = KVSortedSet()
            for e in picked { out.set(e.member, e.score) }
            return storeZset(a[1], out, env)
        }
        return .array(picked.flatMap { withScores ? [.bulk($0.member), .score($0.score)] : [.bulk($0.member)] })
    }

    mutating func cmdZremrange(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var start: Int64 = 0, end: Int64 = 0
        var scoreRange: ScoreRange?
        var lexRange: LexRange?
        switch name {
        case "zremrangebyrank":
            guard let s = RedisNumber.parseInt(a[2]), let e = RedisNumber.parseInt(a[3]) else { return .notInteger }
            (start, end) = (s, e)
        case "zremrangebyscore":
            guard let r = ScoreRange(a[2], a[3]) else { return .rangeNotFloat }
            scoreRange = r
        default:
            guard let r = LexRange(a[2], a[3]) else { return .lexRangeInvalid }
            lexRange = r
        }
        switch kind(a[1], &env) {
        case nil: return .integer(0)
        case .zset: break
        default: return .wrongType
        }
        let removed = mutateZset(a[1], &env, create: false) { z -> Int in
            let range: Range<Int>
            if let scoreRange {
                range = scoreRange.ranks(in: z)
            } else if let lexRange {
                range = lexRange.ranks(in: z)
            } else {
                let n = Int64(z.count)
                if start < 0 { start = n + start }
                if end < 0 { end = n + end }
                if start < 0 { start = 0 }
                if start > end || start >= n { return 0 }
                if end >= n { end = n - 1 }
                range = Int(start)..<(Int(end) + 1)
            }
            z.removeRanks(range)
            return range.count
        } ?? 0
        return .integer(Int64(removed))
    }

    mutating func cmdZrandmember(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count >= 3 {
            guard let l = RedisNumber.parseInt(a[2]) else { return .notInteger }
            if l == .min {
                return .error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
            }
            if a.count > 4 || (a.count == 4 && !eq(a[3], "withscores")) { return .syntax }
            let withScores = a.count == 4
            if withScores && (l < -(Int64.max / 2) || l > Int64.max / 2) { return .error("ERR value is out of range") }
            return Self.withZset(lookup(a[1], &env), missing: .emptyArray) { z in
                func item(_ e: KVSortedSet.Element) -> [Reply] {
                    withScores ? [.bulk(e.member), .score(e.score)] : [.bulk(e.member)]
                }
                if l == 0 { return .emptyArray }
                if l < 0 {
                    let bound = bulkReplySize(length: z.longestMember) + (withScores ? maxScoreReplySize : 0)
                    let error = repeatedPicksTooLarge(count: -l, items: withScores ? 2 : 1, largest: bound) {
                        var most = 0
                        z.scores.forEach { m, s in
                            most = max(most, bulkReplySize(length: m.byteCount)
                                + (withScores ? bulkReplySize(RedisDouble.format(s)) : 0))
                        }
                        return most
                    }
                    if let error { return error }
                    var out: [Reply] = []
                    out.reserveCapacity(Int(-l) * (withScores ? 2 : 1))
                    for _ in 0..<Int(-l) { out += item(z.element(atScanRank: randomIndex(z.count, &env))) }
                    return .array(out)
                }
                if l >= Int64(z.count) { return .array(z.elements.flatMap(item)) }
                return .array(distinctIndices(Int(l), of: z.count, &env).flatMap { item(z.element(atScanRank: $0)) })
            }
        }
        return Self.withZset(lookup(a[1], &env), missing: .null) { z in
            .bulk(z.element(atScanRank: randomIndex(z.count, &env)).member)
        }
    }

    /// ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD (`zunionInterDiffGenericCommand`).
    mutating func cmdZsetOperation(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let store = name.hasSuffix("store")
        let cardinality = name == "zintercard"
        let op = name.hasPrefix("zunion") ? 0 : (name.hasPrefix("zinter") ? 1 : 2)
        let numkeysIndex = store ? 2 : 1
        guard let setnum = RedisNumber.parseInt(a[numkeysIndex]) else { return .notInteger }
        if setnum < 1 { return .error("ERR at least 1 input key is needed for '\(name)' command") }
        if setnum > Int64(a.count - (numkeysIndex + 1)) { return .syntax }
        var inputs: [ZSetOperand] = []
        var j = numkeysIndex + 1
        for _ in 0..<Int(setnum) {
            switch lookup(a[j], &env) {
            case nil: inputs.append(ZSetOperand())
            case .zset(let z)?: inputs.append(ZSetOperand(zset: z))
            case .set(let s)?: inputs.append(ZSetOperand(set: s))
            default: return .wrongType
            }
            j += 1
        }
        var aggregate = ZAggregate.sum
        var withScores = false
        var limit: Int64 = 0
        while j < a.count {
            let remaining = a.count - j
            if op != 2 && !cardinality && remaining >= Int(setnum) + 1 && eq(a[j], "weights") {
                j += 1
                for i in 0..<Int(setnum) {
                    guard let w = RedisDouble.parse(a[j]) else { return .error("ERR weight value is not a float") }
                    inputs[i].weight = w
                    j += 1
                }
            } else if op != 2 && !cardinality && remaining >= 2 && eq(a[j], "aggregate") {
                if eq(a[j + 1], "sum") { aggregate = .sum } else if eq(a[j + 1], "min") { aggregate = .min } else if eq(a[j + 1], "max") {
                    aggregate = .max
                } else { return .syntax }
                j += 2
            } else if !store && !cardinality && eq(a[j], "withscores") {
                withScores = true
                j += 1
            } else if cardinality && remaining >= 2 && eq(a[j], "limit") {
                guard let l = RedisNumber.parseInt(a[j + 1]), l >= 0 else { return .error("ERR LIMIT can't be negative") }
                limit = l
                j += 2
            } else {
                return .syntax
            }
        }
        func combine(_ target: inout Double, _ value: Double) {
            switch aggregate {
            case .sum:
                target += value
                if target.isNaN { target = 0 }
            case .min: target = value < target ? value : target
            case .max: target = value > target ? value : target
            }
        }
        var result: [TrackedKey: Double] = [:]
        if op == 1 {
            // Smallest input first, as Redis iterates (a stable sort keeps the order of equal sizes).
            let sorted = inputs.enumerated().sorted { ($0.element.count, $0.offset) < ($1.element.count, $1.offset) }.map(\.element)
            var found = 0
            sorted[0].forEach { m, first in
                var score = sorted[0].weight * first
                if score.isNaN { score = 0 }
                for other in sorted.dropFirst() {
                    guard let v = other.score(m) else { return true }
                    combine(&score, v * other.weight)
                }
                if cardinality {
                    found += 1
                    if limit > 0 && found >= limit { return false }
                } else {
                    result[m] = score
                }
                return true
            }
            if cardinality { return .integer(Int64(found)) }
        } else if op == 0 {
            let sorted = inputs.enumerated().sorted { ($0.element.count, $0.offset) < ($1.element.count, $1.offset) }.map(\.element)
            for input in sorted {
                input.forEach { m, s in
                    var score = input.weight * s
                    if score.isNaN { score = 0 }
                    if result[m] == nil { result[m] = score } else { combine(&result[m]!, score) }
                    return true
                }
            }
        } else {
            inputs[0].forEach { m, s in
                if !inputs.dropFirst().contains(where: { $0.score(m) != nil }) { result[m] = s }
                return true
            }
        }
        if store {
            var z = KVSortedSet()
            for (m, s) in result { z.set(m, s) }
            return storeZset(a[1], z, env)
        }
        // Replied from the unconverted result, so a -0 score prints as Redis prints it.
        let ordered = result.sorted { $0.value < $1.value || ($0.value == $1.value && bytesLess($0.key, $1.key)) }
        return .array(ordered.flatMap { e -> [Reply] in
            let m = e.key.bytes
            return withScores ? [.bulk(m), .score(e.value)] : [.bulk(m)]
        })
    }

    /// SSCAN, HSCAN and ZSCAN after the cursor and key lookup: options, then one page.
    ///
    /// A collection Redis keeps in a compact encoding (`small`) is returned whole (`whole`, in the order Redis
    /// lists it) with cursor 0, as Redis does. Otherwise elements are visited in `tree`'s order, the stable hash
    /// of their name, and the cursor is the next hash to visit: every element present for the whole iteration is
    /// returned, whatever changes in between. A page starts at the cursor's place in the tree (O(log n)) and
    /// takes `count` elements, and any more at the position of the last one (O(count)).
    func scanCollection<Value>(_ a: [[UInt8]], optionsFrom: Int, cursor: UInt64, small: Bool,
                               whole: () -> [([UInt8], [Reply])], tree: OrderedTree<TrackedKey, Value>,
                               item: (TrackedKey, Value) -> ([UInt8], [Reply])) -> Reply {
        var count = 10
        var pattern: [UInt8]? = nil
        var j = optionsFrom
        while j < a.count {
            let more = a.count - 1 - j
            if eq(a[j], "count") && more >= 1 {
                guard let n = RedisNumber.parseInt(a[j + 1]) else { return .notInteger }
                if n < 1 { return .syntax }
                count = Int(min(n, Int64(Int32.max)))
                j += 2
            } else if eq(a[j], "match") && more >= 1 {
                pattern = a[j + 1] == [UInt8(ascii: "*")] ? nil : a[j + 1]
                j += 2
            } else {
                return .syntax
            }
        }
        var page: [([UInt8], [Reply])] = []
        var next: UInt64 = 0
        if small {
            page = whole()
        } else {
            var last: UInt64 = 0
            for (k, v) in tree.entries(from: TrackedKey(position: cursor, bytes: [])) {
                if page.count >= count && k.position != last {
                    next = k.position
                    break
                }
                page.append(item(k, v))
                last = k.position
            }
        }
        if let pattern { page.removeAll { !globMatch(pattern, $0.0) } }
        return .array([.text(String(next)), .array(page.flatMap(\.1))])
    }
}

/// The most bytes one score takes in a reply: `%.17g` prints at most 24 characters
/// (`-2.2250738585072014e-308`).
let maxScoreReplySize = bulkReplySize(length: 24)
