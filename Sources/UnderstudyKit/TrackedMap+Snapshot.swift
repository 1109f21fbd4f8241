import UnderstudyWire

// The per-entry snapshot loops. They are `@inlinable` and reached through the `StateValue`
// requirements `encodeSnapshotEntries` / `decodeSnapshotEntries`, whose default implementations
// are specialized for each concrete value type in the module that declares the conformance. Run
// generically (through a `TrackedMapVisitor`), every tree step and value copy would go
// through runtime metadata and value witnesses, which cost several times the work itself.

extension TrackedMap {
    /// Appends `(key, canonical value)` for every entry, each length-prefixed, in iteration order.
    ///
    /// The value is encoded in place after a one-byte length placeholder, which is patched once
    /// the value's size is known (and widened, moving the value, in the rare case it is ≥ 128 bytes),
    /// so the bytes are exactly those of `writeBytes(key); writeBytes(value.canonicalBytes)`.
    @inlinable
    func appendSnapshotEntries(to writer: inout ByteWriter) {
        storage.forEach { key, entry in
            key.withBytes { bytes in
                writer.writeVarint(UInt64(bytes.count))
                writer.bytes.append(contentsOf: bytes)
            }
            let lengthAt = writer.bytes.count
            writer.bytes.append(0)
            entry.value.encode(to: &writer)
            let length = writer.bytes.count &- lengthAt &- 1
            if length < 0x80 {
                writer.bytes[lengthAt] = UInt8(truncatingIfNeeded: length)
            } else {
                writer.bytes.replaceSubrange(lengthAt..<(lengthAt + 1), with: snapshotVarint(UInt64(length)))
            }
        }
    }

    /// Decodes `count` length-prefixed `(key, canonical value)` pairs starting at `offset` and sets
    /// them without recording, keeping the bucket digests exact (a key already present is replaced).
    ///
    /// Values decode straight from `bytes` through a bounded reader, so the only allocations are
    /// the key, the value's own storage and the tree's.
    @inlinable
    mutating func loadSnapshotEntries(_ bytes: [UInt8], offset: Int, count: Int) throws {
        // Owned locally so the per-entry bucket update does not re-check uniqueness through `self`.
        var buckets = self.buckets
        self.buckets = []
        defer { self.buckets = buckets }
        var o = offset
        for _ in 0..<count {
            let keyLength = try snapshotReadLength(bytes, &o)
            let key = Array(bytes[o..<(o + keyLength)])
            o += keyLength
            let valueLength = try snapshotReadLength(bytes, &o)
            var reader = ByteReader(bytes, from: o, to: o + valueLength)
            let value = try Value(decoding: &reader)
            guard reader.isAtEnd else {
                throw DecodingError("\(reader.remaining) trailing bytes after \(Value.self)")
            }
            o += valueLength
            let b = bucket(of: key)
            let h = entryHash(key: key, value: value)
            if let old = storage.updateValue(Entry(value: value, hash: h), forKey: TrackedKey(key)) {
                buckets[b] &-= old.hash
            }
            buckets[b] &+= h
        }
    }
}

/// The unsigned LEB128 bytes of `value` (what `ByteWriter.writeVarint` writes).
@usableFromInline
func snapshotVarint(_ value: UInt64) -> [UInt8] {
    var w = ByteWriter(capacity: 10)
    w.writeVarint(value)
    return w.bytes
}

/// Reads a varint length at `offset` that must not exceed the bytes left after it, and advances
/// `offset` past the varint. Same acceptance as `ByteReader.readCount(limit: remaining)`.
@inlinable
func snapshotReadLength(_ bytes: [UInt8], _ offset: inout Int) throws(DecodingError) -> Int {
    var o = offset
    guard o < bytes.count else { throw DecodingError("unexpected end reading a byte at offset \(o)") }
    var byte = bytes[o]
    o += 1
    var result = UInt64(byte & 0x7f)
    var shift: UInt64 = 7
    while byte & 0x80 != 0 {
        guard shift < 64 else { throw DecodingError("varint longer than 10 bytes at offset \(o)") }
        guard o < bytes.count else { throw DecodingError("unexpected end reading a byte at offset \(o)") }
        byte = bytes[o]
        o += 1
        result |= UInt64(byte & 0x7f) << shift
        shift += 7
    }
    guard result <= UInt64(bytes.count - o) else {
        throw DecodingError("unexpected end reading \(result) bytes at offset \(o)")
    }
    offset = o
    return Int(result)
}
