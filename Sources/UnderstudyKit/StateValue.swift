import UnderstudyWire

/// A value that can live in a ``TrackedMap``: it has a deterministic, versioned canonical encoding.
///
/// The canonical bytes are what snapshots carry and what patches set. Two processes holding equal
/// values must produce equal ``stableDigest()`` results; the default hashes the canonical bytes, so
/// an encoding must not depend on hash-table iteration order (sort unordered collections, or
/// override ``stableDigest()`` with an order-independent combination).
public protocol StateValue: Sendable {
    /// Appends the canonical encoding.
    func encode(to writer: inout ByteWriter)
    /// Decodes a value from its canonical encoding.
    init(decoding reader: inout ByteReader) throws
    /// A stable, seed-free 64-bit hash of the value (default: hash of the canonical bytes).
    func stableDigest() -> UInt64

    /// Appends every entry of `map` in snapshot framing: `(varint key length, key, varint value
    /// length, canonical value)` per entry, in the map's iteration order.
    ///
    /// Use the default implementation; do not provide your own. It is a requirement only so that
    /// the snapshot loop is compiled for each concrete value type (in the module that declares the
    /// conformance) instead of running generically over the tree.
    static func encodeSnapshotEntries(of map: TrackedMap<Self>, into writer: inout ByteWriter)

    /// Decodes `count` entries in snapshot framing from `bytes`, starting at `offset`, into `map`
    /// (untracked writes; the digest is maintained).
    ///
    /// Use the default implementation; do not provide your own (see
    /// ``encodeSnapshotEntries(of:into:)``).
    static func decodeSnapshotEntries(
        _ bytes: [UInt8], offset: Int, count: Int, into map: inout TrackedMap<Self>) throws
}

extension StateValue {
    /// Writes the entries straight into `writer` (no per-value scratch buffer).
    @inlinable
    public static func encodeSnapshotEntries(of map: TrackedMap<Self>, into writer: inout ByteWriter) {
        map.appendSnapshotEntries(to: &writer)
    }

    /// Decodes the entries straight from `bytes` (no per-value intermediate array).
    @inlinable
    public static func decodeSnapshotEntries(
        _ bytes: [UInt8], offset: Int, count: Int, into map: inout TrackedMap<Self>
    ) throws {
        try map.loadSnapshotEntries(bytes, offset: offset, count: count)
    }
}

extension StateValue {
    /// Hashes the canonical encoding.
    public func stableDigest() -> UInt64 {
        StableHasher.hash(canonicalBytes)
    }

    /// The canonical encoding as a byte array.
    public var canonicalBytes: [UInt8] {
        var w = ByteWriter()
        encode(to: &w)
        return w.bytes
    }

    /// Decodes a value from a complete canonical encoding.
    public init(canonicalBytes: [UInt8]) throws {
        var r = ByteReader(canonicalBytes)
        try self.init(decoding: &r)
        guard r.isAtEnd else { throw DecodingError("\(r.remaining) trailing bytes after \(Self.self)") }
    }
}

extension Array: StateValue where Element == UInt8 {
    /// Encodes the bytes with a length prefix.
    public func encode(to writer: inout ByteWriter) { writer.writeBytes(self) }
    /// Decodes length-prefixed bytes.
    public init(decoding reader: inout ByteReader) throws { self = try reader.readBytes() }
    /// Hashes the bytes directly.
    public func stableDigest() -> UInt64 { StableHasher.hash(self) }
}

extension Int64: StateValue {
    /// Encodes eight little-endian bytes.
    public func encode(to writer: inout ByteWriter) { writer.write(self) }
    /// Decodes eight little-endian bytes.
    public init(decoding reader: inout ByteReader) throws { self = try reader.readInt64() }
}

extension UInt64: StateValue {
    /// Encodes eight little-endian bytes.
    public func encode(to writer: inout ByteWriter) { writer.write(self) }
    /// Decodes eight little-endian bytes.
    public init(decoding reader: inout ByteReader) throws { self = try reader.read(UInt64.self) }
}

extension String: StateValue {
    /// Encodes UTF-8 with a length prefix.
    public func encode(to writer: inout ByteWriter) { writer.writeString(self) }
    /// Decodes UTF-8 with a length prefix.
    public init(decoding reader: inout ByteReader) throws { self = try reader.readString() }
}
