import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

func wallMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// The milliseconds of a TIME reply from redis-server.
func redisMillis(_ reply: [UInt8]) -> Int64? {
    guard case .array(let items?) = RESPValue.parseAll(reply), items.count == 2,
          case .bulk(let s?) = items[0], case .bulk(let u?) = items[1],
          let seconds = Int64(String(decoding: s, as: UTF8.self)), let micros = Int64(String(decoding: u, as: UTF8.self))
    else { return nil }
    return seconds * 1000 + micros / 1000
}

/// Compares a reply from our service against redis-server's; nil when they agree.
func compareReplies(_ ours: [UInt8], _ theirs: [UInt8], _ mode: Comparison) -> String? {
    if ours == theirs { return nil }
    let a = RESPValue.parseAll(ours)
    let b = RESPValue.parseAll(theirs)
    func sortedArray(_ v: RESPValue) -> RESPValue {
        if case .array(let items?) = v { return .array(items.sorted()) }
        return v
    }
    func pairs(_ items: [RESPValue]) -> [[RESPValue]] {
        stride(from: 0, to: items.count, by: 2).map { Array(items[$0..<min($0 + 2, items.count)]) }
            .sorted { $0.lexicographicallyPrecedes($1) }
    }
    switch mode {
    case .exact:
        break
    case .unordered:
        if sortedArray(a) == sortedArray(b) { return nil }
    case .ttl(let tolerance):
        if case .integer(let x) = a, case .integer(let y) = b, x >= 0, y >= 0, abs(x - y) <= tolerance { return nil }
    case .shape:
        switch (a, b) {
        case (.bulk(nil), .bulk(nil)), (.bulk(_?), .bulk(_?)): return nil
        case (.array(let x?), .array(let y?)) where x.count == y.count: return nil
        case (.error(let x), .error(let y)) where x == y: return nil
        default: break
        }
    case .unorderedPairs:
        if case .array(let x?) = a, case .array(let y?) = b, pairs(x) == pairs(y) { return nil }
    case .scanPairs:
        if case .array(let x?) = a, case .array(let y?) = b, x.count == 2, y.count == 2, x[0] == y[0],
           case .array(let p?) = x[1], case .array(let q?) = y[1], pairs(p) == pairs(q) { return nil }
    case .scanKeys:
        if case .array(let x?) = a, case .array(let y?) = b, x.count == 2, y.count == 2,
           sortedArray(x[1]) == sortedArray(y[1]) { return nil }
    }
    return "ours \(a) vs redis \(b)"
}

/// Runs seeded command sequences against redis-server and both versions in-process.
@Suite("Differential against redis-server", .serialized,
       .enabled(if: RedisServer.isAvailable, "redis-server is not installed; install it to run the differential tests"))
struct DifferentialTests {
    struct Mismatch: CustomStringConvertible {
        var index: Int
        var version: String
        var command: [String]
        var detail: String
        var description: String {
            let text = "#\(index) \(version) \(command.map { $0.debugDescription }.joined(separator: " ")): \(detail)"
            return String(text.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? "." : Character($0) })
        }
    }

    /// Runs `count` commands; returns mismatches (at most 30 recorded).
    static func run(seed: UInt64, count: Int, includeV2: Bool, groups: [String] = CommandGenerator.groups,
                    client: RESPClient) throws -> [Mismatch] {
        _ = try client.call("FLUSHALL")
        // The configuration outlives FLUSHALL: start every run from the defaults, as the new engines do.
        _ = try client.call("CONFIG", "SET", "maxmemory", "0", "maxmemory-policy", "noeviction", "maxmemory-samples", "5",
                            "appendonly", "no", "appendfsync", "everysec", "hash-max-listpack-entries", "512",
                            "hash-max-listpack-value", "64", "set-max-intset-entries", "512")
        _ = try client.call("CONFIG", "SET", "zset-max-listpack-entries", "128", "zset-max-listpack-value", "64",
                            "list-max-listpack-size", "-2", "lfu-log-factor", "10", "lfu-decay-time", "1", "timeout", "0",
                            "hz", "10", "slowlog-log-slower-than", "10000", "activerehashing", "yes")
        var v1 = ServiceEngine(service: KVServiceV1())
        var v2 = ServiceEngine(service: KVServiceV2())
        var generator = CommandGenerator(seed: seed, includeV2: includeV2, groups: groups, now: wallMillis)
        var mismatches: [Mismatch] = []
        var sequence: UInt64 = 0
        let batchSize = 400
        var done = 0
        while done < count {
            var batch: [([String], Comparison)] = []
            for _ in 0..<min(batchSize, count - done) { batch.append(generator.next()) }
            // TIME before each command: each version applies it at redis-server's clock, so expiry comparisons
            // (GT, LT, equal deadlines) see the same milliseconds on both sides.
            let replies = try client.pipeline(batch.flatMap { [[Array("TIME".utf8)], $0.0.map { Array($0.utf8) }] })
            let theirs = stride(from: 1, to: replies.count, by: 2).map { replies[$0] }
            for (i, (cmd, mode)) in batch.enumerated() {
                sequence += 1
                let request = ApplyRequest(
                    sequence: sequence, time: redisMillis(replies[2 * i]) ?? wallMillis(), seed: sequence &* 7919,
                    tag: InputTag.resp,
                    payload: CommandCodec.encode(cmd.map { Array($0.utf8) }))
                let r2 = v2.apply(request).response
                if let d = compareReplies(r2, theirs[i], mode), mismatches.count < 30 {
                    mismatches.append(Mismatch(index: done + i, version: "v2", command: cmd, detail: d))
                }
                if !includeV2 {
                    let r1 = v1.apply(request).response
                    if let d = compareReplies(r1, theirs[i], mode), mismatches.count < 30 {
                        mismatches.append(Mismatch(index: done + i, version: "v1", command: cmd, detail: d))
                    }
                }
            }
            if !includeV2 {
                sequence += 1
                let tick = ApplyRequest(sequence: sequence, time: wallMillis(), seed: 0, tag: InputTag.tick, payload: [])
                _ = v1.apply(tick)
                _ = v2.apply(tick)
                // Both versions hold the same logical data.
                let down = KVServiceV2.downgradeState(v2.state)
                if down.digest(sequence: 0) != v1.state.digest(sequence: 0), mismatches.count < 30 {
                    mismatches.append(Mismatch(index: done, version: "v1/v2", command: [], detail: "state digests differ"))
                }
            }
            done += batch.count
            if ProcessInfo.processInfo.environment["KV_DIFF_VERBOSE"] != nil {
                FileHandle.standardError.write("batch done \(done) at \(wallMillis())\n".data(using: .utf8)!)
            }
        }
        // Final state check: same keys and dbsize.
        let keys = try client.call("KEYS", "*")
        var env = RequestContext(sequence: sequence + 1, timeMillis: wallMillis(), seed: 1)
        var snapshotState = v2.state
        let ours = KVServiceCore.handle(.command(["KEYS", "*"]), state: &snapshotState, context: &env, version2: true, broken: nil)
        if let d = compareReplies(ours, keys, .unordered) {
            mismatches.append(Mismatch(index: count, version: "v2", command: ["KEYS", "*"], detail: d))
        }
        return mismatches
    }

    /// Runs `body` against a fresh redis-server and expects no mismatches.
    private func againstRedis(_ body: (RESPClient) throws -> [Mismatch]) throws {
        let exe = try #require(RedisServer.executable, "redis-server is not installed")
        let server = try RedisServer(executable: exe)
        defer { server.stop() }
        let all = try body(try server.connect())
        #expect(all.isEmpty, "\(all.count) differences:\n\(all.prefix(30).map(\.description).joined(separator: "\n"))")
    }

    @Test("v1 and v2 agree with redis-server on 120 000 commands over all groups")
    func commonCommands() throws {
        try againstRedis { client in
            var all: [Mismatch] = []
            let perSeed = Int(ProcessInfo.processInfo.environment["KV_DIFF_COUNT"] ?? "") ?? 30_000
            for seed in 1...4 as ClosedRange<UInt64> {
                all += try Self.run(seed: seed, count: perSeed, includeV2: false, client: client)
            }
            return all
        }
    }

    @Test("v2 agrees with redis-server including COPY and LMPOP (20 000 commands)")
    func version2Commands() throws {
        try againstRedis { client in try Self.run(seed: 99, count: 20_000, includeV2: true, client: client) }
    }

    @Test("v1 and v2 agree with redis-server on 80 000 commands weighted to sorted sets, bits, scans and CONFIG")
    func sortedSetCommands() throws {
        let groups = ["zset", "zset", "zset", "zlex", "zlex", "bits", "bits", "config", "set", "hash", "keys", "string",
                      "errors"]
        try againstRedis { client in
            var all: [Mismatch] = []
            for seed in 201...204 as ClosedRange<UInt64> {
                all += try Self.run(seed: seed, count: 20_000, includeV2: false, groups: groups, client: client)
            }
            return all
        }
    }
}

