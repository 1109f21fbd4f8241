import UnderstudyKit

extension KVStorage {
    mutating func cmdGet(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(let v):
            if let broken = env.broken, broken == .nondeterministic {
                return BrokenMode.nondeterministicGet(key: a[1], value: v)
            }
            return .bulk(v)
        }
    }

    /// Parses an expiry argument the way Redis's `getExpireMillisecondsOrReply` does.
    func expireMillis(_ arg: [UInt8], seconds: Bool, absolute: Bool, name: String, now: Int64) -> Result<Int64, ReplyError> {
        guard var ms = RedisNumber.parseInt(arg) else { return .failure(ReplyError(.notInteger)) }
        let bad = ReplyError(.error("ERR invalid expire time in '\(name)' command"))
        if ms <= 0 || (seconds && ms > Int64.max / 1000) { return .failure(bad) }
        if seconds { ms *= 1000 }
        if !absolute { ms = ms &+ now }
        if ms <= 0 { return .failure(bad) }
        return .success(ms)
    }

    mutating func setGeneric(
        _ key: [UInt8], _ value: [UInt8], nx: Bool = false, xx: Bool = false, get: Bool = false,
        keepTTL: Bool = false, expire: [UInt8]?, seconds: Bool, absolute: Bool, name: String,
        okReply: Reply = .ok, abortReply: Reply = .null, _ env: inout KVEnvironment
    ) -> Reply {
        var when = kvNoExpiry
        if let expire {
            switch expireMillis(expire, seconds: seconds, absolute: absolute, name: name, now: env.now) {
            case .failure(let e): return e.reply
            case .success(let ms): when = ms
            }
        }
        var old: Reply = .null
        let current = lookup(key, &env)
        if get {
            switch current {
            case nil: old = .null
            case .string(let b)?: old = .bulk(b)
            default: return .wrongType
            }
        }
        let found = current != nil
        if (nx && found) || (xx && !found) {
            return get ? old : abortReply
        }
        let newExpire = keepTTL ? peekExpiry(key) : when
        write(key, .string(value), expireAt: newExpire, now: env.now)
        if let broken = env.broken, broken == .drift {
            write(Array("drift:".utf8) + key, .string(value), expireAt: kvNoExpiry, now: env.now)
        }
        return get ? old : okReply
    }

    mutating func cmdSet(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if env.broken == .poison, let action = BrokenMode.poisonAction(forSetKey: a[1]) {
            BrokenMode.poison(action)
        }
        var nx = false, xx = false, get = false, keep = false
        var ex = false, px = false, exat = false, pxat = false
        var expire: [UInt8]? = nil
        var j = 3
        while j < a.count {
            let o = a[j]
            let hasNext = j + 1 < a.count
            if eq(o, "nx") && !xx {
                nx = true
            } else if eq(o, "xx") && !nx {
                xx = true
            } else if eq(o, "get") {
                get = true
            } else if eq(o, "keepttl") && !ex && !exat && !px && !pxat {
                keep = true
            } else if eq(o, "ex") && !keep && !exat && !px && !pxat && hasNext {
                ex = true; expire = a[j + 1]; j += 1
            } else if eq(o, "px") && !keep && !ex && !exat && !pxat && hasNext {
                px = true; expire = a[j + 1]; j += 1
            } else if eq(o, "exat") && !keep && !ex && !px && !pxat && hasNext {
                exat = true; expire = a[j + 1]; j += 1
            } else if eq(o, "pxat") && !keep && !ex && !exat && !px && hasNext {
                pxat = true; expire = a[j + 1]; j += 1
            } else {
                return .syntax
            }
            j += 1
        }
        return setGeneric(a[1], a[2], nx: nx, xx: xx, get: get, keepTTL: keep, expire: expire,
                          seconds: ex || exat, absolute: exat || pxat, name: "set", &env)
    }

    mutating func cmdMget(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var out: [Reply] = []
        for k in a.dropFirst() {
            if case .string(let b)? = lookup(k, &env) { out.append(.bulk(b)) } else { out.append(.null) }
        }
        return .array(out)
    }

    mutating func cmdMset(_ a: [[UInt8]], nx: Bool, _ env: inout KVEnvironment) -> Reply {
        if a.count % 2 == 0 { return .arity(nx ? "msetnx" : "mset") }
        if nx {
            var j = 1
            while j < a.count {
                if lookup(a[j], &env, touch: false) != nil { return .integer(0) }
                j += 2
            }
        }
        var j = 1
        while j < a.count {
            write(a[j], .string(a[j + 1]), expireAt: kvNoExpiry, now: env.now)
            j += 2
        }
        return nx ? .integer(1) : .ok
    }

    mutating func cmdGetset(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(let v):
            write(a[1], .string(a[2]), expireAt: kvNoExpiry, now: env.now)
            return .bulk(v)
        }
    }

    mutating func cmdGetdel(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(let v):
            if v != nil { delete(a[1]) }
            return .bulk(v)
        }
    }

    mutating func cmdGetex(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        var persist = false, ex = false, px = false, exat = false, pxat = false
        var expire: [UInt8]? = nil
        var j = 2
        while j < a.count {
            let o = a[j]
            let hasNext = j + 1 < a.count
            if eq(o, "persist") && !ex && !exat && !px && !pxat {
                persist = true
            } else if eq(o, "ex") && !persist && !exat && !px && !pxat && hasNext {
                ex = true; expire = a[j + 1]; j += 1
            } else if eq(o, "px") && !persist && !ex && !exat && !pxat && hasNext {
                px = true; expire = a[j + 1]; j += 1
            } else if eq(o, "exat") && !persist && !ex && !px && !pxat && hasNext {
                exat = true; expire = a[j + 1]; j += 1
            } else if eq(o, "pxat") && !persist && !ex && !exat && !px && hasNext {
                pxat = true; expire = a[j + 1]; j += 1
            } else {
                return .syntax
            }
            j += 1
        }
        let v: [UInt8]
        switch lookup(a[1], &env) {
        case nil: return .null
        case .string(let b)?: v = b
        default: return .wrongType
        }
        var when = kvNoExpiry
        if let expire {
            switch expireMillis(expire, seconds: ex || exat, absolute: exat || pxat, name: "getex", now: env.now) {
            case .failure(let e): return e.reply
            case .success(let ms): when = ms
            }
            if (exat || pxat) && when <= env.now {
                delete(a[1])
            } else {
                setExpiry(a[1], when)
            }
        } else if persist {
            setExpiry(a[1], kvNoExpiry)
        }
        return .bulk(v)
    }

    mutating func stringLength(_ key: [UInt8]) -> Int {
        if case .string(let b)? = read(key)?.value { return b.count }
        return 0
    }

    mutating func cmdAppend(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch kind(a[1], &env) {
        case nil:
            write(a[1], .string(a[2]), expireAt: kvNoExpiry, now: env.now)
            return .integer(Int64(a[2].count))
        case .string:
            if stringLength(a[1]) + a[2].count > maxStringLength {
                return .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
            }
            return modify(a[1], now: env.now) { v in
                guard case .string(var s)? = v else { return .integer(0) }
                v = nil
                s.append(contentsOf: a[2])
                v = .string(s)
                return .integer(Int64(s.count))
            }
        default: return .wrongType
        }
    }

    mutating func cmdStrlen(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(let v): return .integer(Int64(v?.count ?? 0))
        }
    }

    mutating func cmdGetrange(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard var start = RedisNumber.parseInt(a[2]), var end = RedisNumber.parseInt(a[3]) else { return .notInteger }
        let s: [UInt8]
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(nil): return .bulk([])
        case .success(let v?): s = v
        }
        let n = Int64(s.count)
        if start < 0 && end < 0 && start > end { return .bulk([]) }
        if start < 0 { start = n + start }
        if end < 0 { end = n + end }
        if start < 0 { start = 0 }
        if end < 0 { end = 0 }
        if end >= n { end = n - 1 }
        if start > end || n == 0 { return .bulk([]) }
        return .bulk(Array(s[Int(start)...Int(end)]))
    }

    mutating func cmdSetrange(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let offset = RedisNumber.parseInt(a[2]) else { return .notInteger }
        if offset < 0 { return .error("ERR offset is out of range") }
        let value = a[3]
        let tooBig = Reply.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        // Redis's checkStringLength: the end of the write must not pass 512 MB (nor overflow).
        let (total, overflow) = offset.addingReportingOverflow(Int64(value.count))
        let fits = !overflow && total <= Int64(maxStringLength)
        switch kind(a[1], &env) {
        case nil:
            if value.isEmpty { return .integer(0) }
            if !fits { return tooBig }
            var s = [UInt8](repeating: 0, count: Int(offset))
            s.append(contentsOf: value)
            write(a[1], .string(s), expireAt: kvNoExpiry, now: env.now)
            return .integer(Int64(s.count))
        case .string:
            if value.isEmpty { return .integer(Int64(stringLength(a[1]))) }
            if !fits { return tooBig }
            return modify(a[1], now: env.now) { v in
                guard case .string(var s)? = v else { return .integer(0) }
                v = nil
                let o = Int(offset)
                if s.count < o + value.count { s.append(contentsOf: repeatElement(0, count: o + value.count - s.count)) }
                s.replaceSubrange(o..<(o + value.count), with: value)
                v = .string(s)
                return .integer(Int64(s.count))
            }
        default: return .wrongType
        }
    }

    mutating func incrDecr(_ key: [UInt8], _ incr: Int64, _ env: inout KVEnvironment) -> Reply {
        let old: Int64
        switch lookup(key, &env) {
        case nil: old = 0
        case .string(let b)?:
            guard let v = RedisNumber.parseInt(b) else { return .notInteger }
            old = v
        default: return .wrongType
        }
        if (incr < 0 && old < 0 && incr < Int64.min - old) || (incr > 0 && old > 0 && incr > Int64.max - old) {
            return .error("ERR increment or decrement would overflow")
        }
        var new = old + incr
        if let broken = env.broken, broken == .wrongIncr, incr > 0, new > 1000, new < .max { new += 1 }
        modify(key, now: env.now) { $0 = .string(RedisNumber.format(new)) }
        return .integer(new)
    }

    mutating func cmdIncrbyfloat(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let notFloat = Reply.error("ERR value is not a valid float")
        var value: Float80 = 0
        switch lookup(a[1], &env) {
        case nil: break
        case .string(let b)?:
            guard let v = RedisNumber.parseLongDouble(b) else { return notFloat }
            value = v
        default: return .wrongType
        }
        guard let incr = RedisNumber.parseLongDouble(a[2]) else { return notFloat }
        value += incr
        if value.isNaN || value.isInfinite { return .error("ERR increment would produce NaN or Infinity") }
        let s = RedisNumber.formatLongDouble(value)
        modify(a[1], now: env.now) { $0 = .string(s) }
        return .bulk(s)
    }
}
