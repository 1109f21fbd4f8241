#if canImport(Glibc)
import Glibc
#endif
import UnderstudyKit
import UnderstudyWire

extension KVStorage {
    mutating func cmdDel(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var n: Int64 = 0
        for k in a.dropFirst() where expireIfNeeded(k, env) {
            if delete(k) { n += 1 }
        }
        return .integer(n)
    }

    mutating func cmdExists(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var n: Int64 = 0
        for k in a.dropFirst() where lookup(k, &env, touch: false) != nil { n += 1 }
        return .integer(n)
    }

    mutating func cmdType(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        .simple(lookup(a[1], &env, touch: false)?.typeName ?? "none")
    }

    mutating func cmdRename(_ a: [[UInt8]], nx: Bool, _ env: inout KVEnvironment) -> Reply {
        guard let value = lookup(a[1], &env) else { return .error("ERR no such key") }
        if a[1] == a[2] { return nx ? .integer(0) : .ok }
        let expire = peekExpiry(a[1])
        if lookup(a[2], &env, touch: false) != nil {
            if nx { return .integer(0) }
            delete(a[2])
        }
        delete(a[1])
        write(a[2], value, expireAt: expire, now: env.now)
        return nx ? .integer(1) : .ok
    }

    /// Live keys matching a pattern, sorted.
    func liveKeys(matching pattern: [UInt8]?, now: Int64) -> [[UInt8]] {
        var out: [[UInt8]] = []
        let all = pattern == nil || pattern! == [UInt8(ascii: "*")]
        forEachKey { k, _, exp in
            if exp != kvNoExpiry && now > exp { return }
            if all || globMatch(pattern!, k) { out.append(k) }
        }
        out.sort(by: bytesLess)
        return out
    }

    mutating func cmdKeys(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        .bulks(liveKeys(matching: a[1], now: env.now))
    }

    mutating func cmdScan(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let cursor = parseCursor(a[1]) else { return .error("ERR invalid cursor") }
        var count = 10
        var pattern: [UInt8]? = nil
        var type: [UInt8]? = nil
        var j = 2
        while j < a.count {
            let more = a.count - 1 - j
            if eq(a[j], "count") && more >= 1 {
                guard let n = RedisNumber.parseInt(a[j + 1]) else { return .notInteger }
                if n < 1 { return .syntax }
                count = Int(min(n, Int64(Int32.max)))
                j += 2
            } else if eq(a[j], "match") && more >= 1 {
                pattern = a[j + 1]
                j += 2
            } else if eq(a[j], "type") && more >= 1 {
                type = a[j + 1]
                j += 2
            } else {
                return .syntax
            }
        }
        // O(log n + count): the keyspace is kept in position order, so the cursor is where to resume.
        let (page, next) = scanKeys(from: cursor, count: count)
        var keys: [[UInt8]] = []
        let all = pattern == nil || pattern! == [UInt8(ascii: "*")]
        let typeName = type.map { lower($0) }
        for k in page {
            guard let (v, exp) = read(k) else { continue }
            if exp != kvNoExpiry && env.now > exp {
                delete(k)
                continue
            }
            if !all && !globMatch(pattern!, k) { continue }
            if let typeName, typeName != v.typeName { continue }
            keys.append(k)
        }
        keys.sort(by: bytesLess)
        return .array([.text(String(next)), .bulks(keys)])
    }

    func parseCursor(_ b: [UInt8]) -> UInt64? {
        guard let first = b.first else { return 0 }
        if first == 32 || (first >= 9 && first <= 13) { return nil }
        var cstr = b.map { CChar(bitPattern: $0) }
        cstr.append(0)
        return cstr.withUnsafeBufferPointer { p -> UInt64? in
            var end: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let v = strtoul(p.baseAddress!, &end, 10)
            if errno == ERANGE { return nil }
            guard let end, end.pointee == 0 else { return nil }
            return UInt64(v)
        }
    }

    /// A uniformly random live key (O(log n) per pick): as Redis does, an expired pick is deleted and another
    /// drawn. The randomness is journaled, so every replica picks the same key.
    mutating func cmdRandomkey(_ env: inout KVEnvironment) -> Reply {
        while keyCount > 0 {
            let k = key(atRank: Int(env.context.random.next() % UInt64(keyCount)))
            let exp = peekExpiry(k)
            if exp != kvNoExpiry && env.now > exp {
                delete(k)
                continue
            }
            return .bulk(k)
        }
        return .null
    }

    mutating func expireGeneric(_ a: [[UInt8]], base: Int64, seconds: Bool, name: String, _ env: inout KVEnvironment) -> Reply {
        var nx = false, xx = false, gt = false, lt = false
        for o in a.dropFirst(3) {
            if eq(o, "nx") { nx = true }
            else if eq(o, "xx") { xx = true }
            else if eq(o, "gt") { gt = true }
            else if eq(o, "lt") { lt = true }
            else { return .error("ERR Unsupported option \(String(decoding: o, as: UTF8.self))") }
        }
        if nx && (xx || gt || lt) {
            return .error("ERR NX and XX, GT or LT options at the same time are not compatible")
        }
        if gt && lt { return .error("ERR GT and LT options at the same time are not compatible") }
        guard var when = RedisNumber.parseInt(a[2]) else { return .notInteger }
        let bad = Reply.error("ERR invalid expire time in '\(name)' command")
        if seconds {
            if when > Int64.max / 1000 || when < Int64.min / 1000 { return bad }
            when *= 1000
        }
        if when > Int64.max - base { return bad }
        when += base
        guard lookup(a[1], &env, touch: false) != nil else { return .integer(0) }
        let current = peekExpiry(a[1])
        if nx && current != kvNoExpiry { return .integer(0) }
        if xx && current == kvNoExpiry { return .integer(0) }
        if gt && (when <= current || current == kvNoExpiry) { return .integer(0) }
        if lt && current != kvNoExpiry && when >= current { return .integer(0) }
        if when <= env.now {
            delete(a[1])
        } else {
            setExpiry(a[1], when)
        }
        return .integer(1)
    }

    mutating func ttlGeneric(_ a: [[UInt8]], ms: Bool, absolute: Bool, _ env: inout KVEnvironment) -> Reply {
        guard lookup(a[1], &env, touch: false) != nil else { return .integer(-2) }
        let expire = peekExpiry(a[1])
        if expire == kvNoExpiry { return .integer(-1) }
        var ttl = absolute ? expire : expire - env.now
        if ttl < 0 { ttl = 0 }
        if ms { return .integer(ttl) }
        // Rounded to seconds without overflow: Redis 7.0 answers 9223372036854776 for PEXPIREAT k 2^63-1.
        return .integer(Int64((UInt64(ttl) + 500) / 1000))
    }

    mutating func cmdPersist(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard lookup(a[1], &env) != nil else { return .integer(0) }
        if peekExpiry(a[1]) == kvNoExpiry { return .integer(0) }
        setExpiry(a[1], kvNoExpiry)
        return .integer(1)
    }

    mutating func cmdCopy(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var replace = false
        var j = 3
        while j < a.count {
            if eq(a[j], "replace") {
                replace = true
            } else if eq(a[j], "db") && j + 1 < a.count {
                guard let db = RedisNumber.parseInt(a[j + 1]) else { return .notInteger }
                guard db >= Int64(Int32.min), db <= Int64(Int32.max) else {
                    return .error("ERR value is out of range, value must between -2147483648 and 2147483647")
                }
                if db != 0 { return .error("ERR DB index is out of range") }
                j += 1
            } else {
                return .syntax
            }
            j += 1
        }
        if a[1] == a[2] { return .error("ERR source and destination objects are the same") }
        guard let value = lookup(a[1], &env) else { return .integer(0) }
        let expire = peekExpiry(a[1])
        if lookup(a[2], &env, touch: false) != nil {
            if !replace { return .integer(0) }
            delete(a[2])
        }
        write(a[2], value, expireAt: expire, now: env.now)
        return .integer(1)
    }
}
