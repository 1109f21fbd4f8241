import UnderstudyWire

/// A state snapshot in its canonical byte form, readable map by map.
///
/// Layout: magic `USNP`, format version (UInt16), schema version (UInt32), sequence (UInt64),
/// map count, then for each map its name, entry count and `(key, canonical value)` pairs.
/// ``TrackedState/encodeSnapshot(schemaVersion:sequence:)`` writes it; a service's `migrate`
/// reads an older schema's maps with ``entries(of:)`` or ``decodeMap(_:into:)``.
public struct StateSnapshot: Sendable {
    /// The snapshot's state schema version.
    public let schemaVersion: UInt32
    /// The last sequence number the snapshot covers.
    public let sequence: UInt64
    /// The raw bytes.
    public let bytes: [UInt8]
    let maps: [String: (offset: Int, count: Int)]
    /// The map names in the snapshot.
    public var mapNames: [String] { maps.keys.sorted() }

    static let magic: [UInt8] = Array("USNP".utf8)
    static let formatVersion: UInt16 = 1

    /// Parses a snapshot's header and indexes its maps, validating every entry's framing.
    public init(bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        guard (try? r.readRaw(4)) == StateSnapshot.magic else {
            throw DecodingError("not a state snapshot (bad magic)")
        }
        let format = try r.read(UInt16.self)
        guard format == StateSnapshot.formatVersion else {
            throw DecodingError("unsupported snapshot format \(format)")
        }
        self.schemaVersion = try r.read(UInt32.self)
        self.sequence = try r.read(UInt64.self)
        let mapCount = try r.readCount(limit: 1 << 16)
        var maps: [String: (offset: Int, count: Int)] = [:]
        for _ in 0..<mapCount {
            let name = try r.readString()
            let count = try r.readCount()
            let offset = r.offset
            // Check every entry's framing without copying it out.
            var end = offset
            for _ in 0..<count {
                let keyLength = try snapshotReadLength(bytes, &end)
                end += keyLength
                let valueLength = try snapshotReadLength(bytes, &end)
                end += valueLength
            }
            r = ByteReader(bytes, from: end)
            maps[name] = (offset, count)
        }
        guard r.isAtEnd else { throw DecodingError("\(r.remaining) trailing bytes after snapshot") }
        self.bytes = bytes
        self.maps = maps
    }

    /// The number of entries in a map (0 when the map is absent).
    public func count(of map: String) -> Int { maps[map]?.count ?? 0 }

    /// Calls `body` with each `(key, canonical value bytes)` of a map.
    public func forEachEntry(of map: String, _ body: ([UInt8], [UInt8]) throws -> Void) throws {
        guard let (offset, count) = maps[map] else { return }
        var r = ByteReader(bytes, from: offset)
        for _ in 0..<count {
            let k = try r.readBytes()
            let v = try r.readBytes()
            try body(k, v)
        }
    }

    /// All entries of a map as `(key, value bytes)` pairs.
    public func entries(of map: String) throws -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        out.reserveCapacity(count(of: map))
        try forEachEntry(of: map) { out.append(($0, $1)) }
        return out
    }

    /// Decodes a map's entries into a tracked map of the same name (untracked writes).
    public func decodeMap<Value: StateValue>(_ name: String, into map: inout TrackedMap<Value>) throws {
        guard let (offset, count) = maps[name] else { return }
        map.recording = false
        defer { map.recording = true }
        try Value.decodeSnapshotEntries(bytes, offset: offset, count: count, into: &map)
    }
}

struct SnapshotEncoder: TrackedMapVisitor {
    var writer: ByteWriter
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        writer.writeString(map.name)
        writer.writeVarint(UInt64(map.count))
        Value.encodeSnapshotEntries(of: map, into: &writer)
    }
}

struct MapCounter: TrackedMapVisitor {
    var maps = 0
    var entries = 0
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        maps += 1
        entries += map.count
    }
}

struct SnapshotDecoder: TrackedMapMutatingVisitor {
    let snapshot: StateSnapshot
    var failure: (any Error)?
    mutating func visit<Value: StateValue>(_ map: inout TrackedMap<Value>) {
        do { try snapshot.decodeMap(map.name, into: &map) } catch { failure = error }
    }
}

extension TrackedState {
    /// Encodes the whole state as a snapshot.
    public func encodeSnapshot(schemaVersion: UInt32, sequence: UInt64) -> [UInt8] {
        var counter = MapCounter()
        visitMaps(&counter)
        // The writer lives in the encoder from the start: a second reference to its buffer would
        // make the first append copy it (and drop the reserved capacity).
        var encoder = SnapshotEncoder(writer: ByteWriter(capacity: 64 + counter.entries * 32))
        encoder.writer.writeRaw(StateSnapshot.magic)
        encoder.writer.write(StateSnapshot.formatVersion)
        encoder.writer.write(schemaVersion)
        encoder.writer.write(sequence)
        encoder.writer.writeVarint(UInt64(counter.maps))
        visitMaps(&encoder)
        return encoder.writer.bytes
    }

    /// Loads every map of the same name from a snapshot of this state's own schema into `self`.
    public mutating func load(from snapshot: StateSnapshot) throws {
        var d = SnapshotDecoder(snapshot: snapshot)
        visitMaps(mutating: &d)
        if let failure = d.failure { throw failure }
    }
}
