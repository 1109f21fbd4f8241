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
        case "hvals": return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { h in .bulks(h.sortedFields.map { h[$0]! }) }
        case "hgetall":
            return Self.withHash(lookup(a[1], &env), missing: .emptyArray) { h in
                .bulks(h.sortedFields.flatMap { [$0, h[$0]!] })
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
                                      items: h.sortedFields.map { ($0, [.bulk($0), .bulk(h[$0]!)]) })
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

    /// Picks `count` distinct indices below `n`, deterministically from the context's generator.
    func distinctIndices(_ count: Int, of n: Int, _ env: inout KVEnvironment) -> [Int] {
        var idx = Array(0..<n)
        for i in 0..<min(count, n) {
            let j = i + Int(env.context.random.next() % UInt64(n - i))
            idx.swapAt(i, j)
        }
        return Array(idx.prefix(count)).sorted()
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
                let fields = h.sortedFields
                var picked: [[UInt8]] = []
                if l == 0 { return .emptyArray }
                if l < 0 {
                    let itemBytes = fields.map { bulkReplySize($0) + (withValues ? bulkReplySize(h[$0]!) : 0) }.max() ?? 0
                    if let error = repeatedPicksTooLarge(count: -l, itemBytes: itemBytes) { return error }
                    picked.reserveCapacity(Int(-l))
                    for _ in 0..<Int(-l) { picked.append(fields[Int(env.context.random.next() % UInt64(fields.count))]) }
                } else if l >= Int64(fields.count) {
                    picked = fields
                } else {
                    picked = distinctIndices(Int(l), of: fields.count, &env).map { fields[$0] }
                }
                return .bulks(withValues ? picked.flatMap { [$0, h[$0]!] } : picked)
            }
        }
        return Self.withHash(lookup(a[1], &env), missing: .null) { h in
            let fields = h.sortedFields
            return .bulk(fields[Int(env.context.random.next() % UInt64(fields.count))])
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
            var result: Set<[UInt8]>
            if name.hasPrefix("sinter") {
                if sets.contains(where: { $0 == nil }) {
                    result = []
                } else {
                    let sorted = sets.map { $0!.members }.sorted { $0.count < $1.count }
                    result = sorted[0]
                    for s in sorted.dropFirst() { result.formIntersection(s) }
                }
            } else if name.hasPrefix("sunion") {
                result = []
                for s in sets { if let s { result.formUnion(s.members) } }
            } else {
                result = sets[0]?.members ?? []
                for s in sets.dropFirst() where !result.isEmpty { if let s { result.subtract(s.members) } }
            }
            if store {
                delete(a[1])
                if !result.isEmpty { write(a[1], .set(KVSet(result)), expireAt: kvNoExpiry, now: env.now) }
                return .integer(Int64(result.count))
            }
            return .bulks(result.sorted(by: bytesLess))
        case "smove":
            let src = lookup(a[1], &env)
            let dst = lookup(a[2], &env)
            guard let src else { return .integer(0) }
            guard case .set(let s) = src else { return .wrongType }
            if let dst, case .set = dst {} else if dst != nil { return .wrongType }
            if a[1] == a[2] { return .integer(s.contains(a[3]) ? 1 : 0) }
            if !s.contains(a[3]) { return .integer(0) }
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
            for m in ordered[0].members where ordered.dropFirst().allSatisfy({ $0.contains(m) }) {
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
                                      items: s.sorted.map { ($0, [.bulk($0)]) })
            default: return .wrongType
            }
        default:
            return sortedSetCommand(name, a, &env)
        }
    }

    mutating func cmdSpop(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count > 3 { return .syntax }
        if a.count == 3 {
            guard let l = RedisNumber.parseInt(a[2]), l >= 0 else { return .error("ERR value is out of range, must be positive") }
            switch lookup(a[1], &env) {
            case nil: return .emptyArray
            case .set(let s)?:
                if l == 0 { return .emptyArray }
                if l >= Int64(s.count) {
                    delete(a[1])
                    return .bulks(s.sorted)
                }
                let members = s.sorted
                let picked = distinctIndices(Int(l), of: members.count, &env).map { members[$0] }
                _ = mutateSet(a[1], &env, create: false) { s in for m in picked { s.remove(m) } }
                return .bulks(picked)
            default: return .wrongType
            }
        }
        switch lookup(a[1], &env) {
        case nil: return .null
        case .set(let s)?:
            let members = s.sorted
            let m = members[Int(env.context.random.next() % UInt64(members.count))]
            _ = mutateSet(a[1], &env, create: false) { $0.remove(m) }
            return .bulk(m)
        default: return .wrongType
        }
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
                let members = s.sorted
                if l < 0 {
                    if let error = repeatedPicksTooLarge(count: -l, itemBytes: members.map(bulkReplySize).max() ?? 0) {
                        return error
                    }
                    var out: [[UInt8]] = []
                    out.reserveCapacity(Int(-l))
                    for _ in 0..<Int(-l) { out.append(members[Int(env.context.random.next() % UInt64(members.count))]) }
                    return .bulks(out)
                }
                if l >= Int64(members.count) { return .bulks(members) }
                return .bulks(distinctIndices(Int(l), of: members.count, &env).map { members[$0] })
            }
        }
        return Self.withSet(lookup(a[1], &env), missing: .null) { s in
            let members = s.sorted
            return .bulk(members[Int(env.context.random.next() % UInt64(members.count))])
        }
    }
}

/// The most bytes a reply of repeated random picks (SRANDMEMBER or HRANDFIELD with a negative count) may take.
///
/// Redis 7.0 answers any such count by streaming picks until it runs out of memory; this service builds each
/// reply whole (and sends it in one frame), so it refuses a count whose reply could pass this size.
let maxRepeatedPicksReplyBytes: Int64 = 16 << 20

/// The bytes of one bulk string in a reply: `$<len>\r\n<bytes>\r\n`.
func bulkReplySize(_ b: [UInt8]) -> Int {
    var digits = 1
    var n = b.count
    while n >= 10 {
        n /= 10
        digits += 1
    }
    return 1 + digits + 2 + b.count + 2
}

/// The error for a count of repeated picks whose reply could pass ``maxRepeatedPicksReplyBytes``; nil when it fits.
/// The bound depends only on the state, so every replica answers alike.
func repeatedPicksTooLarge(count: Int64, itemBytes: Int) -> Reply? {
    let (total, overflow) = count.multipliedReportingOverflow(by: Int64(itemBytes))
    if !overflow && total <= maxRepeatedPicksReplyBytes { return nil }
    return .error("ERR count is too large: the reply could exceed \(maxRepeatedPicksReplyBytes) bytes")
}
