import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Runs commands straight against a state, each with its own journaled seed, as the engine would.
private struct Keyspace<S: KVStorage> {
    var state: S
    let version2: Bool
    var sequence: UInt64 = 0
    var now: Int64 = 1_800_000_000_000

    mutating func send(_ parts: [String]) -> RESPValue {
        sequence += 1
        var context = RequestContext(sequence: sequence, timeMillis: now, seed: sequence &* 0x9E37_79B9_7F4A_7C15)
        let reply = KVServiceCore.handle(.command(parts), state: &state, context: &context, version2: version2, broken: nil)
        return RESPValue.parseAll(reply)
    }

    /// One SCAN step: the next cursor and the keys.
    mutating func scan(_ cursor: String, count: Int) -> (String, [String]) {
        guard case .array(let parts?) = send(["SCAN", cursor, "COUNT", String(count)]),
              case .bulk(let c?) = parts[0], case .array(let keys?) = parts[1] else {
            Issue.record("SCAN answered something else")
            return ("0", [])
        }
        return (String(decoding: c, as: UTF8.self), keys.map {
            guard case .bulk(let k?) = $0 else { return "" }
            return String(decoding: k, as: UTF8.self)
        })
    }
}

@Suite("Keyspace cursors and random keys")
struct KeyspaceScanTests {
    static func check<S: KVStorage>(_ state: S, version2: Bool) {
        var ks = Keyspace(state: state, version2: version2)
        // 20 000 keys, then a full SCAN while keys are added and removed between calls.
        for i in 0..<20_000 { _ = ks.send(["SET", "key:\(i)", "v"]) }
        var seen = Set<String>()
        var cursor = "0"
        var calls = 0
        var removed = Set<String>()
        repeat {
            let (next, keys) = ks.scan(cursor, count: 100)
            // COUNT is honoured: a page holds about COUNT keys (more only when positions collide).
            #expect(keys.count <= 110)
            seen.formUnion(keys)
            cursor = next
            calls += 1
            // Churn: add new keys, delete some that may or may not have been returned already.
            _ = ks.send(["SET", "new:\(calls)", "v"])
            let victim = "key:\((calls * 7919) % 20_000)"
            if victim.hasSuffix("3") {
                _ = ks.send(["DEL", victim])
                removed.insert(victim)
            }
        } while cursor != "0" && calls < 10_000
        #expect(cursor == "0", "the iteration ends")
        // Every key present for the whole iteration was returned (SCAN's guarantee), in about n / COUNT calls.
        let survivors = (0..<20_000).map { "key:\($0)" }.filter { !removed.contains($0) }
        #expect(survivors.allSatisfy(seen.contains))
        #expect(calls >= 200 && calls <= 260)

        // A cursor from one call stays good after writes: resume gives keys at or after it only.
        let (mid, _) = ks.scan("0", count: 5_000)
        _ = ks.send(["FLUSHALL"])
        _ = ks.send(["SET", "only", "v"])
        let (_, afterFlush) = ks.scan(mid, count: 10)
        #expect(afterFlush.count <= 1)
        #expect(ks.scan("0", count: 10).1 == ["only"])
        // A cursor past every position ends at once.
        #expect(ks.scan("18446744073709551615", count: 10) == ("0", []))
    }

    @Test("SCAN returns every key present throughout a churning iteration, resuming from its cursor (v1)")
    func scanV1() { Self.check(KVStateV1(), version2: false) }

    @Test("SCAN returns every key present throughout a churning iteration, resuming from its cursor (v2)")
    func scanV2() { Self.check(KVStateV2(), version2: true) }

    @Test("RANDOMKEY picks live keys spread over the keyspace; expired picks are deleted, as Redis does")
    func randomKey() {
        var ks = Keyspace(state: KVStateV2(), version2: true)
        #expect(ks.send(["RANDOMKEY"]) == .bulk(nil))
        for i in 0..<1_000 { _ = ks.send(["SET", "k\(i)", "v"]) }
        // 900 keys that expire in 10 ms, then time passes: only the 100 without expiry are live.
        for i in 100..<1_000 { _ = ks.send(["PEXPIRE", "k\(i)", "10"]) }
        ks.now += 1_000
        var picked = Set<[UInt8]>()
        for _ in 0..<400 {
            guard case .bulk(let k?) = ks.send(["RANDOMKEY"]) else {
                Issue.record("RANDOMKEY answered nil with live keys")
                return
            }
            picked.insert(k)
            let index = Int(String(decoding: k.dropFirst(), as: UTF8.self))!
            #expect(index < 100, "an expired key was returned")
        }
        // Uniform picks over 100 keys, 400 draws: nearly all of them come up (expected ≈ 98).
        #expect(picked.count >= 85)
        // Every expired key it drew was deleted on the way; the live ones are all still there.
        #expect(ks.state.keyCount >= 100 && ks.state.keyCount < 1_000)
        #expect(ks.send(["DBSIZE"]) == .integer(Int64(ks.state.keyCount)))
        // All keys expired: RANDOMKEY deletes them as it draws and answers nil.
        for i in 0..<100 { _ = ks.send(["PEXPIRE", "k\(i)", "1"]) }
        ks.now += 1_000
        #expect(ks.send(["RANDOMKEY"]) == .bulk(nil))
        #expect(ks.state.keyCount == 0)
    }

    @Test("INFO's memory estimate samples a large keyspace: close to the full walk, and the same for the same keys in any order")
    func memoryEstimate() {
        func usedMemory(_ ks: inout Keyspace<KVStateV1>) -> Int {
            guard case .bulk(let text?) = ks.send(["INFO", "memory"]),
                  let line = String(decoding: text, as: UTF8.self).split(whereSeparator: \.isNewline)
                      .first(where: { $0.hasPrefix("used_memory:") }),
                  let n = Int(line.dropFirst("used_memory:".count)) else { return -1 }
            return n
        }
        var forward = Keyspace(state: KVStateV1(), version2: false)
        var backward = Keyspace(state: KVStateV1(), version2: false)
        let count = 20_000
        for i in 0..<count {
            // Mixed sizes: short and long keys, small strings and a few lists.
            let key = i % 7 == 0 ? "a-rather-long-key-name:\(i)" : "k\(i)"
            _ = forward.send(i % 50 == 0 ? ["RPUSH", key, "x", "y", "z"] : ["SET", key, String(repeating: "v", count: i % 40)])
        }
        for i in (0..<count).reversed() {
            let key = i % 7 == 0 ? "a-rather-long-key-name:\(i)" : "k\(i)"
            _ = backward.send(i % 50 == 0 ? ["RPUSH", key, "x", "y", "z"] : ["SET", key, String(repeating: "v", count: i % 40)])
        }
        let sampled = usedMemory(&forward)
        #expect(sampled == usedMemory(&backward), "the estimate depends on the contents only")
        // The exact walk, as the estimate computes it below its sampling threshold.
        var exact = 0
        forward.state.forEachKey { k, v, exp in
            exact += KVStateV1.estimatedBytesPerKey + (k.count > 15 ? 32 + k.count : 0) + v.byteEstimate
                + (exp == kvNoExpiry ? 0 : 57)
        }
        #expect(abs(Double(sampled - exact)) / Double(exact) < 0.05, "sampled \(sampled), exact \(exact)")
    }

    @Test("a v2 entry packs its access time and frequency into one word and round-trips their full ranges",
          arguments: [0, 1, -1, 1_800_000_000_000, (1 << 55) - 1, -(1 << 55)] as [Int64])
    func entryPacking(lastAccess: Int64) throws {
        for frequency: UInt8 in [0, 5, 128, 255] {
            var e = KVEntry(value: .string([1, 2]), expireAt: -1, lastAccess: lastAccess, frequency: frequency)
            #expect(e.lastAccess == lastAccess && e.frequency == frequency)
            e.frequency = 255 - frequency
            #expect(e.lastAccess == lastAccess && e.frequency == 255 - frequency)
            e.lastAccess = 42
            e.lastAccess = lastAccess
            #expect(e.lastAccess == lastAccess && e.frequency == 255 - frequency)
            let decoded = try KVEntry(canonicalBytes: e.canonicalBytes)
            #expect(decoded.lastAccess == lastAccess && decoded.frequency == 255 - frequency && decoded.expireAt == -1)
            #expect(decoded.stableDigest() == e.stableDigest())
        }
        #expect(MemoryLayout<KVEntry>.size <= 24)
        // A time beyond 56 bits in a snapshot is refused, not silently changed.
        var w = ByteWriter()
        KVValue.string([]).encode(to: &w)
        w.write(Int64(-1))
        w.write(Int64.max)
        w.write(UInt8(1))
        #expect(throws: (any Error).self) { try KVEntry(canonicalBytes: w.bytes) }
    }
}
