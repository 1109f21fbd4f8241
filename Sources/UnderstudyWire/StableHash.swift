/// A stable, seed-free 64-bit hash (FNV-1a over bytes with a final avalanche).
///
/// Unlike Swift's `Hasher`, which is seeded per process, this gives the same value for the
/// same bytes in every process and on every run — the property digests and checksums rely on.
public struct StableHasher: Sendable {
    @usableFromInline var state: UInt64

    /// Creates a hasher, optionally with a domain separator mixed in first.
    @inlinable public init(seed: UInt64 = 0xcbf2_9ce4_8422_2325) { self.state = seed }

    /// Mixes in bytes.
    ///
    /// Gives exactly the result of ``combine(buffer:)`` over the same bytes, so callers may use
    /// either form for the same data.
    @inlinable public mutating func combine(_ bytes: some Sequence<UInt8>) {
        var h = state
        var word: UInt64 = 0
        var pending = 0
        for b in bytes {
            word |= UInt64(b) << (8 * UInt64(pending))
            pending += 1
            if pending == 8 {
                h = (h ^ word) &* 0x9E37_79B9_7F4A_7C15
                h ^= h >> 29
                word = 0
                pending = 0
            }
        }
        for i in 0..<pending {
            h = (h ^ ((word >> (8 * UInt64(i))) & 0xff)) &* 0x0000_0100_0000_01b3
        }
        state = h
    }

    /// Mixes in bytes from a contiguous buffer (faster path).
    @inlinable public mutating func combine(buffer: UnsafeRawBufferPointer) {
        var h = state
        var i = 0
        let n = buffer.count
        // Eight bytes at a time through a multiply-xorshift, then byte-wise for the tail.
        while i + 8 <= n {
            let word = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            h = (h ^ word) &* 0x9E37_79B9_7F4A_7C15
            h ^= h >> 29
            i += 8
        }
        while i < n {
            h = (h ^ UInt64(buffer[i])) &* 0x0000_0100_0000_01b3
            i += 1
        }
        state = h
    }

    /// Mixes in a 64-bit integer.
    @inlinable public mutating func combine(_ value: UInt64) {
        state = (state ^ value) &* 0x9E37_79B9_7F4A_7C15
        state ^= state >> 31
    }

    /// The final hash value.
    @inlinable public func finalize() -> UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// Hashes a contiguous array of bytes in one call.
    @inlinable public static func hash(_ bytes: [UInt8], seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = StableHasher(seed: seed)
        bytes.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(bytes.count))
        return h.finalize()
    }
}
