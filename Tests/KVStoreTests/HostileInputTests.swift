import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// One hostile case: commands run on a fresh fixture, each reply compared with redis-server's.
struct HostileCase {
    var commands: [[[UInt8]]]
    var modes: [Comparison]
    var v2Only: Bool

    init(_ commands: [[String]], _ mode: Comparison = .exact, v2Only: Bool = false) {
        self.commands = commands.map { $0.map(bytes) }
        self.modes = commands.map { _ in mode }
        self.v2Only = v2Only
    }

    init(_ steps: [([String], Comparison)], v2Only: Bool = false) {
        self.commands = steps.map { $0.0.map(bytes) }
        self.modes = steps.map(\.1)
        self.v2Only = v2Only
    }

    init(raw commands: [[[UInt8]]], _ mode: Comparison = .exact) {
        self.commands = commands
        self.modes = commands.map { _ in mode }
        self.v2Only = false
    }
}

/// Extreme arguments sent to every command that reads a number, a float or a pattern, on redis-server and
/// on both versions in-process: equal replies, and (in-process) no trap.
@Suite("Hostile arguments against redis-server",
       .enabled(if: RedisServer.isAvailable, "redis-server is not installed; install it to run the differential tests"))
struct HostileInputTests {
    static let ints = [
        "-9223372036854775808", "9223372036854775807", "-9223372036854775807", "9223372036854775806",
        "9223372036854775808", "-9223372036854775809", "18446744073709551615", "-4611686018427387904",
        "4611686018427387903", "4611686018427387904", "-4611686018427387903", "2147483647", "2147483648",
        "-2147483648", "-2147483649", "536870912", "9223372036854775", "9223372036854776", "-9223372036854775",
        "-9223372036854776", "-1", "0", "1", "2", "3", "-2", "-3", "5", "-5", "", "abc", "1.5", " 1", "+1", "01",
        "-0", "0x10", "1e3", "nan", "inf",
    ]
    /// The few that pair with each other in two-number commands.
    static let pairInts = [
        "-9223372036854775808", "9223372036854775807", "-9223372036854775807", "-4611686018427387904",
        "2147483648", "-1", "0", "1", "2", "-2", "4", "-6", "", "x",
    ]
    static let floats = [
        "nan", "-nan", "NaN", "inf", "-inf", "+inf", "infinity", "-Infinity", "1e400", "-1e400", "1e4000", "1e4932",
        "1.2e4932", "-1.2e4932", "1e5000", "-1e5000", "1e-400", "1e-4940", "1e-4950", "1e-5000", "0", "-0", "1.5",
        "-2.25", "0x1p3", "0x1p16384", "1e", "", " 1", "1 ", "9223372036854775807", "-9223372036854775808",
        "1.7976931348623157e308", "3.4e38", "1" + String(repeating: "0", count: 300),
        "1." + String(repeating: "0", count: 5117), "1." + String(repeating: "0", count: 5118), "abc",
    ]

    /// The state each case starts from (every type; integers at the limits; a fixed absolute expiry).
    static let fixture: [[[UInt8]]] = {
        var f: [[String]] = [
            ["SET", "s", "hello"], ["SET", "n", "10"], ["SET", "big", "9223372036854775807"],
            ["SET", "small", "-9223372036854775808"], ["SET", "f", "1.5"], ["SET", "fbig", "1e4932"],
            ["SET", "e", ""], ["SET", "ttl", "v", "PXAT", "4102444800000"], ["RPUSH", "l", "a", "b", "a", "c", "a"],
            ["SADD", "st", "a", "b", "c", "d", "e"], ["SADD", "ints", "1", "2", "3"],
            ["HSET", "h", "f", "v", "g", "w", "n", "5", "x", "1.5", "big", "9223372036854775807", "fbig", "1e4932"],
        ]
        f.append(["PEXPIREAT", "l", "4102444800000"])
        return f.map { $0.map(bytes) }
    }()

    /// Reads of a key's expiry after `command`. Relative times (TTL, and the expiry a relative command sets) go
    /// by each server's own clock, and the in-process versions run a batch after redis-server has answered it,
    /// so they may differ by the length of a batch (on a loaded machine, seconds); what is compared is overflow
    /// or not, and the order of magnitude. Absolute expiries are compared exactly.
    static func withExpiryReads(_ command: [String], _ key: String, relative: Bool) -> [([String], Comparison)] {
        let seconds: Comparison = relative ? .ttl(120) : .exact
        let millis: Comparison = relative ? .ttl(120_000) : .exact
        return [(command, .exact), (["EXISTS", key], .exact), (["PEXPIRETIME", key], millis),
                (["EXPIRETIME", key], seconds), (["TTL", key], .ttl(120)), (["PTTL", key], .ttl(120_000)),
                (["GET", key], .exact)]
    }

    /// Relative expiries in milliseconds short enough to pass between a write and its reads (either server
    /// may or may not have seen the key expire) are left out.
    static func racesTheClock(_ value: String, milliseconds: Bool) -> Bool {
        guard let n = RedisNumber.parseInt(bytes(value)) else { return false }
        return n > 0 && n < (milliseconds ? 5000 : 5)
    }

    static var cases: [HostileCase] {
        var c: [HostileCase] = []
        let ints = Self.ints
        for i in ints {
            // strings (an offset of 536870911 is valid and would really allocate 512 MB on both)
            if i != "536870911" {
                for key in ["s", "missing", "l", "e", "n"] {
                    c.append(HostileCase([["SETRANGE", key, i, "A"], ["GET", key], ["STRLEN", key]]))
                    c.append(HostileCase([["SETRANGE", key, i, ""], ["GET", key]]))
                }
            }
            for key in ["n", "big", "small", "s", "missing", "f"] {
                c.append(HostileCase([["INCRBY", key, i], ["GET", key]]))
                c.append(HostileCase([["DECRBY", key, i], ["GET", key]]))
            }
            for (name, relative) in [("EX", true), ("PX", true), ("EXAT", false), ("PXAT", false)] {
                if relative && racesTheClock(i, milliseconds: name == "PX") { continue }
                c.append(HostileCase(withExpiryReads(["SET", "k", "v", name, i], "k", relative: relative)))
                c.append(HostileCase(withExpiryReads(["SET", "s", "v", "GET", name, i], "s", relative: relative)))
                c.append(HostileCase(withExpiryReads(["GETEX", "s", name, i], "s", relative: relative)))
                c.append(HostileCase(withExpiryReads(["GETEX", "missing", name, i], "missing", relative: relative)))
            }
            if !racesTheClock(i, milliseconds: false) {
                c.append(HostileCase(withExpiryReads(["SETEX", "k", i, "v"], "k", relative: true)))
            }
            if !racesTheClock(i, milliseconds: true) {
                c.append(HostileCase(withExpiryReads(["PSETEX", "k", i, "v"], "k", relative: true)))
            }
            for (name, relative) in [("EXPIRE", true), ("PEXPIRE", true), ("EXPIREAT", false), ("PEXPIREAT", false)] {
                if relative && racesTheClock(i, milliseconds: name == "PEXPIRE") { continue }
                for key in ["s", "ttl", "missing"] {
                    c.append(HostileCase(withExpiryReads([name, key, i], key, relative: relative)))
                }
                for option in ["NX", "XX", "GT", "LT"] {
                    c.append(HostileCase(withExpiryReads([name, "ttl", i, option], "ttl", relative: relative)))
                    c.append(HostileCase(withExpiryReads([name, "s", i, option], "s", relative: relative)))
                }
            }
            c.append(HostileCase([["COPY", "s", "d", "DB", i], ["GET", "d"]], v2Only: true))
            c.append(HostileCase([["COPY", "s", "s", "DB", i]], v2Only: true))
            c.append(HostileCase([["SELECT", i]]))
            c.append(HostileCase([["SET", "x", i], ["OBJECT", "ENCODING", "x"]], v2Only: true))
            c.append(HostileCase([["SADD", "x", i], ["OBJECT", "ENCODING", "x"]], v2Only: true))
            // lists
            for key in ["l", "missing", "s"] {
                c.append(HostileCase([["LINDEX", key, i]]))
                c.append(HostileCase([["LSET", key, i, "x"], ["LRANGE", key, "0", "-1"]]))
                c.append(HostileCase([["LREM", key, i, "a"], ["LRANGE", key, "0", "-1"]]))
                c.append(HostileCase([["LPOS", key, "a", "RANK", i]]))
                c.append(HostileCase([["LPOS", key, "a", "COUNT", i]]))
                c.append(HostileCase([["LPOS", key, "a", "MAXLEN", i]]))
                c.append(HostileCase([["LPOS", key, "a", "RANK", i, "COUNT", "0"]]))
                c.append(HostileCase([["LPOS", key, "a", "RANK", i, "COUNT", "2", "MAXLEN", "4"]]))
                c.append(HostileCase([["LPOP", key, i], ["LRANGE", key, "0", "-1"]]))
                c.append(HostileCase([["RPOP", key, i], ["LRANGE", key, "0", "-1"]]))
            }
            c.append(HostileCase([["LMPOP", i, "l", "LEFT"]], v2Only: true))
            c.append(HostileCase([["LMPOP", i, "missing", "l", "RIGHT", "COUNT", "2"]], v2Only: true))
            c.append(HostileCase([["LMPOP", "1", "l", "LEFT", "COUNT", i], ["LRANGE", "l", "0", "-1"]], v2Only: true))
            c.append(HostileCase([["LMPOP", "2", "missing", "l", "RIGHT", "COUNT", i]], v2Only: true))
            // hashes
            for field in ["n", "big", "f", "new", "x"] {
                c.append(HostileCase([["HINCRBY", "h", field, i], ["HGET", "h", field]]))
            }
            c.append(HostileCase([["HINCRBY", "missing", "f", i], ["HGETALL", "missing"]]))
            // random picks: only the shape can be compared; skip what Redis could only answer by streaming
            // (and running out of memory): negative counts of a huge magnitude.
            let n = RedisNumber.parseInt(bytes(i))
            let streamed = n.map { $0 < -1000 && $0 != .min } ?? false
            for key in ["st", "ints", "missing", "s"] {
                if !streamed { c.append(HostileCase([["SRANDMEMBER", key, i]], .shape)) }
                c.append(HostileCase([["SPOP", key, i], ["SCARD", key]], .shape))
            }
            for key in ["h", "missing", "s"] {
                if !streamed { c.append(HostileCase([["HRANDFIELD", key, i]], .shape)) }
                if !(n.map { $0 < -1000 && $0 >= -(Int64.max / 2) } ?? false) {
                    c.append(HostileCase([["HRANDFIELD", key, i, "WITHVALUES"]], .shape))
                }
            }
            // keys
            // A small COUNT returns a different slice of the keys on each server; a large one returns them all.
            c.append(HostileCase([["SCAN", "0", "COUNT", i]], (n ?? 0) >= 100 ? .scanKeys : .shape))
            c.append(HostileCase([["SCAN", i]], .shape))
        }
        for cursor in ["18446744073709551615", "18446744073709551616", "-1", "+1", " 0", "0 ", "00"] {
            c.append(HostileCase([["SCAN", cursor]], .shape))
        }
        for a in pairInts {
            for b in pairInts {
                for key in ["s", "missing", "e", "n", "l"] {
                    c.append(HostileCase([["GETRANGE", key, a, b]]))
                }
                for key in ["l", "missing", "s"] {
                    c.append(HostileCase([["LRANGE", key, a, b]]))
                    c.append(HostileCase([["LTRIM", key, a, b], ["LRANGE", key, "0", "-1"]]))
                }
                c.append(HostileCase([["LPOS", "l", "a", "RANK", a, "COUNT", b]]))
                c.append(HostileCase([["LPOS", "l", "a", "RANK", a, "MAXLEN", b]]))
            }
        }
        for key in ["big", "small", "n"] {
            for command in ["INCR", "DECR"] {
                c.append(HostileCase([[command, key], ["GET", key]]))
            }
        }
        for x in floats {
            for key in ["f", "fbig", "n", "big", "missing", "s", "e"] {
                c.append(HostileCase([["INCRBYFLOAT", key, x], ["GET", key]]))
            }
            for field in ["x", "fbig", "n", "new", "v"] {
                c.append(HostileCase([["HINCRBYFLOAT", "h", field, x], ["HGET", "h", field]]))
            }
            c.append(HostileCase([["SET", "k", x], ["INCRBYFLOAT", "k", "0"], ["INCRBY", "k", "1"]]))
            c.append(HostileCase([["HSET", "k", "f", x], ["HINCRBYFLOAT", "k", "f", "0"], ["HINCRBY", "k", "f", "1"]]))
        }
        // patterns
        var keys: [[[UInt8]]] = []
        for k in hostileKeys { keys.append([bytes("SET"), k, bytes("v")]) }
        for p in hostilePatterns {
            c.append(HostileCase(raw: keys + [[bytes("KEYS"), p]], .unordered))
            c.append(HostileCase(raw: keys + [[bytes("SCAN"), bytes("0"), bytes("MATCH"), p, bytes("COUNT"), bytes("1000")]],
                                 .scanKeys))
        }
        return c
    }

    struct Difference: CustomStringConvertible {
        var version: String
        var command: [[UInt8]]
        var detail: String
        var description: String {
            let text = "\(version) \(command.map { String(decoding: $0.prefix(60), as: UTF8.self).debugDescription }.joined(separator: " ")): \(detail)"
            return String(text.prefix(400))
        }
    }

    /// Runs the cases on redis-server (pipelined) and on fresh engines of both versions.
    static func differences(_ cases: [HostileCase], client: RESPClient) throws -> [Difference] {
        var found: [Difference] = []
        var start = 0
        while start < cases.count {
            let batch = cases[start..<min(cases.count, start + 300)]
            start += batch.count
            var pipeline: [[[UInt8]]] = []
            for c in batch { pipeline += [[bytes("FLUSHALL")]] + fixture + c.commands }
            let theirs = try client.pipeline(pipeline)
            var index = 0
            for c in batch {
                index += 1 + fixture.count
                let redisReplies = theirs[index..<(index + c.commands.count)]
                index += c.commands.count
                var v1 = ServiceEngine(service: KVServiceV1())
                var v2 = ServiceEngine(service: KVServiceV2())
                var sequence: UInt64 = 0
                func apply(_ parts: [[UInt8]]) -> (v1: [UInt8], v2: [UInt8]) {
                    sequence += 1
                    let r = ApplyRequest(sequence: sequence, time: wallMillis(), seed: sequence &* 7919, tag: InputTag.resp,
                                         payload: CommandCodec.encode(parts))
                    return (c.v2Only ? [] : v1.apply(r).response, v2.apply(r).response)
                }
                for f in fixture { _ = apply(f) }
                for (i, command) in c.commands.enumerated() {
                    let ours = apply(command)
                    let redis = redisReplies[redisReplies.startIndex + i]
                    if let d = compareReplies(ours.v2, redis, c.modes[i]), found.count < 40 {
                        found.append(Difference(version: "v2", command: command, detail: d))
                    }
                    if !c.v2Only, let d = compareReplies(ours.v1, redis, c.modes[i]), found.count < 40 {
                        found.append(Difference(version: "v1", command: command, detail: d))
                    }
                }
            }
        }
        return found
    }

    @Test("extreme numbers, floats and patterns get redis-server's replies from both versions")
    func extremes() throws {
        let exe = try #require(RedisServer.executable)
        let server = try RedisServer(executable: exe)
        defer { server.stop() }
        let cases = Self.cases
        let found = try Self.differences(cases, client: try server.connect())
        #expect(found.isEmpty, "\(found.count)+ differences in \(cases.count) cases:\n\(found.map(\.description).joined(separator: "\n"))")
    }
}
