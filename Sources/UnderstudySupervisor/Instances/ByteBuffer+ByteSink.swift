import NIOCore
import UnderstudyWire

/// The outbound buffer of a worker connection takes frames straight from UnderstudyWire's encoders
/// (``FrameCodec/encodeApply(_:into:)``), so the request path writes `apply` frames with no copy in between.
extension ByteBuffer: ByteSink {
    /// Appends one byte.
    @inlinable public mutating func appendByte(_ byte: UInt8) { writeInteger(byte) }

    /// Appends a fixed-width integer in little-endian order.
    @inlinable public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        writeInteger(value, endianness: .little)
    }

    /// Appends raw bytes, with no length before them.
    @inlinable public mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) { writeBytes(bytes) }
}
