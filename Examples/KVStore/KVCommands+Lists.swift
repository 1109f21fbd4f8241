import UnderstudyKit

extension KVStorage {
    mutating func collectionCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "lpush", "rpush", "lpushx", "rpushx": return cmdPush(a, left: name.hasPrefix("l"), onlyExisting: name.hasSuffix("x"), &env)
        case "lpop", "rpop": return cmdPop(a, left: name == "lpop", &env)
        case "llen": return Self.withList(lookup(a[1], &env), missing: .integer(0)) { .integer(Int64($0.count)) }
        case "lrange": return cmdLrange(a, &env)
        case "lindex": return cmdLindex(a, &env)
        case "lset": return cmdLset(a, &env)
        case "lrem": return cmdLrem(a, &env)
        case "ltrim": return cmdLtrim(a, &env)
        case "linsert": return cmdLinsert(a, &env)
        case "lpos": return cmdLpos(a, &env)
        case "lmove":
            guard let from = listEnd(a[3]), let to = listEnd(a[4]) else { return .syntax }
            return lmove(a[1], a[2], fromLeft: from, toLeft: to, &env)
        case "rpoplpush": return lmove(a[1], a[2], fromLeft: false, toLeft: true, &env)
        case "lmpop": return cmdLmpop(a, &env)
        default: return hashOrSetCommand(name, a, &env)
        }
    }

    func listEnd(_ b: [UInt8]) -> Bool? {
        if eq(b, "left") { return true }
        if eq(b, "right") { return false }
        return nil
    }

    /// Runs `body` on a list value; `missing` when absent, WRONGTYPE for other types.
    static func withList(_ value: KVValue?, missing: Reply, _ body: (KVList) -> Reply) -> Reply {
        switch value {
        case nil: return missing
        case .list(let l)?: return body(l)
        default: return .wrongType
        }
    }

    /// Mutates an existing list in place; deletes the key when the list ends up empty.
    mutating func mutateList<R>(_ key: [UInt8], _ env: KVEnvironment, _ body: (inout KVList) -> R) -> R? {
        modify(key, now: env.now) { v -> R? in
            guard case .list(var l)? = v else { return nil }
            v = nil
            let r = body(&l)
            if !l.isEmpty { v = .list(l) }
            return r
        }
    }

    mutating func cmdPush(_ a: [[UInt8]], left: Bool, onlyExisting: Bool, _ env: inout KVEnvironment) -> Reply {
        switch kind(a[1], &env) {
        case nil:
            if onlyExisting { return .integer(0) }
            var l = KVList()
            for e in a.dropFirst(2) { if left { l.pushFront(e) } else { l.pushBack(e) } }
            write(a[1], .list(l), expireAt: kvNoExpiry, now: env.now)
            return .integer(Int64(l.count))
        case .list:
            let n = mutateList(a[1], env) { l -> Int in
                for e in a.dropFirst(2) { if left { l.pushFront(e) } else { l.pushBack(e) } }
                return l.count
            }
            return .integer(Int64(n ?? 0))
        default: return .wrongType
        }
    }

    mutating func cmdPop(_ a: [[UInt8]], left: Bool, _ env: inout KVEnvironment) -> Reply {
        if a.count > 3 { return .arity(left ? "lpop" : "rpop") }
        var count = -1
        if a.count == 3 {
            guard let n = RedisNumber.parseInt(a[2]), n >= 0 else {
                return .error("ERR value is out of range, must be positive")
            }
            count = Int(min(n, Int64(Int32.max)))
        }
        switch kind(a[1], &env) {
        case nil: return count >= 0 ? .nullArray : .null
        case .list: break
        default: return .wrongType
        }
        if count == 0 { return .emptyArray }
        let popped = mutateList(a[1], env) { l -> [[UInt8]] in
            var out: [[UInt8]] = []
            for _ in 0..<max(1, count) {
                guard let e = left ? l.popFront() : l.popBack() else { break }
                out.append(e)
            }
            return out
        } ?? []
        return count < 0 ? .bulk(popped.first) : .bulks(popped)
    }

    /// Redis's range normalisation for LRANGE; nil when empty.
    func normalizedRange(_ s: Int64, _ e: Int64, _ n: Int) -> (Int, Int)? {
        var start = s, end = e
        let len = Int64(n)
        if start < 0 { start = len + start }
        if end < 0 { end = len + end }
        if start < 0 { start = 0 }
        if start > end || start >= len { return nil }
        if end >= len { end = len - 1 }
        return (Int(start), Int(end))
    }

    mutating func cmdLrange(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let s = RedisNumber.parseInt(a[2]), let e = RedisNumber.parseInt(a[3]) else { return .notInteger }
        return Self.withList(lookup(a[1], &env), missing: .emptyArray) { l in
            guard let (from, to) = normalizedRange(s, e, l.count) else { return .emptyArray }
            return .bulks(l.slice(from, to))
        }
    }

    mutating func cmdLindex(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        Self.withList(lookup(a[1], &env), missing: .null) { l in
            guard var i = RedisNumber.parseInt(a[2]) else { return .notInteger }
            if i < 0 { i += Int64(l.count) }
            guard i >= 0 && i < Int64(l.count) else { return .null }
            return .bulk(l[Int(i)])
        }
    }

    mutating func cmdLset(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch kind(a[1], &env) {
        case nil: return .error("ERR no such key")
        case .list: break
        default: return .wrongType
        }
        let n = listCount(a[1])
        guard var i = RedisNumber.parseInt(a[2]) else { return .notInteger }
        if i < 0 { i += Int64(n) }
        guard i >= 0 && i < Int64(n) else { return .error("ERR index out of range") }
        _ = mutateList(a[1], env) { l in l[Int(i)] = a[3] }
        return .ok
    }

    mutating func cmdLrem(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let count = RedisNumber.parseInt(a[2]) else { return .notInteger }
        switch kind(a[1], &env) {
        case nil: return .integer(0)
        case .list: break
        default: return .wrongType
        }
        let removed = mutateList(a[1], env) { l -> Int in
            var items = l.elements
            var removed = 0
            let limit = count == 0 ? Int.max : Int(count.magnitude > UInt64(Int.max) ? UInt64(Int.max) : count.magnitude)
            if count >= 0 {
                var out: [[UInt8]] = []
                out.reserveCapacity(items.count)
                for e in items {
                    if removed < limit && e == a[3] { removed += 1 } else { out.append(e) }
                }
                items = out
            } else {
                var i = items.count - 1
                while i >= 0 && removed < limit {
                    if items[i] == a[3] {
                        items.remove(at: i)
                        removed += 1
                    }
                    i -= 1
                }
            }
            if removed > 0 { l = KVList(items) }
            return removed
        }
        return .integer(Int64(removed ?? 0))
    }

    mutating func cmdLtrim(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard var start = RedisNumber.parseInt(a[2]), var end = RedisNumber.parseInt(a[3]) else { return .notInteger }
        switch kind(a[1], &env) {
        case nil: return .ok
        case .list: break
        default: return .wrongType
        }
        _ = mutateList(a[1], env) { l in
            let len = Int64(l.count)
            var ltrim: Int64, rtrim: Int64
            if start < 0 { start = len + start }
            if end < 0 { end = len + end }
            if start < 0 { start = 0 }
            if start > end || start >= len {
                ltrim = len
                rtrim = 0
            } else {
                if end >= len { end = len - 1 }
                ltrim = start
                rtrim = len - end - 1
            }
            if ltrim + rtrim >= len {
                l = KVList()
                return
            }
            for _ in 0..<ltrim { _ = l.popFront() }
            for _ in 0..<rtrim { _ = l.popBack() }
        }
        return .ok
    }

    mutating func cmdLinsert(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let after: Bool
        if eq(a[2], "after") { after = true } else if eq(a[2], "before") { after = false } else { return .syntax }
        switch kind(a[1], &env) {
        case nil: return .integer(0)
        case .list:
            guard let idx = listIndex(a[1], of: a[3]) else { return .integer(-1) }
            let n = mutateList(a[1], env) { l -> Int in
                var items = l.elements
                items.insert(a[4], at: after ? idx + 1 : idx)
                l = KVList(items)
                return l.count
            }
            return .integer(Int64(n ?? 0))
        default: return .wrongType
        }
    }

    mutating func cmdLpos(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var rank: Int64 = 1, count: Int64 = -1, maxlen: Int64 = 0
        var j = 3
        while j < a.count {
            let more = a.count - 1 - j
            if eq(a[j], "rank") && more > 0 {
                j += 1
                guard let r = RedisNumber.parseInt(a[j]) else { return .notInteger }
                if r == 0 {
                    return .error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")
                }
                rank = r
            } else if eq(a[j], "count") && more > 0 {
                j += 1
                guard let c = RedisNumber.parseInt(a[j]), c >= 0 else { return .error("ERR COUNT can't be negative") }
                count = c
            } else if eq(a[j], "maxlen") && more > 0 {
                j += 1
                guard let m = RedisNumber.parseInt(a[j]), m >= 0 else { return .error("ERR MAXLEN can't be negative") }
                maxlen = m
            } else {
                return .syntax
            }
            j += 1
        }
        let l: KVList
        switch lookup(a[1], &env) {
        case nil: return count != -1 ? .emptyArray : .null
        case .list(let x)?: l = x
        default: return .wrongType
        }
        let fromHead = rank > 0
        // Redis negates the rank in C: -LONG_MIN stays LONG_MIN, so RANK -9223372036854775808 takes the first
        // match from the tail and then never stops at COUNT (its `matches - rank + 1` wraps negative).
        let r = fromHead ? rank : 0 &- rank
        var matches: Int64 = 0
        var out: [Reply] = []
        var found: Int64? = nil
        var index = 0
        let n = l.count
        while index < n && (maxlen == 0 || Int64(index) < maxlen) {
            let pos = fromHead ? index : n - index - 1
            if l[pos] == a[2] {
                matches += 1
                if matches >= r {
                    if count != -1 {
                        out.append(.integer(Int64(pos)))
                        if count != 0 && matches &- r &+ 1 >= count { break }
                    } else {
                        found = Int64(pos)
                        break
                    }
                }
            }
            index += 1
        }
        if count != -1 { return .array(out) }
        return found.map { .integer($0) } ?? .null
    }

    mutating func lmove(_ src: [UInt8], _ dst: [UInt8], fromLeft: Bool, toLeft: Bool, _ env: inout KVEnvironment) -> Reply {
        switch kind(src, &env) {
        case nil: return .null
        case .list: break
        default: return .wrongType
        }
        if src == dst {
            let v = mutateList(src, env) { l -> [UInt8]? in
                guard let e = fromLeft ? l.popFront() : l.popBack() else { return nil }
                if toLeft { l.pushFront(e) } else { l.pushBack(e) }
                return e
            }
            return .bulk(v ?? nil)
        }
        switch kind(dst, &env) {
        case nil, .list: break
        default: return .wrongType
        }
        guard let e = mutateList(src, env, { l in fromLeft ? l.popFront() : l.popBack() }) ?? nil else { return .null }
        pushOne(dst, e, left: toLeft, &env)
        return .bulk(e)
    }

    mutating func pushOne(_ key: [UInt8], _ e: [UInt8], left: Bool, _ env: inout KVEnvironment) {
        if peekExists(key) {
            _ = mutateList(key, env) { l in if left { l.pushFront(e) } else { l.pushBack(e) } }
        } else {
            var l = KVList()
            l.pushBack(e)
            write(key, .list(l), expireAt: kvNoExpiry, now: env.now)
        }
    }

    mutating func peekExists(_ key: [UInt8]) -> Bool { peekKind(key) != nil }

    mutating func peekKind(_ key: [UInt8]) -> KVKind? {
        switch read(key)?.value {
        case nil: return nil
        case .string?: return .string
        case .list?: return .list
        case .hash?: return .hash
        case .set?: return .set
        case .zset?: return .zset
        }
    }

    mutating func listCount(_ key: [UInt8]) -> Int {
        if case .list(let l)? = read(key)?.value { return l.count }
        return 0
    }

    mutating func listIndex(_ key: [UInt8], of element: [UInt8]) -> Int? {
        guard case .list(let l)? = read(key)?.value else { return nil }
        return (0..<l.count).first { l[$0] == element }
    }

    mutating func cmdLmpop(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let numkeys = RedisNumber.parseInt(a[1]), numkeys >= 1 else {
            return .error("ERR numkeys should be greater than 0")
        }
        // The keys and the LEFT|RIGHT after them must all be there (checked without overflow).
        if numkeys > Int64(a.count - 3) { return .syntax }
        let wi = 2 + Int(numkeys)
        guard let left = listEnd(a[wi]) else { return .syntax }
        let count: Int64
        switch mpopCount(a, from: wi + 1) {
        case .success(let c): count = c
        case .failure(let e): return e.reply
        }
        for k in a[2..<wi] {
            switch kind(k, &env) {
            case nil: continue
            case .list:
                let popped = mutateList(k, env) { l -> [[UInt8]] in
                    var out: [[UInt8]] = []
                    while Int64(out.count) < count, let e = left ? l.popFront() : l.popBack() { out.append(e) }
                    return out
                } ?? []
                return .array([.bulk(k), .bulks(popped)])
            default: return .wrongType
            }
        }
        return .nullArray
    }
}
