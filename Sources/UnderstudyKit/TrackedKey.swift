import UnderstudyWire

/// A byte string as a ``TrackedMap`` stores its keys: its position in the map's order and its bytes,
/// held inline when they fit in 15 bytes (no allocation per key for the short keys most services use).
///
/// Keys are ordered by position (``TrackedMap/position(of:)``, a stable 63-bit hash of the bytes), then
/// by the bytes themselves, so every process iterates the same keys in the same order, a cursor (a
/// position) stays meaningful across writes, swaps and versions, and uniform sampling is a random rank.
/// Services use it as the key of their own ``OrderedTree`` collections (the members of a set, the
/// fields of a hash) to get the same cursors and sampling inside a value.
public struct TrackedKey: Sendable, Comparable, Hashable {
    @usableFromInline
    enum Storage: Sendable, Hashable {
        /// Up to 15 bytes, little-endian in two words; the top byte of `high` is the length.
        case inline(low: UInt64, high: UInt64)
        /// 16 bytes or more.
        case heap([UInt8])
    }

    /// The order position: ``TrackedMap/position(of:)`` of the bytes.
    public let position: UInt64
    @usableFromInline let storage: Storage

    /// The key for some bytes.
    @inlinable public init(_ bytes: [UInt8]) {
        self.position = Self.position(of: bytes)
        self.storage = Self.store(bytes)
    }

    /// A key with a given position; with empty bytes, the smallest key at that position (where a cursor
    /// resumes). Precondition: `position` is ``TrackedMap/position(of:)`` of `bytes` unless used as a bound.
    @inlinable public init(position: UInt64, bytes: [UInt8]) {
        self.position = position
        self.storage = Self.store(bytes)
    }

    /// The position of some bytes in every tracked order: a stable 63-bit hash, never 0 (so 0 can start
    /// and end a cursor). The same in every process, version and map.
    @inlinable public static func position(of bytes: [UInt8]) -> UInt64 {
        let h = StableHasher.hash(bytes, seed: 0x5343_414E) >> 1
        return h == 0 ? 1 : h
    }

    @inlinable static func store(_ bytes: [UInt8]) -> Storage {
        let n = bytes.count
        guard n <= 15 else { return .heap(bytes) }
        var low: UInt64 = 0
        var high: UInt64 = UInt64(n) << 56
        bytes.withUnsafeBufferPointer { p in
            for i in 0..<min(n, 8) { low |= UInt64(p[i]) << (8 * UInt64(i)) }
            if n > 8 { for i in 8..<n { high |= UInt64(p[i]) << (8 * UInt64(i - 8)) } }
        }
        return .inline(low: low, high: high)
    }

    /// The number of bytes.
    @inlinable public var byteCount: Int {
        switch storage {
        case .inline(_, let high): Int(truncatingIfNeeded: high >> 56)
        case .heap(let b): b.count
        }
    }

    /// The bytes as an array.
    @inlinable public var bytes: [UInt8] {
        switch storage {
        case .heap(let b): return b
        case .inline(let low, let high):
            let n = Int(truncatingIfNeeded: high >> 56)
            return [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
                for i in 0..<n {
                    buffer[i] = UInt8(truncatingIfNeeded: i < 8 ? low >> (8 * UInt64(i)) : high >> (8 * UInt64(i - 8)))
                }
                initialized = n
            }
        }
    }

    /// Calls `body` with the bytes (no allocation for inline keys).
    @inlinable public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .heap(let b):
            return try b.withUnsafeBytes(body)
        case .inline(let low, let high):
            let n = Int(truncatingIfNeeded: high >> 56)
            let words = (low.littleEndian, (high & 0x00ff_ffff_ffff_ffff).littleEndian)
            return try withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
        }
    }

    /// Same bytes.
    @inlinable public static func == (a: TrackedKey, b: TrackedKey) -> Bool {
        guard a.position == b.position else { return false }
        switch (a.storage, b.storage) {
        case (.inline(let l1, let h1), .inline(let l2, let h2)): return l1 == l2 && h1 == h2
        case (.heap(let x), .heap(let y)): return x == y
        default: return false
        }
    }

    /// Position order, then byte order (memcmp, then length).
    @inlinable public static func < (a: TrackedKey, b: TrackedKey) -> Bool {
        if a.position != b.position { return a.position < b.position }
        // Same position: a hash collision or the same key; order by bytes (memcmp, then length).
        return a.withBytes { x in
            b.withBytes { y in
                let n = min(x.count, y.count)
                for i in 0..<n where x[i] != y[i] { return x[i] < y[i] }
                return x.count < y.count
            }
        }
    }

    /// Hashes the position (the bytes are already in it).
    @inlinable public func hash(into hasher: inout Hasher) {
        hasher.combine(position)
    }
}
