import Testing
import UnderstudyKit
import UnderstudyWire

/// Builds a map holding exactly `contents`, written once each in the given order.
func freshMap(_ name: String, _ contents: [(String, Int64)]) -> TrackedMap<Int64> {
    var m = TrackedMap<Int64>(name: name)
    for (k, v) in contents { m.set(Array(k.utf8), v) }
    return m
}

@Suite("Tracked maps and digests")
struct TrackedMapTests {
    @Test("the digest does not depend on insertion order or history")
    func orderIndependent() {
        var rng = TestRandom(seed: 21)
        let contents = (0..<2_000).map { ("key-\($0)", Int64.random(in: -1_000_000...1_000_000, using: &rng)) }
        let forward = freshMap("counters", contents)
        let backward = freshMap("counters", contents.reversed())
        var shuffled = TrackedMap<Int64>(name: "counters")
        // A different path to the same contents: junk values and extra keys written and undone.
        for (k, v) in contents.shuffled(using: &rng) {
            shuffled.set(Array(k.utf8), v &+ 17)
            shuffled.set(Array(("extra-" + k).utf8), v)
            shuffled.set(Array(k.utf8), v)
        }
        for (k, _) in contents { shuffled.remove(Array(("extra-" + k).utf8)) }

        #expect(forward.bucketDigests == backward.bucketDigests)
        #expect(forward.bucketDigests == shuffled.bucketDigests)
        #expect(forward.count == shuffled.count)
        #expect(forward.bucketDigests.count == digestBucketCount)

        // The map name is part of every entry hash: same contents under another name differ.
        #expect(freshMap("other", contents).bucketDigests != forward.bucketDigests)
        // One value changed changes exactly its key's bucket.
        var changed = forward
        changed.set(Array("key-7".utf8), contents[7].1 + 1)
        let differing = (0..<digestBucketCount).filter { changed.bucketDigests[$0] != forward.bucketDigests[$0] }
        #expect(differing == [forward.bucket(of: Array("key-7".utf8))])
    }

    @Test("set, update and remove keep the buckets equal to a digest recomputed from scratch")
    func incrementalEqualsFromScratch() {
        struct Boom: Error {}
        var rng = TestRandom(seed: 22)
        var map = TrackedMap<Int64>(name: "counters")
        var reference: [String: Int64] = [:]
        for step in 0..<20_000 {
            let key = "k\(Int.random(in: 0..<300, using: &rng))"
            let bytes = Array(key.utf8)
            switch Int.random(in: 0..<8, using: &rng) {
            case 0, 1:
                let v = Int64.random(in: -50...50, using: &rng)
                map.set(bytes, v)
                reference[key] = v
            case 2:
                #expect(map.remove(bytes) == reference.removeValue(forKey: key))
            case 3:
                map.update(bytes) { $0 = ($0 ?? 0) + 1 }
                reference[key, default: 0] += 1
            case 4:
                map.update(bytes) { $0 = nil }  // delete through update
                reference[key] = nil
            case 5:
                map.update(bytes) { _ in }  // read-only update: no change
            case 6:
                // A throwing body leaves the entry as it was.
                #expect(throws: Boom.self) {
                    try map.update(bytes) { value in
                        value = 999
                        throw Boom()
                    }
                }
            default:
                if step % 997 == 0 {
                    map.removeAll()
                    reference.removeAll()
                } else {
                    #expect(map.get(bytes) == reference[key])
                }
            }
            if step % 50 == 0 { _ = map.drainTouched() }
        }
        let scratch = freshMap("counters", reference.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        #expect(map.count == reference.count)
        #expect(map.bucketDigests == scratch.bucketDigests)
        for (k, v) in reference {
            #expect(map.peek(Array(k.utf8)) == v)
            #expect(map.valueHash(of: Array(k.utf8)) == scratch.valueHash(of: Array(k.utf8)))
        }
    }

    @Test("reads are logged as touched and changes as written")
    func touchLog() {
        var map = TrackedMap<Int64>(name: "m")
        let a = Array("a".utf8), b = Array("b".utf8)
        map.set(a, 1)
        _ = map.get(b)
        _ = map.contains(a)
        map.update(a) { _ in }  // unchanged: touched only
        var drained = map.drainTouched()
        #expect(drained.touched == [a, b, a, a])
        #expect(drained.written == [a])
        map.update(a) { $0 = 2 }
        map.update(b) { $0 = nil }  // absent and stays absent: touched only
        drained = map.drainTouched()
        #expect(drained.touched == [a, b])
        #expect(drained.written == [a])
        #expect(map.drainTouched().touched.isEmpty)
        // peek is not recorded.
        _ = map.peek(a)
        #expect(map.drainTouched().touched.isEmpty)
    }

    @Test("bucket assignment and entry hashes are pinned")
    func pinned() {
        let map = freshMap("counters", [("k1", 5)])
        #expect(map.bucket(of: Array("k1".utf8)) == 682)
        #expect(map.valueHash(of: Array("k1".utf8)) == 2_141_448_122_099_915_554)
        #expect(Int64(5).stableDigest() == StableHasher.hash([5, 0, 0, 0, 0, 0, 0, 0]))
        #expect(Array("x".utf8).stableDigest() == StableHasher.hash(Array("x".utf8)))
    }

    @Test("a state digest sums its maps per bucket")
    func stateDigest() {
        var state = LedgerState()
        state.counters.set(Array("a".utf8), 1)
        state.labels.set(Array("a".utf8), "x")
        let d = state.digest(sequence: 9)
        #expect(d.sequence == 9)
        #expect(d.entryCount == 2)
        for i in 0..<digestBucketCount {
            #expect(d.buckets[i] == state.counters.bucketDigests[i] &+ state.labels.bucketDigests[i])
        }
    }
}

@Suite("State snapshots")
struct StateSnapshotTests {
    static func sampleState() -> LedgerState {
        var state = LedgerState()
        var rng = TestRandom(seed: 31)
        for i in 0..<300 {
            state.counters.set(Array("c\(i)".utf8), Int64.random(in: .min ... .max, using: &rng))
            if i % 3 == 0 { state.labels.set(Array("l\(i)".utf8), "label \(i) ✓") }
        }
        state.counters.set([], 0)  // the empty key is a key too
        _ = state.drainTouchedKeys()
        return state
    }

    @Test("a snapshot loads into a fresh state with the same digest")
    func roundTrip() throws {
        let state = Self.sampleState()
        let bytes = state.encodeSnapshot(schemaVersion: 3, sequence: 1234)
        let snapshot = try StateSnapshot(bytes: bytes)
        #expect(snapshot.schemaVersion == 3)
        #expect(snapshot.sequence == 1234)
        #expect(snapshot.mapNames == ["counters", "labels"])
        #expect(snapshot.count(of: "counters") == 301)
        #expect(snapshot.count(of: "labels") == 100)
        #expect(snapshot.count(of: "missing") == 0)
        #expect(try snapshot.entries(of: "missing").isEmpty)

        var loaded = LedgerState()
        try loaded.load(from: snapshot)
        #expect(loaded.digest(sequence: 0) == state.digest(sequence: 0))
        // Loading is not recorded as request activity.
        #expect(loaded.drainTouchedKeys().touched.isEmpty)

        let entries = try snapshot.entries(of: "labels")
        #expect(entries.count == 100)
        for (k, v) in entries {
            #expect(try String(canonicalBytes: v) == state.labels.peek(k))
        }
        // The same state encodes to the same bytes.
        #expect(Self.sampleState().encodeSnapshot(schemaVersion: 3, sequence: 1234) == bytes)
    }

    @Test("bad magic, other formats, truncation and trailing bytes are rejected")
    func rejectsBadInput() throws {
        let bytes = Self.sampleState().encodeSnapshot(schemaVersion: 1, sequence: 5)
        var badMagic = bytes
        badMagic[0] = UInt8(ascii: "X")
        #expect(throws: DecodingError("not a state snapshot (bad magic)")) { try StateSnapshot(bytes: badMagic) }
        #expect(throws: (any Error).self) { try StateSnapshot(bytes: []) }
        #expect(throws: (any Error).self) { try StateSnapshot(bytes: Array("USN".utf8)) }
        var badFormat = bytes
        badFormat[4] = 2
        #expect(throws: (any Error).self) { try StateSnapshot(bytes: badFormat) }
        #expect(throws: (any Error).self) { try StateSnapshot(bytes: bytes + [0]) }

        // Every strict prefix is refused, never misread.
        var accepted: [Int] = []
        for n in 0..<bytes.count where (try? StateSnapshot(bytes: Array(bytes.prefix(n)))) != nil {
            accepted.append(n)
        }
        #expect(accepted.isEmpty, "prefixes accepted: \(accepted.prefix(10))")

        // A value that does not decode as the map's type fails the load, not the process.
        var state = LedgerState()
        state.labels.set([1], "x")
        var w = snapshotHeader(schemaVersion: 1, sequence: 0, maps: 1)
        w.writeString("counters")
        w.writeVarint(1)
        w.writeBytes([1])
        w.writeBytes([1, 2, 3])  // three bytes are not an Int64
        let wrongType = try StateSnapshot(bytes: w.bytes)
        var target = LedgerState()
        #expect(throws: (any Error).self) { try target.load(from: wrongType) }
    }

    @Test("patching keys fetched from a source gives the source's digest")
    func patchFromSource() throws {
        let source = Self.sampleState()
        var target = Self.sampleState()
        target.counters.set(Array("c1".utf8), 1)
        target.counters.remove(Array("c2".utf8))
        target.counters.set(Array("only-in-target".utf8), 3)
        target.labels.set(Array("l3".utf8), "changed")
        _ = target.drainTouchedKeys()
        let mismatched = target.digest(sequence: 0).mismatchedBuckets(against: source.digest(sequence: 0))
        #expect(!mismatched.isEmpty && mismatched.count <= 4)

        let want = Dictionary(uniqueKeysWithValues: source.entries(inBuckets: mismatched).map { ($0.key, $0.valueHash) })
        let have = Dictionary(uniqueKeysWithValues: target.entries(inBuckets: mismatched).map { ($0.key, $0.valueHash) })
        let keys = Set(want.keys).union(have.keys).filter { want[$0] != have[$0] }
        #expect(keys == [
            MapKey(map: "counters", key: Array("c1".utf8)), MapKey(map: "counters", key: Array("c2".utf8)),
            MapKey(map: "counters", key: Array("only-in-target".utf8)), MapKey(map: "labels", key: Array("l3".utf8)),
        ])
        let patch = source.fetch(Array(keys))
        #expect(patch.filter { $0.value == nil }.map(\.key) == [MapKey(map: "counters", key: Array("only-in-target".utf8))])
        #expect(try target.applyPatch(patch) == 4)
        #expect(target.digest(sequence: 0) == source.digest(sequence: 0))
        // Patching is not request activity.
        #expect(target.drainTouchedKeys().touched.isEmpty)
    }
}
