import Testing
import UnderstudyKit
import UnderstudyWire

/// The snapshot layout of format 1, written the straightforward way (each value encoded on its own
/// and then length-prefixed), in the maps' iteration order — what every format-1 snapshot on disk holds.
func referenceSnapshot(_ state: some TrackedState, schemaVersion: UInt32, sequence: UInt64) -> [UInt8] {
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

struct ReferenceMapWriter: TrackedMapVisitor {
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

@Suite("Snapshot format")
struct SnapshotFormatTests {
    /// Labels whose canonical encodings straddle every varint-length boundary (1, 2 and 3 bytes).
    static func boundaryState() -> LedgerState {
        var state = LedgerState()
        // A string's canonical form is its varint length plus its bytes.
        let lengths = [0, 1, 125, 126, 127, 128, 300, 16_381, 16_382, 16_383, 70_000]
        for (i, n) in lengths.enumerated() {
            state.labels.set(Array("l\(i)".utf8), String(repeating: "é", count: n / 2) + String(repeating: "x", count: n % 2))
            state.counters.set(Array("c\(i)".utf8), Int64(i) * -7)
        }
        state.labels.set([], "")
        _ = state.drainTouchedKeys()
        return state
    }

    @Test("snapshots keep the format-1 layout byte for byte, at every value-length boundary")
    func layoutUnchanged() throws {
        let state = Self.boundaryState()
        let bytes = state.encodeSnapshot(schemaVersion: 7, sequence: 99)
        #expect(bytes == referenceSnapshot(state, schemaVersion: 7, sequence: 99))

        let snapshot = try StateSnapshot(bytes: bytes)
        var loaded = LedgerState()
        try loaded.load(from: snapshot)
        #expect(loaded.digest(sequence: 0) == state.digest(sequence: 0))
        #expect(loaded.labels.count == state.labels.count)
        state.labels.forEach { k, v in #expect(loaded.labels.peek(k) == v) }
        for (k, v) in try snapshot.entries(of: "labels") {
            #expect(try String(canonicalBytes: v) == state.labels.peek(k))
        }
    }

    @Test("a format-1 snapshot written by hand decodes to the expected state")
    func handWrittenFormat1() throws {
        var w = snapshotHeader(schemaVersion: 4, sequence: 77, maps: 2)
        w.writeString("labels")
        w.writeVarint(2)
        w.writeBytes(Array("a".utf8))
        w.writeBytes("alpha".canonicalBytes)
        w.writeBytes(Array("b".utf8))
        w.writeBytes(String(repeating: "β", count: 100).canonicalBytes)  // a two-byte value length
        w.writeString("counters")
        w.writeVarint(1)
        w.writeBytes([])
        w.writeBytes(Int64(-5).canonicalBytes)

        let snapshot = try StateSnapshot(bytes: w.bytes)
        #expect(snapshot.schemaVersion == 4 && snapshot.sequence == 77)
        var loaded = LedgerState()
        try loaded.load(from: snapshot)

        var expected = LedgerState()
        expected.labels.set(Array("a".utf8), "alpha")
        expected.labels.set(Array("b".utf8), String(repeating: "β", count: 100))
        expected.counters.set([], -5)
        #expect(loaded.digest(sequence: 0) == expected.digest(sequence: 0))
        #expect(loaded.labels.peek(Array("b".utf8)) == String(repeating: "β", count: 100))
        #expect(loaded.counters.peek([]) == -5)
        #expect(loaded.drainTouchedKeys().touched.isEmpty)
    }

    @Test("loading over existing keys replaces them and keeps the digest exact")
    func loadOverExisting() throws {
        let source = StateSnapshotTests.sampleState()
        let snapshot = try StateSnapshot(bytes: source.encodeSnapshot(schemaVersion: 1, sequence: 1))
        var target = LedgerState()
        target.counters.set(Array("c1".utf8), 12345)  // replaced by the snapshot
        target.counters.set(Array("only-here".utf8), 1)  // kept
        try target.load(from: snapshot)

        var expected = StateSnapshotTests.sampleState()
        expected.counters.set(Array("only-here".utf8), 1)
        #expect(target.digest(sequence: 0) == expected.digest(sequence: 0))
        #expect(target.counters.peek(Array("c1".utf8)) == source.counters.peek(Array("c1".utf8)))
    }

    @Test("a value with trailing bytes inside its frame fails the load")
    func trailingBytesInValue() throws {
        var w = snapshotHeader(schemaVersion: 1, sequence: 0, maps: 1)
        w.writeString("labels")
        w.writeVarint(1)
        w.writeBytes([1])
        w.writeBytes("x".canonicalBytes + [0])
        let snapshot = try StateSnapshot(bytes: w.bytes)
        var target = LedgerState()
        #expect(throws: DecodingError("1 trailing bytes after String")) { try target.load(from: snapshot) }
    }
}

/// The header of a format-1 snapshot written by hand: magic, format version, schema, sequence, map count.
func snapshotHeader(schemaVersion: UInt32, sequence: UInt64, maps: Int) -> ByteWriter {
    var w = ByteWriter()
    w.writeRaw(Array("USNP".utf8))
    w.write(UInt16(1))
    w.write(schemaVersion)
    w.write(sequence)
    w.writeVarint(UInt64(maps))
    return w
}
