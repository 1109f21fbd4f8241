import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Replies of redis-server 7.0.15 to arguments at the limits, recorded so that they are checked without a
/// redis-server too (``HostileInputTests`` compares thousands more against a live one).
@Suite("Extreme arguments: answers recorded from redis-server 7.0")
struct ExtremeArgumentTests {
    static let fiveThousandOneHundredNineteen = "1." + String(repeating: "0", count: 5117)

    /// Each case runs on a fresh store holding `s` = "hello" and `l` = [a, b, a, c, a].
    static let cases: [([String], String)] = [
        // Offset + length overflows Int64: an error, not a trap.
        (["SETRANGE", "s", "9223372036854775807", "A"], "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"),
        (["SETRANGE", "new", "9223372036854775800", "AAAAAAAAAA"],
         "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"),
        (["SETRANGE", "s", "-1", "A"], "-ERR offset is out of range\r\n"),
        (["SETRANGE", "s", "9223372036854775807", ""], ":5\r\n"),
        (["EXPIRE", "s", "9223372036854776"], "-ERR invalid expire time in 'expire' command\r\n"),
        (["SET", "k", "v", "EX", "9223372036854775"], "-ERR invalid expire time in 'set' command\r\n"),
        (["SET", "k", "v", "PX", "9223372036854775807"], "-ERR invalid expire time in 'set' command\r\n"),
        // Redis negates RANK in C: LONG_MIN stays negative, matches from the tail, and ignores COUNT.
        (["LPOS", "l", "a", "RANK", "-9223372036854775808"], ":4\r\n"),
        (["LPOS", "l", "a", "RANK", "-9223372036854775808", "COUNT", "1"], "*3\r\n:4\r\n:2\r\n:0\r\n"),
        (["LPOS", "l", "a", "RANK", "9223372036854775807"], "$-1\r\n"),
        (["LINDEX", "l", "-9223372036854775808"], "$-1\r\n"),
        (["LRANGE", "l", "-9223372036854775808", "9223372036854775807"],
         "*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nc\r\n$1\r\na\r\n"),
        (["GETRANGE", "s", "-9223372036854775808", "-9223372036854775808"], "$1\r\nh\r\n"),
        (["INCRBY", "s", "1"], "-ERR value is not an integer or out of range\r\n"),
        (["DECRBY", "n", "-9223372036854775808"], "-ERR decrement would overflow\r\n"),
        (["SRANDMEMBER", "l", "-9223372036854775808"],
         "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"),
        // Floats: a subnormal is a float, an underflow to zero is not; 5119 characters are the most.
        (["INCRBYFLOAT", "x", "1e-4940"], "$1\r\n0\r\n"),
        (["INCRBYFLOAT", "x", "1e-5000"], "-ERR value is not a valid float\r\n"),
        (["INCRBYFLOAT", "x", fiveThousandOneHundredNineteen], "$1\r\n1\r\n"),
        (["INCRBYFLOAT", "x", fiveThousandOneHundredNineteen + "0"], "-ERR value is not a valid float\r\n"),
        (["INCRBYFLOAT", "x", "inf"], "-ERR increment would produce NaN or Infinity\r\n"),
        (["INCRBYFLOAT", "x", "nan"], "-ERR value is not a valid float\r\n"),
        (["HINCRBYFLOAT", "h", "f", "1e-4940"], "$1\r\n0\r\n"),
        (["HINCRBYFLOAT", "h", "f", "-inf"], "-ERR value is NaN or Infinity\r\n"),
    ]

    static let version2Cases: [([String], String)] = [
        // numkeys + 2 overflows: a syntax error, not a trap.
        (["LMPOP", "9223372036854775807", "l", "LEFT"], "-ERR syntax error\r\n"),
        (["LMPOP", "9223372036854775806", "l", "LEFT"], "-ERR syntax error\r\n"),
        (["COPY", "s", "d", "DB", "2147483648"],
         "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"),
        (["COPY", "s", "d", "DB", "-2147483649"],
         "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"),
        (["COPY", "s", "d", "DB", "-1"], "-ERR DB index is out of range\r\n"),
    ]

    /// Bits, sorted sets and the newer set and string commands at the limits. Each case runs on a fresh store
    /// holding `s` = "hello", `l` = [a, b, a, c, a], `z` = {a: -inf, b: 0, d: 1.5, c: inf} and `t` = {a, b, x};
    /// no case makes either side allocate more than a few bytes.
    static let newCommandCases: [([String], String)] = [
        (["SETBIT", "s", "4294967296", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["SETBIT", "s", "-1", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["SETBIT", "s", "9223372036854775807", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["GETBIT", "s", "4294967295"],
         ":0\r\n"),
        (["GETBIT", "s", "18446744073709551616"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["BITFIELD", "s", "SET", "u8", "#536870912", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["BITFIELD", "s", "GET", "i64", "#67108863"],
         "*1\r\n:0\r\n"),
        (["BITFIELD", "s", "INCRBY", "i64", "0", "9223372036854775807"],
         "*1\r\n:-1700834071287955457\r\n"),
        (["BITFIELD", "s", "OVERFLOW", "SAT", "INCRBY", "i64", "0", "9223372036854775807"],
         "*1\r\n:9223372036854775807\r\n"),
        (["BITFIELD", "s", "OVERFLOW", "FAIL", "INCRBY", "u63", "0", "-9223372036854775808"],
         "*1\r\n$-1\r\n"),
        (["BITFIELD", "s", "SET", "i64", "#9223372036854775807", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["BITFIELD", "s", "OVERFLOW", "WRAP", "INCRBY", "i64", "0", "-9223372036854775808", "GET", "u63", "1"],
         "*2\r\n:-1700834071287955456\r\n:7522537965566820352\r\n"),
        (["BITFIELD", "s", "OVERFLOW", "SAT", "SET", "i8", "0", "-9223372036854775808", "SET", "u8", "8", "9223372036854775807"],
         "*2\r\n:104\r\n:101\r\n"),
        (["BITFIELD", "s", "SET", "u63", "#4294967295", "1"],
         "-ERR bit offset is not an integer or out of range\r\n"),
        (["BITCOUNT", "s", "-9223372036854775808", "9223372036854775807", "BIT"],
         ":21\r\n"),
        (["BITCOUNT", "s", "9223372036854775807", "-9223372036854775808"],
         ":0\r\n"),
        (["BITPOS", "s", "0", "-9223372036854775808", "9223372036854775807", "BIT"],
         ":0\r\n"),
        (["BITPOS", "s", "1", "9223372036854775807"],
         ":-1\r\n"),
        (["BITPOS", "s", "0", "0", "-1"],
         ":0\r\n"),
        (["BITPOS", "s", "0"],
         ":0\r\n"),
        (["BITOP", "AND", "d", "s", "l"],
         "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (["BITOP", "NOT", "d", "s"],
         ":5\r\n"),
        (["ZINCRBY", "z", "-inf", "c"],
         "-ERR resulting score is not a number (NaN)\r\n"),
        (["ZINCRBY", "z", "inf", "a"],
         "-ERR resulting score is not a number (NaN)\r\n"),
        (["ZADD", "z", "INCR", "inf", "c"],
         "$3\r\ninf\r\n"),
        (["ZADD", "z", "nan", "m"],
         "-ERR value is not a valid float\r\n"),
        (["ZADD", "z", "1e309", "x"],
         "-ERR value is not a valid float\r\n"),
        (["ZRANGE", "z", "-9223372036854775808", "9223372036854775807", "WITHSCORES"],
         "*8\r\n$1\r\na\r\n$4\r\n-inf\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nd\r\n$3\r\n1.5\r\n$1\r\nc\r\n$3\r\ninf\r\n"),
        (["ZRANGE", "z", "(-inf", "(inf", "BYSCORE", "WITHSCORES"],
         "*4\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nd\r\n$3\r\n1.5\r\n"),
        (["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "9223372036854775807", "9223372036854775807"],
         "*0\r\n"),
        (["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "-9223372036854775808"],
         "*3\r\n$1\r\nb\r\n$1\r\nd\r\n$1\r\nc\r\n"),
        (["ZREVRANGE", "z", "-9223372036854775808", "-9223372036854775808"],
         "*0\r\n"),
        (["ZREMRANGEBYRANK", "z", "-9223372036854775808", "-9223372036854775808"],
         ":0\r\n"),
        (["ZCOUNT", "z", "nan", "inf"],
         "-ERR min or max is not a float\r\n"),
        (["ZCOUNT", "z", "-inf", "(nan"],
         "-ERR min or max is not a float\r\n"),
        (["ZUNIONSTORE", "d", "9223372036854775807", "z"],
         "-ERR syntax error\r\n"),
        (["ZINTERCARD", "9223372036854775807", "z"],
         "-ERR syntax error\r\n"),
        (["ZUNION", "2", "z", "t", "WEIGHTS", "0", "inf", "WITHSCORES"],
         "*10\r\n$1\r\nc\r\n$1\r\n0\r\n$1\r\nd\r\n$1\r\n0\r\n$1\r\na\r\n$3\r\ninf\r\n$1\r\nb\r\n$3\r\ninf\r\n$1\r\nx\r\n$3\r\ninf\r\n"),
        (["ZINTER", "2", "z", "z", "WEIGHTS", "-1", "1", "WITHSCORES"],
         "*8\r\n$1\r\na\r\n$1\r\n0\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nc\r\n$1\r\n0\r\n$1\r\nd\r\n$1\r\n0\r\n"),
        (["ZUNION", "1", "z", "WEIGHTS", "-1", "WITHSCORES"],
         "*8\r\n$1\r\nc\r\n$4\r\n-inf\r\n$1\r\nd\r\n$4\r\n-1.5\r\n$1\r\nb\r\n$2\r\n-0\r\n$1\r\na\r\n$3\r\ninf\r\n"),
        (["ZSCORE", "z", "c"],
         "$3\r\ninf\r\n"),
        (["ZSCAN", "z", "18446744073709551615"],
         "*2\r\n$1\r\n0\r\n*8\r\n$1\r\na\r\n$4\r\n-inf\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nd\r\n$3\r\n1.5\r\n$1\r\nc\r\n$3\r\ninf\r\n"),
        (["ZSCAN", "z", "18446744073709551616"],
         "-ERR invalid cursor\r\n"),
        (["ZPOPMIN", "z", "9223372036854775807"],
         "*8\r\n$1\r\na\r\n$4\r\n-inf\r\n$1\r\nb\r\n$1\r\n0\r\n$1\r\nd\r\n$3\r\n1.5\r\n$1\r\nc\r\n$3\r\ninf\r\n"),
        (["ZRANGESTORE", "d", "z", "0", "-1"],
         ":4\r\n"),
        (["ZMSCORE", "z", "a", "c", "nope"],
         "*3\r\n$4\r\n-inf\r\n$3\r\ninf\r\n$-1\r\n"),
        (["ZRANK", "z", "c"],
         ":3\r\n"),
        (["LCS", "s", "l"],
         "-ERR The specified keys must contain string values\r\n"),
        (["LCS", "s", "s", "IDX", "MINMATCHLEN", "-9223372036854775808", "WITHMATCHLEN"],
         "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:0\r\n:4\r\n*2\r\n:0\r\n:4\r\n:5\r\n$3\r\nlen\r\n:5\r\n"),
        (["SINTERCARD", "9223372036854775807", "t"],
         "-ERR Number of keys can't be greater than number of args\r\n"),
        (["SINTERCARD", "1", "t", "LIMIT", "9223372036854775807"],
         ":3\r\n"),
        (["SUBSTR", "s", "-9223372036854775808", "9223372036854775807"],
         "$5\r\nhello\r\n"),
        (["SMISMEMBER", "t"],
         "-ERR wrong number of arguments for 'smismember' command\r\n"),
    ]

    @Test("bits, sorted sets and the newer commands answer as Redis at the limits", arguments: newCommandCases)
    func newCommands(command: [String], expected: String) {
        for version2 in [false, true] {
            var state1 = KVStateV1(), state2 = KVStateV2()
            func send(_ parts: [String]) -> String {
                var context = RequestContext(sequence: 1, timeMillis: 1_800_000_000_000, seed: 1)
                let request = ServiceRequest.command(parts)
                let reply = version2
                    ? KVServiceCore.handle(request, state: &state2, context: &context, version2: true, broken: nil)
                    : KVServiceCore.handle(request, state: &state1, context: &context, version2: false, broken: nil)
                return String(decoding: reply, as: UTF8.self)
            }
            _ = send(["SET", "s", "hello"])
            _ = send(["RPUSH", "l", "a", "b", "a", "c", "a"])
            _ = send(["ZADD", "z", "-inf", "a", "0", "b", "inf", "c", "1.5", "d"])
            _ = send(["SADD", "t", "a", "b", "x"])
            #expect(send(command) == expected, "version2: \(version2)")
        }
    }

    static func run<S: UnderstudyService>(_ service: S, _ command: [String]) -> String {
        var e = ServiceEngine(service: service)
        _ = e.apply(request(1, 1_800_000_000_000, ["SET", "s", "hello"]))
        _ = e.apply(request(2, 1_800_000_000_000, ["RPUSH", "l", "a", "b", "a", "c", "a"]))
        return String(decoding: e.apply(request(3, 1_800_000_000_000, command)).response, as: UTF8.self)
    }

    @Test("both versions answer as Redis", arguments: cases)
    func bothVersions(command: [String], expected: String) {
        #expect(Self.run(KVServiceV1(), command) == expected)
        #expect(Self.run(KVServiceV2(), command) == expected)
    }

    @Test("version 2 answers as Redis", arguments: version2Cases)
    func version2(command: [String], expected: String) {
        #expect(Self.run(KVServiceV2(), command) == expected)
    }

    @Test("an expiry at the end of time reads back without overflow (seconds round as Redis's do)")
    func endOfTime() {
        for version2 in [false, true] {
            var state1 = KVStateV1(), state2 = KVStateV2()
            func send(_ parts: [String]) -> String {
                var context = RequestContext(sequence: 1, timeMillis: 1_800_000_000_000, seed: 1)
                let request = ServiceRequest.command(parts)
                let reply = version2
                    ? KVServiceCore.handle(request, state: &state2, context: &context, version2: true, broken: nil)
                    : KVServiceCore.handle(request, state: &state1, context: &context, version2: false, broken: nil)
                return String(decoding: reply, as: UTF8.self)
            }
            #expect(send(["SET", "s", "v"]) == "+OK\r\n")
            #expect(send(["PEXPIREAT", "s", "9223372036854775807"]) == ":1\r\n")
            #expect(send(["EXPIRETIME", "s"]) == ":9223372036854776\r\n")
            #expect(send(["PEXPIRETIME", "s"]) == ":9223372036854775807\r\n")
            #expect(send(["TTL", "s"]) == ":9223370236854776\r\n")
            #expect(send(["PTTL", "s"]) == ":9223370236854775807\r\n")
        }
    }
}
