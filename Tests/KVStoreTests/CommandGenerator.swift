/// A small seeded generator (SplitMix64), independent of the SDK's.
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ p: Double) -> Bool { Double(next() % 1_000_000) / 1_000_000 < p }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
}

/// How a reply is compared against redis-server's.
enum Comparison {
    case exact, unordered, ttl(Int64), shape, scanKeys
    /// An array of (name, value) pairs in any order; or a scan reply whose page is such pairs.
    case unorderedPairs, scanPairs
}

/// Random command sequences over all command groups, with errors and edge cases.
struct CommandGenerator {
    var rng: SeededRNG
    var includeV2: Bool
    var includeRandom: Bool
    let now: () -> Int64

    static let groups = ["string", "keys", "list", "hash", "set", "expiry", "errors", "zset", "zlex", "bits", "config"]

    /// The groups commands are drawn from (uniformly; repeat a group to weight it).
    var groups = Self.groups

    init(seed: UInt64, includeV2: Bool, includeRandom: Bool = false, groups: [String] = Self.groups,
         now: @escaping () -> Int64) {
        self.groups = groups
        rng = SeededRNG(seed: seed)
        self.includeV2 = includeV2
        self.includeRandom = includeRandom
        self.now = now
    }

    mutating func key() -> String {
        if rng.chance(0.03) { return "" }
        if rng.chance(0.03) { return "bin\u{0}\u{7f}\u{1}" }
        return "k\(rng.int(24))"
    }

    mutating func member() -> String {
        switch rng.int(10) {
        case 0: return ""
        case 1: return String(rng.int(20))
        case 2: return "m\u{0}\(rng.int(3))"
        default: return "m\(rng.int(12))"
        }
    }

    mutating func intArg() -> String {
        switch rng.int(24) {
        case 0: return "9223372036854775807"
        case 1: return "-9223372036854775808"
        case 2: return "9223372036854775808"
        case 3: return "abc"
        case 4: return ""
        case 5: return " 1"
        case 6: return "+1"
        case 7: return "007"
        case 8: return "-0"
        case 9: return "1.5"
        case 10: return String(-rng.int(30))
        default: return String(rng.int(40) - 5)
        }
    }

    mutating func value() -> String {
        switch rng.int(16) {
        case 0: return ""
        case 1: return intArg()
        case 2: return String(rng.int(2000))
        case 3: return "3.25"
        case 4: return "1e3"
        case 5: return "inf"
        case 6: return "-0.5"
        case 7: return String(repeating: "x", count: 50 + rng.int(30))
        case 8: return "v\u{0}\u{ff}\r\n"
        case 9: return "999"
        default: return "v\(rng.int(50))"
        }
    }

    mutating func floatArg() -> String {
        rng.pick(["1.5", "-2.25", "0.1", "3", "1e2", "-1e-3", "abc", "", "inf", "nan", " 1", "1.0e400", "5.0e3",
                  "10.5", "-7", "0x10"])
    }

    mutating func index() -> String {
        rng.chance(0.05) ? rng.pick(["x", "", "99999999999999999999"]) : String(rng.int(14) - 7)
    }

    mutating func pattern() -> String {
        rng.pick(["*", "k1*", "k?", "k[0-3]*", "*[^1]", "\\*", "k1[", "bin*", "*2", "h*", "[a-z]*"])
    }

    mutating func score() -> String {
        rng.chance(0.12) ? rng.pick(["nan", "abc", "", " 1", "1e400", "(1", "-nan", "1e-400"])
            : rng.pick(["1", "2", "3", "-1", "0", "1.5", "0.1", "0.3", "-0", "inf", "-inf", "+inf", "1e3", "7", "-2.5",
                        "3.0000000000000004", "0x10", "1e-310", "10", "5"])
    }

    mutating func scoreBound() -> String {
        rng.pick(["-inf", "+inf", "inf", "(1", "1", "(0", "0", "2.5", "(inf", "(-inf", "", "x", "nan", "(nan", "5",
                  "-1", "(-1", "3", "(3", " 2", "1e400", "(", "0.1", "(0.3"])
    }

    mutating func lexBound() -> String {
        rng.chance(0.1) ? rng.pick(["", "a", "+x", "-x", "!"])
            : rng.pick(["-", "+", "[a", "(a", "[c", "(c", "[m1", "(m5", "[", "(", "[b\u{0}", "[h", "(zz", "[d"])
    }

    mutating func zmember() -> String { rng.chance(0.1) ? "m\u{0}x" : "m\(rng.int(10))" }

    mutating func rankIndex() -> String {
        rng.chance(0.08) ? rng.pick(["9223372036854775807", "-9223372036854775808", "x", "1.5", "9223372036854775808"])
            : String(rng.int(16) - 8)
    }

    mutating func zkeys(_ n: Int) -> [String] { (0..<n).map { _ in key() } }

    /// The next command and how to compare its reply.
    mutating func next() -> ([String], Comparison) {
        var (cmd, cmp) = command(groups[rng.int(groups.count)])
        // Arity mistakes: drop trailing arguments (not where a shorter form picks at random).
        let random: Set<String> = ["SPOP", "SRANDMEMBER", "HRANDFIELD", "RANDOMKEY", "ZRANDMEMBER", "SCAN", "SSCAN", "HSCAN"]
        if rng.chance(0.02) && cmd.count > 1 && !random.contains(cmd[0]) {
            cmd.removeLast(1 + rng.int(cmd.count - 1))
        }
        return (cmd, cmp)
    }

    mutating func command(_ group: String) -> ([String], Comparison) {
        let k = key()
        switch group {
        case "string":
            switch rng.int(24) {
            case 0, 1: return (["SET", k, value()], .exact)
            case 2:
                var c = ["SET", k, value()]
                for _ in 0..<rng.int(4) {
                    switch rng.int(9) {
                    case 0: c.append("NX")
                    case 1: c.append("XX")
                    case 2: c.append("GET")
                    case 3: c.append("KEEPTTL")
                    case 4: c += ["EX", rng.pick(["100", "200", "0", "-1", "abc", "9223372036854775807"])]
                    case 5: c += ["PX", rng.pick(["100000", "300000", "0"])]
                    case 6: c += ["EXAT", String(now() / 1000 + 500)]
                    case 7: c += ["PXAT", String(now() + 600_000)]
                    default: c.append(rng.pick(["EX", "BOGUS", "px"]))
                    }
                }
                return (c, .exact)
            case 3, 4: return (["GET", k], .exact)
            case 5: return (["SETNX", k, value()], .exact)
            case 6: return ([rng.pick(["SETEX", "PSETEX"]), k, rng.pick(["100000", "0", "-5", "x", "2000000"]), value()], .exact)
            case 7: return (["MGET", k, key(), key()], .exact)
            case 8: return (["MSET", k, value(), key(), value()] + (rng.chance(0.2) ? [key()] : []), .exact)
            case 9: return (["MSETNX", k, value(), key(), value()], .exact)
            case 10: return (["GETSET", k, value()], .exact)
            case 11: return (["GETDEL", k], .exact)
            case 12:
                var c = ["GETEX", k]
                switch rng.int(6) {
                case 0: c += ["EX", "300"]
                case 1: c += ["PX", rng.pick(["400000", "0", "abc"])]
                case 2: c += ["PERSIST"]
                case 3: c += ["EXAT", String(now() / 1000 - 10)]
                case 4: c += ["PERSIST", "EX", "10"]
                default: break
                }
                return (c, .exact)
            case 13: return (["APPEND", k, value()], .exact)
            case 14: return (["STRLEN", k], .exact)
            case 15: return (["GETRANGE", k, index(), index()], .exact)
            case 16: return (["SETRANGE", k, rng.pick(["0", "3", "10", "-1", "x", "1"]), value()], .exact)
            case 17, 18: return ([rng.pick(["INCR", "DECR"]), k], .exact)
            case 19, 20: return ([rng.pick(["INCRBY", "DECRBY"]), k, intArg()], .exact)
            case 21: return (["INCRBYFLOAT", k, floatArg()], .exact)
            case 22: return (["SET", k, rng.pick(["10", "-3", "9223372036854775806", "-9223372036854775807", "2.5", "1e5"])], .exact)
            default: return (["SET", k, String(rng.int(100))], .exact)
            }
        case "keys":
            switch rng.int(14) {
            case 0, 1: return ([rng.pick(["DEL", "UNLINK"]), k, key()], .exact)
            case 2: return (["EXISTS", k, key(), k], .exact)
            case 3, 4: return (["TYPE", k], .exact)
            case 5: return ([rng.pick(["RENAME", "RENAMENX"]), k, rng.chance(0.1) ? k : key()], .exact)
            case 6: return (["KEYS", pattern()], .unordered)
            case 7:
                var c = ["SCAN", "0", "COUNT", "1000"]
                if rng.chance(0.5) { c += ["MATCH", pattern()] }
                if rng.chance(0.3) { c += ["TYPE", rng.pick(["string", "list", "hash", "set", "zset"])] }
                if rng.chance(0.05) { c = ["SCAN", rng.pick(["x", "-", " 1"])] }
                if rng.chance(0.05) { c = ["SCAN", "0", "COUNT", rng.pick(["0", "x"])] }
                return (c, .scanKeys)
            case 8: return (["DBSIZE"], .exact)
            case 9: return (["EXISTS", k], .exact)
            case 10 where includeV2:
                var c = ["COPY", k, rng.chance(0.1) ? k : key()]
                if rng.chance(0.4) { c.append("REPLACE") }
                if rng.chance(0.1) { c += ["DB", rng.pick(["0", "x"])] }
                return (c, .exact)
            case 11 where includeRandom: return (["RANDOMKEY"], .shape)
            case 12: return (["ECHO", value()], .exact)
            default: return (["PING"] + (rng.chance(0.3) ? [value()] : []), .exact)
            }
        case "list":
            switch rng.int(22) {
            case 0, 1, 2: return ([rng.pick(["LPUSH", "RPUSH"]), k, member(), member()], .exact)
            case 3: return ([rng.pick(["LPUSHX", "RPUSHX"]), k, member()], .exact)
            case 4, 5: return ([rng.pick(["LPOP", "RPOP"]), k] + (rng.chance(0.5) ? [rng.pick(["0", "1", "2", "5", "-1", "x"])] : []), .exact)
            case 6: return (["LLEN", k], .exact)
            case 7, 8: return (["LRANGE", k, index(), index()], .exact)
            case 9: return (["LINDEX", k, index()], .exact)
            case 10: return (["LSET", k, index(), member()], .exact)
            case 11: return (["LREM", k, rng.pick(["0", "1", "-1", "2", "-2", "x"]), member()], .exact)
            case 12: return (["LTRIM", k, index(), index()], .exact)
            case 13: return (["LINSERT", k, rng.pick(["BEFORE", "AFTER", "middle"]), member(), member()], .exact)
            case 14:
                var c = ["LPOS", k, member()]
                if rng.chance(0.5) { c += ["RANK", rng.pick(["1", "2", "-1", "-2", "0", "x"])] }
                if rng.chance(0.5) { c += ["COUNT", rng.pick(["0", "1", "2", "-1"])] }
                if rng.chance(0.3) { c += ["MAXLEN", rng.pick(["0", "2", "5", "-3"])] }
                if rng.chance(0.05) { c.append("BOGUS") }
                return (c, .exact)
            case 15: return (["LMOVE", k, rng.chance(0.2) ? k : key(), rng.pick(["LEFT", "RIGHT", "up"]), rng.pick(["LEFT", "RIGHT"])], .exact)
            case 16: return (["RPOPLPUSH", k, rng.chance(0.2) ? k : key()], .exact)
            case 17 where includeV2:
                let n = rng.int(3) + 1
                var c = ["LMPOP", rng.chance(0.1) ? rng.pick(["0", "x", "-1"]) : String(n)]
                for _ in 0..<n { c.append(key()) }
                c.append(rng.pick(["LEFT", "RIGHT", "MIDDLE"]))
                if rng.chance(0.5) { c += ["COUNT", rng.pick(["1", "2", "10", "0", "x"])] }
                return (c, .exact)
            default: return (["RPUSH", k, member(), member(), member()], .exact)
            }
        case "hash":
            let f = "f\(rng.int(8))"
            switch rng.int(20) {
            case 0, 1, 2: return (["HSET", k, f, value()] + (rng.chance(0.3) ? ["f\(rng.int(8))", value()] : []), .exact)
            case 3: return (["HSETNX", k, f, value()], .exact)
            case 4, 5: return (["HGET", k, f], .exact)
            case 6: return (["HMSET", k, f, value(), "g", value()], .exact)
            case 7: return (["HMGET", k, f, "f1", "nope"], .exact)
            case 8: return (["HDEL", k, f, "f\(rng.int(8))"], .exact)
            case 9: return (["HEXISTS", k, f], .exact)
            case 10: return (["HLEN", k], .exact)
            case 11: return ([rng.pick(["HKEYS", "HVALS", "HGETALL"]), k], .unordered)
            case 12, 13: return (["HINCRBY", k, f, intArg()], .exact)
            case 14: return (["HINCRBYFLOAT", k, f, floatArg()], .exact)
            case 15: return (["HSTRLEN", k, f], .exact)
            case 16:
                if includeRandom { return (["HRANDFIELD", k] + (rng.chance(0.5) ? [String(rng.int(10) - 5)] : []), .shape) }
                return (["HRANDFIELD", k, rng.pick(["1000", "0", "x"])] + (rng.chance(0.5) ? ["WITHVALUES"] : []), .unordered)
            case 17 where includeRandom:
                return (["HRANDFIELD", k, String(-rng.int(5) - 1)] + (rng.chance(0.5) ? ["WITHVALUES"] : []), .shape)
            default: return (["HSET", k, f, String(rng.int(100))], .exact)
            }
        case "set":
            switch rng.int(20) {
            case 0, 1, 2: return (["SADD", k, member(), member()], .exact)
            case 3: return (["SREM", k, member(), member()], .exact)
            case 4: return (["SMEMBERS", k], .unordered)
            case 5: return (["SISMEMBER", k, member()], .exact)
            case 6: return (["SMISMEMBER", k, member(), member()], .exact)
            case 7: return (["SCARD", k], .exact)
            case 8:
                if includeRandom { return (["SPOP", k] + (rng.chance(0.5) ? [String(rng.int(4))] : []), .shape) }
                return (["SPOP", k, rng.pick(["1000", "0", "-1", "x"])], .unordered)
            case 9:
                if includeRandom { return (["SRANDMEMBER", k] + (rng.chance(0.7) ? [String(rng.int(10) - 5)] : []), .shape) }
                return (["SRANDMEMBER", k, rng.pick(["1000", "0", "x"])], .unordered)
            case 10, 11: return ([rng.pick(["SINTER", "SUNION", "SDIFF"]), k, key(), key()], .unordered)
            case 12: return ([rng.pick(["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"]), key(), k, key()], .exact)
            case 13: return (["SMOVE", k, rng.chance(0.1) ? k : key(), member()], .exact)
            case 14 where includeRandom: return (["SRANDMEMBER", k, String(-rng.int(6) - 1)], .shape)
            default: return (["SADD", k, String(rng.int(30))], .exact)
            }
        case "zset":
            switch rng.int(34) {
            case 0, 1, 2, 3:
                var c = ["ZADD", k]
                if rng.chance(0.3) {
                    for _ in 0..<(1 + rng.int(2)) { c.append(rng.pick(["NX", "XX", "GT", "LT", "CH", "INCR", "ch"])) }
                }
                for _ in 0..<(1 + rng.int(3)) { c += [score(), zmember()] }
                if rng.chance(0.03) { c.append(score()) }
                return (c, .exact)
            case 4: return (["ZINCRBY", k, score(), zmember()], .exact)
            case 5: return (["ZREM", k, zmember(), zmember()], .exact)
            case 6: return (["ZCARD", k], .exact)
            case 7: return (["ZSCORE", k, zmember()], .exact)
            case 8: return (["ZMSCORE", k, zmember(), zmember()], .exact)
            case 9: return ([rng.pick(["ZRANK", "ZREVRANK"]), k, zmember()], .exact)
            case 10: return (["ZCOUNT", k, scoreBound(), scoreBound()], .exact)
            case 11, 12:
                var c = ["ZRANGE", k]
                let by = rng.int(3)
                if by == 0 { c += [rankIndex(), rankIndex()] } else { c += [scoreBound(), scoreBound()] }
                if by == 1 { c.append("BYSCORE") }
                if by == 2 && rng.chance(0.2) { c.append("BYLEX") }
                if rng.chance(0.3) { c.append("REV") }
                if rng.chance(0.3) { c += ["LIMIT", rng.pick(["0", "1", "-1", "2", "x"]), rng.pick(["1", "2", "-1", "0", "100"])] }
                if rng.chance(0.4) { c.append("WITHSCORES") }
                if rng.chance(0.03) { c.append(rng.pick(["REV", "BOGUS", "BYSCORE"])) }
                return (c, .exact)
            case 13: return (["ZREVRANGE", k, rankIndex(), rankIndex()] + (rng.chance(0.5) ? ["WITHSCORES"] : []), .exact)
            case 14, 15:
                var c = [rng.pick(["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]), k, scoreBound(), scoreBound()]
                if rng.chance(0.4) { c.append("WITHSCORES") }
                if rng.chance(0.3) { c += ["LIMIT", rng.pick(["0", "1", "-1", "2", "3"]), rng.pick(["1", "2", "-1", "0", "9223372036854775807"])] }
                return (c, .exact)
            case 16:
                var c = ["ZRANGESTORE", key(), k]
                if rng.chance(0.5) { c += [rankIndex(), rankIndex()] } else { c += [scoreBound(), scoreBound(), "BYSCORE"] }
                if rng.chance(0.2) { c.append("REV") }
                if rng.chance(0.1) { c.append("WITHSCORES") }
                return (c, .exact)
            case 17: return (["ZREMRANGEBYRANK", k, rankIndex(), rankIndex()], .exact)
            case 18: return (["ZREMRANGEBYSCORE", k, scoreBound(), scoreBound()], .exact)
            case 19:
                var c = [rng.pick(["ZPOPMIN", "ZPOPMAX"]), k]
                if rng.chance(0.6) { c.append(rng.pick(["1", "2", "0", "-1", "x", "100"])) }
                if rng.chance(0.03) { c.append("1") }
                return (c, .exact)
            case 20:
                if includeRandom { return (["ZRANDMEMBER", k] + (rng.chance(0.6) ? [String(rng.int(10) - 5)] : []), .shape) }
                let count = rng.pick(["1000", "0", "x", "-9223372036854775808", "4611686018427387904"])
                if rng.chance(0.5) { return (["ZRANDMEMBER", k, count, "WITHSCORES"], .unorderedPairs) }
                return (["ZRANDMEMBER", k, count], .unordered)
            case 21, 22, 23:
                let op = rng.pick(["ZUNION", "ZINTER", "ZDIFF"])
                let n = 1 + rng.int(3)
                var c = [op, rng.chance(0.05) ? rng.pick(["0", "-1", "x", "9"]) : String(n)] + [k] + zkeys(n - 1)
                if rng.chance(0.4) { c += ["WEIGHTS"] + (0..<n).map { _ in rng.pick(["1", "2", "0.5", "-1", "0", "0.1", "inf", "nan"]) } }
                if rng.chance(0.4) { c += ["AGGREGATE", rng.pick(["SUM", "MIN", "MAX", "avg"])] }
                if rng.chance(0.5) { c.append("WITHSCORES") }
                return (c, .exact)
            case 24, 25:
                let op = rng.pick(["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"])
                let n = 1 + rng.int(3)
                var c = [op, key(), String(n), k] + zkeys(n - 1)
                if rng.chance(0.4) { c += ["WEIGHTS"] + (0..<n).map { _ in rng.pick(["1", "2", "0.5", "-1", "0.1"]) } }
                if rng.chance(0.4) { c += ["AGGREGATE", rng.pick(["SUM", "MIN", "MAX"])] }
                if rng.chance(0.05) { c.append("WITHSCORES") }
                return (c, .exact)
            case 26:
                let n = 1 + rng.int(3)
                var c = ["ZINTERCARD", rng.chance(0.05) ? rng.pick(["0", "x", "5"]) : String(n), k] + zkeys(n - 1)
                if rng.chance(0.4) { c += ["LIMIT", rng.pick(["0", "1", "2", "-1", "x"])] }
                return (c, .exact)
            case 27:
                var c = ["ZSCAN", k, rng.chance(0.1) ? rng.pick(["x", "-1", "18446744073709551616"]) : "0"]
                if rng.chance(0.4) { c += ["MATCH", rng.pick(["m1*", "*", "m[0-4]", "*x"])] }
                if rng.chance(0.3) { c += ["COUNT", rng.pick(["1000", "0", "x", "5"])] }
                if rng.chance(0.05) { c.append("TYPE") }
                return (c, .exact)
            case 28:
                var c = ["SSCAN", k, "0", "COUNT", "1000"]
                if rng.chance(0.4) { c += ["MATCH", rng.pick(["m1*", "*", "1*", "[0-4]"])] }
                return (c, .scanKeys)
            case 29:
                var c = ["HSCAN", k, "0", "COUNT", "1000"]
                if rng.chance(0.4) { c += ["MATCH", rng.pick(["f1*", "*", "f[0-4]"])] }
                return (c, .scanPairs)
            default: return (["ZADD", k, String(rng.int(10)), zmember()], .exact)
            }
        case "zlex":
            // Sorted sets whose scores are all 0, where lexicographic ranges are defined.
            let z = "zl\(rng.int(4))"
            let m = rng.pick(["a", "b", "c", "d", "e", "f", "g", "h", "m1", "m5", "", "b\u{0}", "zz"])
            switch rng.int(10) {
            case 0, 1, 2: return (["ZADD", z, "0", m, "0", rng.pick(["a", "c", "e", "g", "m2"])], .exact)
            case 3: return (["ZLEXCOUNT", z, lexBound(), lexBound()], .exact)
            case 4, 5:
                var c = [rng.pick(["ZRANGEBYLEX", "ZREVRANGEBYLEX"]), z, lexBound(), lexBound()]
                if rng.chance(0.3) { c += ["LIMIT", rng.pick(["0", "1", "-1", "2"]), rng.pick(["1", "2", "-1", "0"])] }
                if rng.chance(0.05) { c.append("WITHSCORES") }
                return (c, .exact)
            case 6:
                var c = ["ZRANGE", z, lexBound(), lexBound(), "BYLEX"]
                if rng.chance(0.4) { c.append("REV") }
                if rng.chance(0.3) { c += ["LIMIT", rng.pick(["0", "1", "-1"]), rng.pick(["1", "3", "-1"])] }
                return (c, .exact)
            case 7: return (["ZREMRANGEBYLEX", z, lexBound(), lexBound()], .exact)
            case 8: return (["ZRANGESTORE", key(), z, lexBound(), lexBound(), "BYLEX"] + (rng.chance(0.3) ? ["REV"] : []), .exact)
            default: return ([rng.pick(["ZREM", "ZSCORE", "ZRANK"]), z, m], .exact)
            }
        case "bits":
            func offset() -> String {
                rng.chance(0.08) ? rng.pick(["4294967296", "-1", "x", "9223372036854775807", "", "1.0"])
                    : String(rng.int(rng.chance(0.8) ? 64 : 400))
            }
            func range() -> [String] {
                rng.chance(0.3) ? [] : [rng.pick(["0", "1", "-1", "-2", "2", "5", "-100", "100", "x", "-9223372036854775808",
                                                  "9223372036854775807"]),
                                        rng.pick(["0", "1", "-1", "-3", "3", "7", "100", "-100", "x", "9223372036854775807"])]
                    + (rng.chance(0.4) ? [rng.pick(["BYTE", "BIT", "bit", "words"])] : [])
            }
            func fieldType() -> String {
                rng.chance(0.1) ? rng.pick(["u64", "i65", "u0", "I8", "x", "", "i", "u-1"])
                    : rng.pick(["u1", "i1", "u8", "i8", "u16", "i16", "u5", "i7", "i64", "u63", "i32", "u31"])
            }
            func fieldOffset() -> String {
                rng.chance(0.08) ? rng.pick(["4294967296", "-1", "#-1", "#", "x", "#9223372036854775807"])
                    : (rng.chance(0.3) ? "#\(rng.int(6))" : String(rng.int(80)))
            }
            switch rng.int(16) {
            case 0, 1: return (["SETBIT", k, offset(), rng.pick(["0", "1", "1", "2", "-1", "x"])], .exact)
            case 2: return (["GETBIT", k, rng.chance(0.1) ? "4294967295" : offset()], .exact)
            case 3, 4: return (["BITCOUNT", k] + range(), .exact)
            case 5, 6:
                var c = ["BITPOS", k, rng.pick(["0", "1", "1", "0", "2", "x"])]
                let r = range()
                c += rng.chance(0.3) ? Array(r.prefix(1)) : r
                return (c, .exact)
            case 7:
                let op = rng.pick(["AND", "OR", "XOR", "NOT", "nand"])
                return (["BITOP", op, key(), k] + (op == "NOT" && rng.chance(0.8) ? [] : [key()]), .exact)
            case 8, 9, 10:
                var c = [rng.chance(0.15) ? "BITFIELD_RO" : "BITFIELD", k]
                for _ in 0..<(1 + rng.int(3)) {
                    switch rng.int(5) {
                    case 0: c += ["GET", fieldType(), fieldOffset()]
                    case 1: c += ["SET", fieldType(), fieldOffset(), rng.pick(["0", "1", "-1", "255", "256", "-129", "100",
                                                                               "9223372036854775807", "-9223372036854775808", "x"])]
                    case 2: c += ["INCRBY", fieldType(), fieldOffset(), rng.pick(["1", "-1", "100", "-200", "1000",
                                                                                   "9223372036854775807", "-9223372036854775808"])]
                    case 3: c += ["OVERFLOW", rng.pick(["WRAP", "SAT", "FAIL", "fail", "bogus"])]
                    default: c += [rng.pick(["GET", "SET", "NOPE"])]
                    }
                }
                return (c, .exact)
            case 11, 12:
                var c = ["LCS", k, key()]
                for _ in 0..<rng.int(3) {
                    c += rng.pick([["LEN"], ["IDX"], ["WITHMATCHLEN"], ["MINMATCHLEN", rng.pick(["0", "2", "-1", "x"])], ["BAD"]])
                }
                return (c, .exact)
            case 13: return (["SUBSTR", k, index(), index()], .exact)
            case 14:
                let n = rng.chance(0.1) ? rng.pick(["0", "x", "5", "-1"]) : String(1 + rng.int(3))
                var c = ["SINTERCARD", n, k, key(), key()]
                if rng.chance(0.4) { c += ["LIMIT", rng.pick(["0", "1", "2", "-1", "x"])] }
                return (c, .exact)
            default: return (["SET", k, rng.pick(["foobar", "\u{ff}\u{0}\u{f0}", "abc", "", "ohmytext", "mynewtext"])], .exact)
            }
        case "config":
            // Thresholds stay above the generator's collection sizes, so Redis never converts an encoding that the
            // replies depend on (ZSCAN answers a compact sorted set whole).
            let settings: [(String, [String])] = [
                ("maxmemory", ["0", "100mb", "1gb", "4096MB", "5000000k", "abc", "-1", "1tb", "1.5gb"]),
                ("maxmemory-policy", ["noeviction", "allkeys-lru", "ALLKEYS-LFU", "volatile-ttl", "bogus"]),
                ("maxmemory-samples", ["5", "10", "0", "x"]),
                ("appendonly", ["yes", "no", "YES", "maybe"]),
                ("appendfsync", ["always", "everysec", "sometimes"]),
                ("hash-max-listpack-entries", ["512", "1000", "-1", "abc", "9223372036854775807"]),
                ("hash-max-ziplist-entries", ["512", "256"]),
                ("hash-max-listpack-value", ["64", "128", "x"]),
                ("set-max-intset-entries", ["512", "1000", "64"]),
                ("zset-max-listpack-entries", ["128", "64", "256", "1.5"]),
                ("zset-max-ziplist-value", ["64", "32"]),
                ("list-max-listpack-size", ["-2", "-1", "8", "99999999999", "-2147483648"]),
                ("lfu-log-factor", ["10", "0", "-1"]), ("lfu-decay-time", ["1", "5"]),
                ("timeout", ["0", "300", "5.5"]), ("hz", ["10", "1000", "0", "20"]),
                ("slowlog-log-slower-than", ["10000", "-1", "-2"]), ("activerehashing", ["yes", "no"]),
                ("databases", ["16"]), ("nosuchparam", ["1"]),
            ]
            switch rng.int(5) {
            case 0, 1:
                var c = ["CONFIG", "SET"]
                for _ in 0..<(rng.chance(0.2) ? 2 : 1) {
                    let (name, values) = rng.pick(settings)
                    c += [rng.chance(0.1) ? name.uppercased() : name, rng.pick(values)]
                }
                if rng.chance(0.03) { c.append("extra") }
                return (c, .exact)
            case 2, 3:
                var c = ["CONFIG", "GET", rng.pick(["maxmemory", "maxmemory-policy", "hash-max-*", "zset-max-*", "maxmemory-p*",
                                                    "set-max-intset-entries", "list-max-*", "appendonly", "HZ", "lfu-*", "nosuch*",
                                                    "hash-max-ziplist-entries", "timeout", "slowlog-log-slower-than"])]
                if rng.chance(0.3) { c.append(rng.pick(["appendfsync", "maxmemory", "zset-max-ziplist-*"])) }
                return (c, .unorderedPairs)
            default:
                return (["CONFIG", rng.pick(["RESETSTAT", "resetstat", "bogus"])] + (rng.chance(0.2) ? ["x"] : []), .exact)
            }
        case "expiry":
            switch rng.int(14) {
            case 0, 1:
                var c = [rng.pick(["EXPIRE", "PEXPIRE"]), k, rng.pick(["1000", "500000", "2000", "0", "-1", "x", "9223372036854775807"])]
                if rng.chance(0.5) { c.append(rng.pick(["NX", "XX", "GT", "LT", "BOGUS"])) }
                if rng.chance(0.1) { c.append(rng.pick(["NX", "XX", "GT", "LT"])) }
                return (c, .exact)
            case 2:
                return (["EXPIREAT", k, rng.pick([String(now() / 1000 + 3000), "1", String(now() / 1000 - 5)])] + (rng.chance(0.3) ? [rng.pick(["GT", "LT"])] : []), .exact)
            case 3: return (["PEXPIREAT", k, rng.pick([String(now() + 4_000_000), "100"])], .exact)
            case 4, 5: return (["TTL", k], .ttl(3))
            case 6: return (["PTTL", k], .ttl(3000))
            case 7: return (["EXPIRETIME", k], .ttl(3))
            case 8: return (["PEXPIRETIME", k], .ttl(3000))
            case 9: return (["PERSIST", k], .exact)
            case 10: return (["SET", k, value(), "EX", "1000"], .exact)
            default: return (["EXPIRE", k, "3000"], .exact)
            }
        default:
            switch rng.int(8) {
            case 0: return (["NOSUCHCMD", k, value()], .exact)
            case 1: return (["GET"], .exact)
            case 2: return (["SET", k], .exact)
            case 3: return (["hSeT", k, "f", value(), "extra"], .exact)
            case 4: return (["Lpush", k, value()], .exact)
            case 5: return (["SELECT", rng.pick(["0", "x", "-1", "99"])], .exact)
            case 6: return (["incr", k], .exact)
            default: return (["mset", k], .exact)
            }
        }
    }
}
