import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

func request(_ seq: UInt64, _ time: Int64, _ parts: [String], tag: UInt8 = InputTag.resp) -> ApplyRequest {
    ApplyRequest(sequence: seq, time: time, seed: seq &* 0x9E37_79B9_7F4A_7C15, tag: tag,
                 payload: tag == InputTag.tick ? [] : CommandCodec.encode(parts.map { Array($0.utf8) }))
}

/// Fills an engine with every value type, with and without expiries.
func populate<S: UnderstudyService>(_ engine: inout ServiceEngine<S>, keys: Int = 300) {
    var seq = engine.lastSequence
    let t: Int64 = 1_800_000_000_000
    func run(_ p: [String]) {
        seq += 1
        _ = engine.apply(request(seq, t, p))
    }
    run(["CONFIG", "SET", "maxmemory-policy", "allkeys-lru", "zset-max-listpack-entries", "3"])
    for i in 0..<keys {
        switch i % 5 {
        case 0: run(["SET", "s\(i)", "value-\(i)"])
        case 1: run(["RPUSH", "l\(i)", "a", "b\(i)", "c"]); run(["LPUSH", "l\(i)", "z"])
        case 2: run(["HSET", "h\(i)", "f1", "v\(i)", "f2", "w"])
        case 3: run(["SADD", "t\(i)", "x", "y\(i)", "\(i)"])
        default: run(["ZADD", "z\(i)", "1.5", "a", "-inf", "b\(i)", "\(i)", "c", "0.1", "d", "inf", "e"])
        }
        if i % 3 == 0 { run(["EXPIRE", ["s", "l", "h", "t", "z"][i % 5] + "\(i)", String(1000 + i)]) }
    }
}

@Suite("Schema migration and downgrade")
struct MigrationTests {
    @Test("v1 → migrate → v2 → downgrade → v1 keeps an identical digest")
    func roundTrip() throws {
        var v1 = ServiceEngine(service: KVServiceV1())
        populate(&v1)
        let original = v1.state.digest(sequence: 0)
        #expect(original.entryCount > 300)

        // Snapshot v1 over the wire messages and restore it into a v2 engine (migrate).
        var out = ByteWriter()
        _ = v1.handle(.snapshotRequest(streamID: 7), output: &out)
        var decoder = FrameDecoder()
        out.bytes.withUnsafeBytes { decoder.append(buffer: $0) }
        var v2 = ServiceEngine(service: KVServiceV2())
        var restoreOut = ByteWriter()
        while let m = try decoder.next() { _ = v2.handle(m, output: &restoreOut) }
        var replyDecoder = FrameDecoder()
        restoreOut.bytes.withUnsafeBytes { replyDecoder.append(buffer: $0) }
        let reply = try #require(try replyDecoder.next())
        guard case .restored(let seq, let count) = reply else {
            Issue.record("expected restored, got \(reply)")
            return
        }
        #expect(seq == v1.lastSequence)
        #expect(count == v2.state.digest(sequence: 0).entryCount && v2.state.keyCount == 300 && v2.state.config.count == 2)

        // The same data answers the same way.
        for (key, cmd) in [("s0", ["GET"]), ("l1", ["LLEN"]), ("h2", ["HLEN"]), ("t3", ["SCARD"]), ("s0", ["TTL"]),
                           ("l6", ["TTL"]), ("z4", ["ZRANGE", "0", "-1", "WITHSCORES"]), ("z9", ["TTL"])] {
            var e1 = v1, e2 = v2
            let r1 = e1.apply(request(v1.lastSequence + 1, 1_800_000_000_000, [cmd[0], key] + cmd.dropFirst())).response
            let r2 = e2.apply(request(v2.lastSequence + 1, 1_800_000_000_000, [cmd[0], key] + cmd.dropFirst())).response
            #expect(r1 == r2)
            #expect(!r1.starts(with: Array("-".utf8)) && r1 != Array(":-1\r\n".utf8))
        }

        // The configuration came along, and OBJECT ENCODING follows it (a sorted set of 5 is past the 3 set).
        var probe = v2
        let config = probe.apply(request(v2.lastSequence + 1, 1_800_000_000_000, ["CONFIG", "GET", "maxmemory-policy"]))
        #expect(config.response == bytes("*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"))
        let encoding = probe.apply(request(v2.lastSequence + 2, 1_800_000_000_000, ["OBJECT", "ENCODING", "z4"]))
        #expect(encoding.response == bytes("$8\r\nskiplist\r\n"))

        // Downgrade digest equals the v1 digest (what the supervisor compares before a rollback).
        let down = KVServiceV2.downgradeState(v2.state)
        #expect(down.digest(sequence: 0) == original)
        var digestOut = ByteWriter()
        _ = v2.handle(.downgradeDigestRequest, output: &digestOut)
        var dd = FrameDecoder()
        digestOut.bytes.withUnsafeBytes { dd.append(buffer: $0) }
        guard case .digest(let report)? = try dd.next() else {
            Issue.record("no downgrade digest")
            return
        }
        #expect(report.buckets == original.buckets)

        // Restore the downgraded state into a fresh v1 engine through a schema-1 snapshot.
        let bytes = down.encodeSnapshot(schemaVersion: 1, sequence: v2.lastSequence)
        var back = ServiceEngine(service: KVServiceV1())
        var o = ByteWriter()
        _ = back.handle(.snapshotChunk(SnapshotChunk(streamID: 1, sequence: v2.lastSequence, schemaVersion: 1, data: bytes,
                                                     isFinal: true, checksum: StableHasher.hash(bytes))), output: &o)
        #expect(back.state.digest(sequence: 0) == original)
        #expect(back.state.digest(sequence: 0).entryCount == original.entryCount)
        #expect(back.state.config.count == 2)
    }

    @Test("values survive canonical encoding with equal digests")
    func canonicalEncoding() throws {
        var h = KVHash()
        for i in 0..<50 { h.set(Array("f\(i)".utf8), Array("v\(i)".utf8)) }
        var h2 = KVHash()
        for i in (0..<50).reversed() { h2.set(Array("f\(i)".utf8), Array("v\(i)".utf8)) }
        #expect(KVValue.hash(h).canonicalBytes == KVValue.hash(h2).canonicalBytes)
        #expect(KVValue.hash(h).stableDigest() == KVValue.hash(h2).stableDigest())
        var l = KVList()
        for i in 0..<20 { l.pushFront(Array("\(i)".utf8)) }
        _ = l.popBack()
        let decoded = try KVValue(canonicalBytes: KVValue.list(l).canonicalBytes)
        #expect(decoded.stableDigest() == KVValue.list(l).stableDigest())
        let s = KVValue.set(KVSet((0..<30).map { Array("m\($0)".utf8) }))
        #expect(try KVValue(canonicalBytes: s.canonicalBytes).stableDigest() == s.stableDigest())
        // Sorted sets: insertion order and -0 do not change the bytes; NaN and repeated members are refused.
        var z1 = KVSortedSet(), z2 = KVSortedSet()
        let scores: [Double] = [1.5, -.infinity, .infinity, 0, 0.1, 1.5, 3, -2]
        for (i, sc) in scores.enumerated() { z1.set(Array("m\(i)".utf8), sc) }
        for (i, sc) in scores.enumerated().reversed() { z2.set(Array("m\(i)".utf8), sc == 0 ? -0.0 : sc + 1) }
        for (i, sc) in scores.enumerated() { z2.set(Array("m\(i)".utf8), sc) }
        #expect(KVValue.zset(z1).canonicalBytes == KVValue.zset(z2).canonicalBytes)
        #expect(KVValue.zset(z1).stableDigest() == KVValue.zset(z2).stableDigest())
        let z = try KVValue(canonicalBytes: KVValue.zset(z1).canonicalBytes)
        #expect(z.canonicalBytes == KVValue.zset(z1).canonicalBytes && z.stableDigest() == KVValue.zset(z1).stableDigest())
        var bad = ByteWriter()
        bad.write(UInt8(4))
        bad.writeVarint(2)
        bad.writeBytes([1])
        bad.write(Double.nan.bitPattern)
        bad.writeBytes([2])
        bad.write(UInt64(0))
        #expect(throws: (any Error).self) { try KVValue(canonicalBytes: bad.bytes) }
        var repeated = ByteWriter()
        repeated.write(UInt8(4))
        repeated.writeVarint(2)
        for _ in 0..<2 {
            repeated.writeBytes([1])
            repeated.write(UInt64(0))
        }
        #expect(throws: (any Error).self) { try KVValue(canonicalBytes: repeated.bytes) }
    }
}

@Suite("Determinism")
struct DeterminismTests {
    static func sequence(seed: UInt64, count: Int, includeV2: Bool = true, includeRandom: Bool = true) -> [ApplyRequest] {
        var g = CommandGenerator(seed: seed, includeV2: includeV2, includeRandom: includeRandom, now: { 1_800_000_000_000 })
        var out: [ApplyRequest] = []
        var time: Int64 = 1_800_000_000_000
        for i in 1...count {
            time += Int64(i % 7) * 50  // time moves so expiries fire
            if i % 50 == 0 {
                out.append(request(UInt64(i), time, [], tag: InputTag.tick))
                continue
            }
            var (cmd, _) = g.next()
            if i % 13 == 0 { cmd = ["PEXPIRE", cmd.count > 1 ? cmd[1] : "k1", String(100 + i % 900)] }
            if i % 17 == 0 { cmd = ["SCAN", String(i % 3 == 0 ? 0 : UInt64(i) << 40), "COUNT", "3"] }
            out.append(request(UInt64(i), time, cmd))
        }
        return out
    }

    @Test("two engines fed the same sequence give identical replies and digests", arguments: [1, 2] as [UInt64])
    func sameReplies(seed: UInt64) {
        let requests = Self.sequence(seed: seed, count: 6000)
        var a1 = ServiceEngine(service: KVServiceV1()), b1 = ServiceEngine(service: KVServiceV1())
        var a2 = ServiceEngine(service: KVServiceV2()), b2 = ServiceEngine(service: KVServiceV2())
        // Give the "b" engines a different history of hash-table growth: fill and flush first.
        var warm: UInt64 = 0
        for i in 0..<200 {
            warm += 1
            _ = b1.apply(request(warm, 1, ["SADD", "k\(i % 24)", "junk\(i)"]))
            _ = b2.apply(request(warm, 1, ["SADD", "k\(i % 24)", "junk\(i)"]))
        }
        _ = b1.apply(request(warm + 1, 1, ["FLUSHALL"]))
        _ = b2.apply(request(warm + 1, 1, ["FLUSHALL"]))
        var differences = 0
        for r in requests {
            if a1.apply(r).response != b1.apply(r).response { differences += 1 }
            if a2.apply(r).response != b2.apply(r).response { differences += 1 }
        }
        #expect(differences == 0)
        #expect(a1.state.digest(sequence: 0) == b1.state.digest(sequence: 0))
        #expect(a2.state.digest(sequence: 0) == b2.state.digest(sequence: 0))
        // And v1/v2 hold the same data with expiry (without the commands only v2 knows, and without random picks:
        // v2's access tracking draws from the same generator).
        var c1 = ServiceEngine(service: KVServiceV1()), c2 = ServiceEngine(service: KVServiceV2())
        for r in Self.sequence(seed: seed, count: 6000, includeV2: false, includeRandom: false) {
            #expect(c1.apply(r).response == c2.apply(r).response)
        }
        #expect(KVServiceV2.downgradeState(c2.state).digest(sequence: 0) == c1.state.digest(sequence: 0))
    }

    @Test("SCAN visits every key exactly once across calls")
    func scanCoversAll() {
        var e = ServiceEngine(service: KVServiceV1())
        var seq: UInt64 = 0
        for i in 0..<500 {
            seq += 1
            _ = e.apply(request(seq, 1, ["SET", "key:\(i)", "v"]))
        }
        var cursor = "0"
        var seen: [String] = []
        repeat {
            seq += 1
            let reply = RESPValue.parseAll(e.apply(request(seq, 1, ["SCAN", cursor, "COUNT", "37"])).response)
            guard case .array(let parts?) = reply, case .bulk(let c?) = parts[0], case .array(let keys?) = parts[1] else {
                Issue.record("bad SCAN reply \(reply)")
                return
            }
            cursor = String(decoding: c, as: UTF8.self)
            for case .bulk(let k?) in keys { seen.append(String(decoding: k, as: UTF8.self)) }
        } while cursor != "0"
        #expect(seen.count == 500)
        #expect(Set(seen).count == 500)
    }

    @Test("ticks expire keys deterministically, at most 200 per tick")
    func activeExpiry() {
        var e = ServiceEngine(service: KVServiceV2())
        var seq: UInt64 = 0
        for i in 0..<450 {
            seq += 1
            _ = e.apply(request(seq, 1000, ["SET", "e\(i)", "v", "PX", "10"]))
        }
        seq += 1
        _ = e.apply(request(seq, 5000, [], tag: InputTag.tick))
        #expect(e.state.keyCount == 250)
        seq += 1
        _ = e.apply(request(seq, 5000, [], tag: InputTag.tick))
        seq += 1
        _ = e.apply(request(seq, 5000, [], tag: InputTag.tick))
        #expect(e.state.keyCount == 0)
    }
}

@Suite("Broken modes")
struct BrokenModeTests {
    @Test("off unless both the environment variable and the argument are given")
    func switchNeedsBoth() {
        var warnings: [String] = []
        let env = ["UNDERSTUDY_KV_BROKEN": "wrong-incr"]
        #expect(BrokenMode.fromEnvironment(arguments: ["kv-v2"], environment: env, warn: { warnings.append($0) }) == nil)
        #expect(BrokenMode.fromEnvironment(arguments: ["kv-v2", "--i-know-this-is-broken"], environment: [:],
                                           warn: { warnings.append($0) }) == nil)
        #expect(warnings.count == 2)
        #expect(BrokenMode.fromEnvironment(arguments: ["kv-v2"], environment: [:], warn: { warnings.append($0) }) == nil)
        #expect(warnings.count == 2)
        for mode in BrokenMode.allCases {
            #expect(BrokenMode.fromEnvironment(
                arguments: ["kv-v2", "--i-know-this-is-broken"], environment: ["UNDERSTUDY_KV_BROKEN": mode.rawValue],
                warn: { _ in }) == mode)
        }
        #expect(BrokenMode.fromEnvironment(arguments: ["x", "--i-know-this-is-broken"],
                                           environment: ["UNDERSTUDY_KV_BROKEN": "bogus"], warn: { _ in }) == nil)
    }

    static func run(_ service: KVServiceV2, _ commands: [[String]]) -> (ServiceEngine<KVServiceV2>, [String]) {
        var e = ServiceEngine(service: service)
        var replies: [String] = []
        for (i, c) in commands.enumerated() {
            replies.append(String(decoding: e.apply(request(UInt64(i + 1), 1000, c)).response, as: UTF8.self))
        }
        return (e, replies)
    }

    @Test("wrong-incr answers and stores one too many past 1000, and fails validation")
    func wrongIncr() {
        let (good, goodReplies) = Self.run(KVServiceV2(), [["SET", "n", "999"], ["INCR", "n"], ["INCR", "n"], ["GET", "n"]])
        let (bad, badReplies) = Self.run(KVServiceV2(broken: .wrongIncr), [["SET", "n", "999"], ["INCR", "n"], ["INCR", "n"], ["GET", "n"]])
        #expect(goodReplies == ["+OK\r\n", ":1000\r\n", ":1001\r\n", "$4\r\n1001\r\n"])
        #expect(badReplies == ["+OK\r\n", ":1000\r\n", ":1002\r\n", "$4\r\n1002\r\n"])
        var out = ByteWriter()
        var g = good, b = bad
        _ = g.handle(.validate, output: &out)
        _ = b.handle(.validate, output: &out)
        var d = FrameDecoder()
        out.bytes.withUnsafeBytes { d.append(buffer: $0) }
        guard case .validationReport(let okReport)? = try? d.next(), case .validationReport(let badReport)? = try? d.next() else {
            Issue.record("no validation reports")
            return
        }
        #expect(okReport.failures.isEmpty, "\(okReport.failures)")
        #expect(badReport.failures.contains { $0.name == "incr" })
    }

    @Test("v1 passes its own validation suite")
    func v1Validation() throws {
        var e = ServiceEngine(service: KVServiceV1())
        var out = ByteWriter()
        _ = e.handle(.validate, output: &out)
        var d = FrameDecoder()
        out.bytes.withUnsafeBytes { d.append(buffer: $0) }
        guard case .validationReport(let report)? = try d.next() else {
            Issue.record("no report")
            return
        }
        #expect(report.casesRun >= 6)
        #expect(report.failures.isEmpty, "\(report.failures)")
    }

    @Test("nondeterministic replies depend on the process, not the state")
    func nondeterministic() {
        let (_, replies) = Self.run(KVServiceV2(broken: .nondeterministic), [["SET", "nd:a", "x"], ["GET", "nd:a"]])
        #expect(replies[1].contains(":\(getpid())"))
        let (_, plain) = Self.run(KVServiceV2(broken: .nondeterministic), (0..<20).map { _ in ["GET", "k"] })
        #expect(plain.contains { $0 != "$-1\r\n" })
        let (_, normal) = Self.run(KVServiceV2(), [["SET", "nd:a", "x"], ["GET", "nd:a"]])
        #expect(normal[1] == "$1\r\nx\r\n")
    }

    @Test("slow sleeps about 2 ms per request")
    func slow() {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = Self.run(KVServiceV2(broken: .slow), (0..<20).map { _ in ["PING"] })
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        #expect(elapsed >= 20 * 1_900_000)
    }

    @Test("drift writes an extra key without changing the reply")
    func drift() {
        let (good, goodReplies) = Self.run(KVServiceV2(), [["SET", "a", "1"], ["DBSIZE"]])
        let (bad, badReplies) = Self.run(KVServiceV2(broken: .drift), [["SET", "a", "1"], ["GET", "a"]])
        #expect(goodReplies[0] == badReplies[0])
        #expect(good.state.keyCount == 1)
        #expect(bad.state.keyCount == 2)
        #expect(good.state.digest(sequence: 0) != bad.state.digest(sequence: 0))
    }
}
