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

/// Compares a reply from our service against redis-server's; nil when they agree.
func compareReplies(_ ours: [UInt8], _ theirs: [UInt8], _ mode: Comparison) -> String? {
    if ours == theirs { return nil }
    let a = RESPValue.parseAll(ours)
    let b = RESPValue.parseAll(theirs)
    func sortedArray(_ v: RESPValue) -> RESPValue {
        if case .array(let items?) = v { return .array(items.sorted()) }
        return v
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
    static func run(seed: UInt64, count: Int, includeV2: Bool, client: RESPClient) throws -> [Mismatch] {
        _ = try client.call("FLUSHALL")
        var v1 = ServiceEngine(service: KVServiceV1())
        var v2 = ServiceEngine(service: KVServiceV2())
        var generator = CommandGenerator(seed: seed, includeV2: includeV2, now: wallMillis)
        var mismatches: [Mismatch] = []
        var sequence: UInt64 = 0
        let batchSize = 400
        var done = 0
        while done < count {
            var batch: [([String], Comparison)] = []
            for _ in 0..<min(batchSize, count - done) { batch.append(generator.next()) }
            let theirs = try client.pipeline(batch.map { $0.0.map { Array($0.utf8) } })
            for (i, (cmd, mode)) in batch.enumerated() {
                sequence += 1
                let request = ApplyRequest(
                    sequence: sequence, time: wallMillis(), seed: sequence &* 7919, tag: InputTag.resp,
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

    @Test("v1 and v2 agree with redis-server on 44 000 commands over all groups")
    func commonCommands() throws {
        try againstRedis { client in
            var all: [Mismatch] = []
            let perSeed = Int(ProcessInfo.processInfo.environment["KV_DIFF_COUNT"] ?? "") ?? 11_000
            for seed in 1...4 as ClosedRange<UInt64> {
                all += try Self.run(seed: seed, count: perSeed, includeV2: false, client: client)
            }
            return all
        }
    }

    @Test("v2 agrees with redis-server including COPY and LMPOP (8 000 commands)")
    func version2Commands() throws {
        try againstRedis { client in try Self.run(seed: 99, count: 8_000, includeV2: true, client: client) }
    }
}

