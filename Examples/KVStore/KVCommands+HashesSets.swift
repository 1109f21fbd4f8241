import UnderstudyKit

extension KVStorage {
    mutating func hashOrSetCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "hset", "hmset":
            if a.count % 2 == 1 { return .arity(name) }
            let n: Int? = mutateHash(a[1], &env, create: true) { h in
                var added = 0
                var j = 2
                while j < a.count {
                    if h.set(a[j], a[j + 1]) { added += 1 }
                    j += 2
                }
                return added
            }
            guard let n else { return .wrongType }
            return name == "hset" ? .integer(Int64(n)) : .ok
        case "hsetnx":
            let r: Bool? = mutateHash(a[1], &env, create: true) { h in
                if h[a[2]] != nil { return false }
                h.set(a[2], a[3])
                return true
            }
            guard let r else { return .wrongType }
            return .integer(r ? 1 : 0)
        case "hget": return Self.withHash(lookup(a[1], &env), missing: .null) { .bulk($0[a[2]]) }
        case "hmget":
            return Self.withHash(lookup(a[1], &env), missing: .array(a.dropFirst(2).map { _ in .null })) { h in
                .array(a.dropFirst(2).map { .bulk(h[$0]) })
            }
        case "hdel":
            switch kind(a[1], &env) {
            case nil: return .integer(0)
            case .hash:
                let n: Int = mutateHash(a[1], &env, create: false) { h in
                    a.dropFirst(2).reduce(0) { $0 + (h.remove($1) ? 1 : 0) }
                } ?? 0
                return .integer(Int64(n))
            default: return .wrongType
            }
        case "hexists": return Self.withHash(lookup(a[1], &env), missing: .integer(0)) { .integer($0[a[2]] == nil ? 0 : 1) }
        case "hlen": return Self.withHash(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64($0.count)) }
        case "hstrlen": return Self.withHash(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64($0[a[2]]?.count ?? 0)) }
        case "hkeys": return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { .bulks($0.sortedFields) }
        case "hvals": return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { h in .bulks(h.sortedPairs.map(\.value)) }
        case "hgetall":
            return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { h in
                .bulks(h.sortedPairs.flatMap { [$0.field, $0.value] })
            }
        case "hincrby": return cmdHincrby(a, &env)
        case "hincrbyfloat": return cmdHincrbyfloat(a, &env)
        case "hrandfield": return cmdHrandfield(a, &env)
        case "hscan":
            guard let cursor = parseCursor(a[2]) else { return .error("ERR invalid cursor") }
            switch lookup(a[1], &env) {
            case nil: return .array([.text("0"), .emptyArray])
            case .hash(let h)?:
                return scanCollection(a, optionsFrom: 3, cursor: cursor, small: encodingName(.hash(h)) == "listpack",
                                      whole: { h.sortedPairs.map { ($0.field, [.bulk($0.field), .bulk($0.value)]) } },
                                      tree: h.fields) { k, v in let f = k.bytes; return (f, [.bulk(f), .bulk(v)]) }
            default: return .wrongType
            }
        default: return setCommand(name, a, &env)
        }
    }

    static func withHash(_ value: KVValue?, missing: Reply, _ body: (KVHash) -> Reply) -> Reply {
        switch value {
        case nil: return missing
        case .hash(let h)?: return body(h)
        default: return .wrongType
        }
    }

    /// Mutates a hash in place (creating it when `create`); nil on WRONGTYPE or when absent and not created.
    /// Deletes the key when the hash ends up empty.
    mutating func mutateHash<R>(_ key: [UInt8], _ env: inout KVEnvironment, create: Bool, _ body: (inout KVHash) -> R) -> R? {
        switch kind(key, &env) {
        case nil: if !create { return nil }
        case .hash: break
        default: return nil
        }
        return modify(key, now: env.now) { v -> R? in
            var h: KVHash
            if case .hash(let x)? = v { h = x } else { h = KVHash() }
            v = nil
            let r = body(&h)
            if h.count > 0 { v = .hash(h) }
            return r
        }
    }

    mutating func cmdHincrby(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let incr = RedisNumber.parseInt(a[3]) else { return .notInteger }
        let r: Reply? = mutateHash(a[1], &env, create: true) { h in
            var old: Int64 = 0
            if let b = h[a[2]] {
                guard let v = RedisNumber.parseInt(b) else { return .error("ERR hash value is not an integer") }
                old = v
            }
            if (incr < 0 && old < 0 && incr < Int64.min - old) || (incr > 0 && old > 0 && incr > Int64.max - old) {
                return .error("ERR increment or decrement would overflow")
            }
            h.set(a[2], RedisNumber.format(old + incr))
            return .integer(old + incr)
        }
        return r ?? .wrongType
    }

    mutating func cmdHincrbyfloat(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let incr = RedisNumber.parseLongDouble(a[3]) else { return .error("ERR value is not a valid float") }
        if incr.isNaN || incr.isInfinite { return .error("ERR value is NaN or Infinity") }
        let r: Reply? = mutateHash(a[1], &env, create: true) { h in
            var value: Float80 = 0
            if let b = h[a[2]] {
                guard let v = RedisNumber.parseLongDouble(b) else { return .error("ERR hash value is not a float") }
                value = v
            }
            value += incr
            if value.isNaN || value.isInfinite { return .error("ERR increment would produce NaN or Infinity") }
            let s = RedisNumber.formatLongDouble(value)
            h.set(a[2], s)
            return .bulk(s)
        }
        return r ?? .wrongType
    }

    /// Picks `count` distinct indices below `n`, deterministically from the context's generator; ascending.
    ///
    /// A Fisher–Yates shuffle of `0..<n` stopped after `count` steps, with only the swapped places stored:
    /// O(count) whatever `n`.
    func distinctIndices(_ count: Int, of n: Int, _ env: inout KVEnvironment) -> [Int] {
        let k = min(count, n)
        var moved: [Int: Int] = [:]
        moved.reserveCapacity(k)
        var out: [Int] = []
        out.reserveCapacity(k)
        for i in 0..<k {
            let j = i + Int(env.context.random.next() % UInt64(n - i))
            let atJ = moved[j] ?? j
            moved[j] = moved[i] ?? i
            out.append(atJ)
        }
        out.sort()
        return out
    }

    /// A uniform index below `n` (> 0) from the context's generator.
    func randomIndex(_ n: Int, _ env: inout KVEnvironment) -> Int {
        Int(env.context.random.next() % UInt64(n))
    }

    mutating func cmdHrandfield(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count >= 3 {
            guard let l = RedisNumber.parseInt(a[2]) else { return .notInteger }
            if l == .min {
                return .error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
            }
            var withValues = false
            if a.count > 4 || (a.count == 4 && !eq(a[3], "withvalues")) { return .syntax }
            if a.count == 4 {
                withValues = true
                if l < -(Int64.max / 2) || l > Int64.max / 2 { return .error("ERR value is out of range") }
            }
            return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { h in
                func item(_ e: (field: [UInt8], value: [UInt8])) -> [Reply] {
                    withValues ? [.bulk(e.field), .bulk(e.value)] : [.bulk(e.field)]
                }
                if l == 0 { return .emptyArray }
                if l < 0 {
                    let bound = bulkReplySize(length: h.longestField) + (withValues ? bulkReplySize(length: h.longestValue) : 0)
                    let error = repeatedPicksTooLarge(count: -l, items: withValues ? 2 : 1, largest: bound) {
                        var most = 0
                        h.fields.forEach { f, v in
                            most = max(most, bulkReplySize(length: f.byteCount) + (withValues ? bulkReplySize(v) : 0))
                        }
                        return most
                    }
                    if let error { return error }
                    var out: [Reply] = []
                    out.reserveCapacity(Int(-l) * (withValues ? 2 : 1))
                    for _ in 0..<Int(-l) { out += item(h.entry(atRank: randomIndex(h.count, &env))) }
                    return .array(out)
                }
                if l >= Int64(h.count) { return .array(h.sortedPairs.flatMap(item)) }
                return .array(distinctIndices(Int(l), of: h.count, &env).flatMap { item(h.entry(atRank: $0)) })
            }
        }
        return Self.withHash(lookup(a[1], &env), missing: .null) { h in
            .bulk(h.entry(atRank: randomIndex(h.count, &env)).field)
        }
    }

    // MARK: sets

    static func withSet(_ value: KVValue?, missing: Reply, _ body: (KVSet) -> Reply) -> Reply {
        switch value {
        case nil: return missing
        case .set(let s)?: return body(s)
        default: return .wrongType
        }
    }

    mutating func mutateSet<R>(_ key: [UInt8], _ env: inout KVEnvironment, create: Bool, _ body: (inout KVSet) -> R) -> R? {
        switch kind(key, &env) {
        case nil: if !create { return nil }
        case .set: break
        default: return nil
        }
        return modify(key, now: env.now) { v -> R? in
            var s: KVSet
            if case .set(let x)? = v { s = x } else { s = KVSet() }
            v = nil
            let r = body(&s)
            if s.count > 0 { v = .set(s) }
            return r
        }
    }

    /// Reads several keys as sets (missing = nil); WRONGTYPE aborts.
    mutating func readSets(_ keys: ArraySlice<[UInt8]>, _ env: inout KVEnvironment) -> [KVSet?]? {
        var out: [KVSet?] = []
        for k in keys {
            switch lookup(k, &env) {
            case nil: out.append(nil)
            case .set(let s)?: out.append(s)
            default: return nil
            }
        }
        return out
    }

    mutating func setCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "sadd":
            let n: Int? = mutateSet(a[1], &env, create: true) { s in a.dropFirst(2).reduce(0) { $0 + (s.insert($1) ? 1 : 0) } }
            return n.map { .integer(Int64($0)) } ?? .wrongType
        case "srem":
            switch kind(a[1], &env) {
            case nil: return .integer(0)
            case .set:
                let n: Int = mutateSet(a[1], &env, create: false) { s in a.dropFirst(2).reduce(0) { $0 + (s.remove($1) ? 1 : 0) } } ?? 0
                return .integer(Int64(n))
            default: return .wrongType
            }
        case "smembers": return Self.withSet(lookup(a[1], &env), missing: .emptyArray) { .bulks($0.sorted) }
        case "sismember": return Self.withSet(lookup(a[1], &env), missing: .integer(0)) { .integer($0.contains(a[2]) ? 1 : 0) }
        case "smismember":
            return Self.withSet(lookup(a[1], &env), missing: .array(a.dropFirst(2).map { _ in .integer(0) })) { s in
                .array(a.dropFirst(2).map { .integer(s.contains($0) ? 1 : 0) })
            }
        case "scard": return Self.withSet(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64($0.count)) }
        case "spop": return cmdSpop(a, &env)
        case "srandmember": return cmdSrandmember(a, &env)
        case "sinter", "sunion", "sdiff", "sinterstore", "sunionstore", "sdiffstore":
            let store = name.hasSuffix("store")
            let keys = store ? a[2...] : a[1...]
            guard let sets = readSets(keys, &env) else { return .wrongType }
            // A copy of a set shares its tree (O(1)): a union starts from the largest input, a difference from the
            // first when the others are smaller, so the work follows the smaller inputs.
            var result = KVSet()
            let present = sets.compactMap { $0 }
            if name.hasPrefix("sinter") {
                if present.count == sets.count {
                    let sorted = present.sorted { $0.count < $1.count }
                    sorted[0].members.forEach { m, _ in
                        if sorted.dropFirst().allSatisfy({ $0.contains(m) }) { result.insert(m) }
                    }
                }
            } else if name.hasPrefix("sunion") {
                if let largest = present.indices.max(by: { present[$0].count < present[$1].count }) {
                    result = present[largest]
                    for (i, s) in present.enumerated() where i != largest { s.members.forEach { m, _ in result.insert(m) } }
                }
            } else if let first = sets[0] {
                let others = sets.dropFirst().compactMap { $0 }
                if others.reduce(0, { $0 + $1.count }) < first.count {
                    result = first
                    for s in others { s.members.forEach { m, _ in result.remove(m) } }
                } else {
                    first.members.forEach { m, _ in
                        if !others.contains(where: { $0.contains(m) }) { result.insert(m) }
                    }
                }
            }
            if store {
                delete(a[1])
                if result.count > 0 { write(a[1], .set(result), expireAt: kvNoExpiry, now: env.now) }
                return .integer(Int64(result.count))
            }
            return .bulks(result.sorted)
        case "smove":
            // Only what the checks need is kept (no reference to the source set), so the moves below change
            // both sets in place.
            var srcExists = false, srcIsSet = false, srcHas = false
            if let v = lookup(a[1], &env) {
                srcExists = true
                if case .set(let s) = v {
                    srcIsSet = true
                    srcHas = s.contains(a[3])
                }
            }
            let dst = kind(a[2], &env)
            guard srcExists else { return .integer(0) }
            guard srcIsSet else { return .wrongType }
            if dst != nil && dst != .set { return .wrongType }
            if a[1] == a[2] { return .integer(srcHas ? 1 : 0) }
            if !srcHas { return .integer(0) }
            _ = mutateSet(a[1], &env, create: false) { $0.remove(a[3]) }
            _ = mutateSet(a[2], &env, create: true) { $0.insert(a[3]) }
            return .integer(1)
        case "sintercard":
            guard let numkeys = RedisNumber.parseInt(a[1]), numkeys >= 1 else {
                return .error("ERR numkeys should be greater than 0")
            }
            if numkeys > Int64(a.count - 2) { return .error("ERR Number of keys can't be greater than number of args") }
            var limit: Int64 = 0
            var j = 2 + Int(numkeys)
            while j < a.count {
                guard eq(a[j], "limit") && j + 1 < a.count else { return .syntax }
                guard let l = RedisNumber.parseInt(a[j + 1]), l >= 0 else { return .error("ERR LIMIT can't be negative") }
                limit = l
                j += 2
            }
            guard let sets = readSets(a[2..<(2 + Int(numkeys))], &env) else { return .wrongType }
            if sets.contains(where: { $0 == nil }) { return .integer(0) }
            let ordered = sets.map { $0! }.sorted { $0.count < $1.count }
            var n: Int64 = 0
            for (m, _) in ordered[0].members.entries() where ordered.dropFirst().allSatisfy({ $0.contains(m) }) {
                n += 1
                if limit > 0 && n >= limit { break }
            }
            return .integer(n)
        case "sscan":
            guard let cursor = parseCursor(a[2]) else { return .error("ERR invalid cursor") }
            switch lookup(a[1], &env) {
            case nil: return .array([.text("0"), .emptyArray])
            case .set(let s)?:
                return scanCollection(a, optionsFrom: 3, cursor: cursor, small: encodingName(.set(s)) == "intset",
                                      whole: { s.sorted.map { ($0, [.bulk($0)]) } },
                                      tree: s.members) { k, _ in let m = k.bytes; return (m, [.bulk(m)]) }
            default: return .wrongType
            }
        default:
            return sortedSetCommand(name, a, &env)
        }
    }

    mutating func cmdSpop(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count > 3 { return .syntax }
        // The picks are drawn from the size first; they are removed inside the mutation, so the set is changed in
        // place (no reference to it is kept across).
        if a.count == 3 {
            guard let l = RedisNumber.parseInt(a[2]), l >= 0 else { return .error("ERR value is out of range, must be positive") }
            let n: Int
            switch lookup(a[1], &env) {
            case nil: return .emptyArray
            case .set(let s)?:
                if l == 0 { return .emptyArray }
                if l >= Int64(s.count) {
                    delete(a[1])
                    return .bulks(s.sorted)
                }
                n = s.count
            default: return .wrongType
            }
            let ranks = distinctIndices(Int(l), of: n, &env)
            let picked = mutateSet(a[1], &env, create: false) { s -> [[UInt8]] in
                let keys = ranks.map { s.member(atRank: $0) }
                for k in keys { s.remove(k) }
                return keys.map(\.bytes)
            } ?? []
            return .bulks(picked)
        }
        let n: Int
        switch lookup(a[1], &env) {
        case nil: return .null
        case .set(let s)?: n = s.count
        default: return .wrongType
        }
        let rank = randomIndex(n, &env)
        let m = mutateSet(a[1], &env, create: false) { s -> [UInt8] in
            let k = s.member(atRank: rank)
            s.remove(k)
            return k.bytes
        }
        return .bulk(m)
    }

    mutating func cmdSrandmember(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count > 3 { return .syntax }
        if a.count == 3 {
            guard let l = RedisNumber.parseInt(a[2]) else { return .notInteger }
            if l == .min {
                return .error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
            }
            return Self.withSet(lookup(a[1], &env), missing: .emptyArray) { s in
                if l == 0 { return .emptyArray }
                if l < 0 {
                    let error = repeatedPicksTooLarge(count: -l, items: 1, largest: bulkReplySize(length: s.longestMember)) {
                        var most = 0
                        s.members.forEach { m, _ in most = max(most, bulkReplySize(length: m.byteCount)) }
                        return most
                    }
                    if let error { return error }
                    var out: [[UInt8]] = []
                    out.reserveCapacity(Int(-l))
                    for _ in 0..<Int(-l) { out.append(s.member(atRank: randomIndex(s.count, &env)).bytes) }
                    return .bulks(out)
                }
                if l >= Int64(s.count) { return .bulks(s.sorted) }
                return .bulks(distinctIndices(Int(l), of: s.count, &env).map { s.member(atRank: $0).bytes })
            }
        }
        return Self.withSet(lookup(a[1], &env), missing: .null) { s in
            .bulk(s.member(atRank: randomIndex(s.count, &env)).bytes)
        }
    }
}

/// The most bytes a reply of repeated random picks (SRANDMEMBER or HRANDFIELD with a negative count) may take.
///
/// Redis 7.0 answers any such count by streaming picks until it runs out of memory; this service builds each
/// reply whole (and sends it in one frame), so it refuses a count whose reply could pass this size.
let maxRepeatedPicksReplyBytes: Int64 = 16 << 20

/// The bytes of one bulk string in a reply: `$<len>\r\n<bytes>\r\n`.
func bulkReplySize(_ b: [UInt8]) -> Int { bulkReplySize(length: b.count) }

/// The bytes of one bulk string of `length` bytes in a reply.
func bulkReplySize(length: Int) -> Int {
    var digits = 1
    var n = length
    while n >= 10 {
        n /= 10
        digits += 1
    }
    return 1 + digits + 2 + length + 2
}

/// The error for a count of repeated picks whose reply could pass ``maxRepeatedPicksReplyBytes``; nil when it fits.
/// The bound depends only on the state, so every replica answers alike.
func repeatedPicksTooLarge(count: Int64, itemBytes: Int) -> Reply? {
    let (total, overflow) = count.multipliedReportingOverflow(by: Int64(itemBytes))
    if !overflow && total <= maxRepeatedPicksReplyBytes { return nil }
    return .error("ERR count is too large: the reply could exceed \(maxRepeatedPicksReplyBytes) bytes")
}

/// ``repeatedPicksTooLarge(count:itemBytes:)`` for the largest item of a collection, without a pass over it where
/// bounds decide: every item is at least `items` empty bulk strings, and at most `largest` bytes (a bound kept
/// with the collection). Only a count between the two answers calls `exact` (the true largest, O(n)), so the
/// answer is the same as from the exact size.
func repeatedPicksTooLarge(count: Int64, items: Int, largest: Int, exact: () -> Int) -> Reply? {
    if repeatedPicksTooLarge(count: count, itemBytes: largest) == nil { return nil }
    if let error = repeatedPicksTooLarge(count: count, itemBytes: items * bulkReplySize(length: 0)) { return error }
    return repeatedPicksTooLarge(count: count, itemBytes: exact())
}
