import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Format 1 written the straightforward way: each value encoded on its own, then length-prefixed.
private func referenceSnapshot(_ state: some TrackedState, schemaVersion: UInt32, sequence: UInt64) -> [UInt8] {
    var v = ReferenceMapWriter()
    state.visitMaps(&v)
    var w = ByteWriter()
    w.writeRaw(Array("USNP".utf8))
    w.write(UInt16(1))
    w.write(schemaVersion)
    w.write(sequence)
    w.writeVarint(UInt64(v.maps))
    w.writeRaw(v.w.bytes)
    return w.bytes
}

private struct ReferenceMapWriter: TrackedMapVisitor {
    var w = ByteWriter()
    var maps = 0
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        maps += 1
        w.writeString(map.name)
        w.writeVarint(UInt64(map.count))
        map.forEach { k, v in
            w.writeBytes(k)
            w.writeBytes(v.canonicalBytes)
        }
    }
}

@Suite("KV snapshots")
struct KVSnapshotTests {
    @Test("both schemas snapshot in the format-1 layout and restore with equal digests")
    func roundTripBothSchemas() throws {
        var v1 = ServiceEngine(service: KVServiceV1())
        populate(&v1, keys: 400)
        var seq = v1.lastSequence
        // Values long enough to need two- and three-byte length prefixes.
        for n in [126, 127, 128, 5_000, 20_000] {
            seq += 1
            _ = v1.apply(request(seq, 1_800_000_000_000, ["SET", "big\(n)", String(repeating: "v", count: n)]))
            seq += 1
            _ = v1.apply(request(seq, 1_800_000_000_000, ["RPUSH", "biglist\(n)", String(repeating: "e", count: n), "x"]))
        }
        let s1 = v1.state
        let b1 = s1.encodeSnapshot(schemaVersion: 1, sequence: seq)
        #expect(b1 == referenceSnapshot(s1, schemaVersion: 1, sequence: seq))
        var r1 = KVStateV1()
        try r1.load(from: try StateSnapshot(bytes: b1))
        #expect(r1.digest(sequence: 0) == s1.digest(sequence: 0))
        #expect(r1.keyCount == s1.keyCount)
        #expect(r1.drainTouchedKeys().touched.isEmpty)

        let s2 = KVServiceV2.upgrade(s1)
        let b2 = s2.encodeSnapshot(schemaVersion: 2, sequence: seq)
        #expect(b2 == referenceSnapshot(s2, schemaVersion: 2, sequence: seq))
        var r2 = KVStateV2()
        try r2.load(from: try StateSnapshot(bytes: b2))
        #expect(r2.digest(sequence: 0) == s2.digest(sequence: 0))
        #expect(r2.peekExpiry(Array("s0".utf8)) == s2.peekExpiry(Array("s0".utf8)))

        // Migration from a schema-1 snapshot still reads it map by map.
        let migrated = try KVServiceV2().migrate(from: try StateSnapshot(bytes: b1))
        #expect(migrated.digest(sequence: 0) == s2.digest(sequence: 0))
    }
}
