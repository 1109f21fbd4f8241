/// A growing destination for encoded bytes: what the frame encoders that take one write to.
///
/// ``ByteWriter`` is one. The supervisor makes its socket buffer one, so the frames on the request path are encoded
/// once, by this module, straight into the buffer they leave from. Encoders taking a sink are `@inlinable` and
/// generic, so each caller gets a copy specialised for its own sink type. A sink only ever appends.
public protocol ByteSink {
    /// Appends one byte.
    mutating func appendByte(_ byte: UInt8)

    /// Appends a fixed-width integer in little-endian order.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T)

    /// Appends raw bytes, with no length before them.
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer)
}

extension ByteSink {
    /// Appends an unsigned LEB128 variable-length integer: seven bits a byte, low bits first, the high bit set on
    /// every byte but the last. The one varint encoder of the wire format (``ByteWriter/writeVarint(_:)`` uses it).
    @inlinable
    public mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            appendByte(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        appendByte(UInt8(v))
    }

    /// Appends a varint length, then the bytes.
    @inlinable
    public mutating func appendLengthPrefixed(_ bytes: [UInt8]) {
        appendVarint(UInt64(bytes.count))
        bytes.withUnsafeBytes { appendBytes($0) }
    }
}

extension ByteWriter: ByteSink {
    /// Appends one byte.
    @inlinable public mutating func appendByte(_ byte: UInt8) { bytes.append(byte) }

    /// Appends a fixed-width integer in little-endian order.
    @inlinable public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) { writeFixed(value) }

    /// Appends raw bytes, with no length before them.
    @inlinable public mutating func appendBytes(_ raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }
}

/// Sizes of the LEB128 varints that ``ByteSink/appendVarint(_:)`` writes.
@usableFromInline
enum Varint {
    /// The number of bytes `value` takes as a varint: 1 to 10.
    @inlinable
    static func encodedSize(_ value: UInt64) -> Int {
        // Seven bits a byte; zero still takes one byte.
        (64 - (value | 1).leadingZeroBitCount + 6) / 7
    }
}
