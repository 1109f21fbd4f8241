import UnderstudyWire

/// A key as a ``TrackedMap`` stores it: its position in the map's order and its bytes, held inline
/// when they fit in 15 bytes (no allocation per key for the short keys most services use).
///
/// Maps are ordered by position (a stable 63-bit hash of the bytes), then by the bytes themselves, so
/// every process iterates a map in the same order, a cursor (a position) stays meaningful across
/// writes, swaps and versions, and uniform sampling is a random rank.
@usableFromInline
struct TrackedKey: Sendable, Comparable {
    @usableFromInline
    enum Storage: Sendable {
        /// Up to 15 bytes, little-endian in two words; the top byte of `high` is the length.
        case inline(low: UInt64, high: UInt64)
        /// 16 bytes or more.
        case heap([UInt8])
    }

    /// The order position: ``TrackedMap/position(of:)`` of the bytes.
    @usableFromInline let position: UInt64
    @usableFromInline let storage: Storage

    @inlinable init(_ bytes: [UInt8]) {
        self.position = TrackedMap<Int64>.position(of: bytes)
        self.storage = Self.store(bytes)
    }

    @inlinable init(position: UInt64, bytes: [UInt8]) {
        self.position = position
        self.storage = Self.store(bytes)
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
    @inlinable var byteCount: Int {
        switch storage {
        case .inline(_, let high): Int(truncatingIfNeeded: high >> 56)
        case .heap(let b): b.count
        }
    }

    /// The bytes as an array.
    @inlinable var bytes: [UInt8] {
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
    @inlinable func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .heap(let b):
            return try b.withUnsafeBytes(body)
        case .inline(let low, let high):
            let n = Int(truncatingIfNeeded: high >> 56)
            let words = (low.littleEndian, (high & 0x00ff_ffff_ffff_ffff).littleEndian)
            return try withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
        }
    }

    @inlinable static func == (a: TrackedKey, b: TrackedKey) -> Bool {
        guard a.position == b.position else { return false }
        switch (a.storage, b.storage) {
        case (.inline(let l1, let h1), .inline(let l2, let h2)): return l1 == l2 && h1 == h2
        case (.heap(let x), .heap(let y)): return x == y
        default: return false
        }
    }

    @inlinable static func < (a: TrackedKey, b: TrackedKey) -> Bool {
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
}
