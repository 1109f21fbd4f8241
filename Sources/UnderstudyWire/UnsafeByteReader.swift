/// Reads what a ``ByteWriter`` (or any ``ByteSink``) wrote, in place, from memory the caller lends; bounds are
/// checked on every read.
///
/// The pointer-based counterpart of ``ByteReader``, and the one place the wire format's variable-length parts are
/// read: ``ByteReader`` reads its varints and `applied` bodies through it, and the supervisor reads `applied` frames
/// with it straight from its socket buffer (through ``FrameCodec/decodeAppliedBody(_:)``). Input that runs out or
/// makes no sense throws ``DecodingError``; no input makes it read outside `[start, end)`.
///
/// The reader is valid only as long as the memory it reads: use it inside the closure that lent the pointer
/// (`withUnsafeBytes`, `withUnsafeReadableBytes`) and never keep it.
public struct UnsafeByteReader: ByteDecoding {
    /// The memory read.
    public let bytes: UnsafeRawBufferPointer
    /// The offset of the next unread byte, from the start of ``bytes``.
    public private(set) var offset: Int
    /// The end of the readable range, an offset into ``bytes``.
    public let end: Int

    /// Creates a reader over a range of the memory.
    /// - Parameters:
    ///   - bytes: The memory, valid for as long as the reader is used.
    ///   - start: The offset of the first byte to read.
    ///   - end: The offset just past the last byte to read; the end of `bytes` when nil.
    public init(_ bytes: UnsafeRawBufferPointer, from start: Int = 0, to end: Int? = nil) {
        let end = end ?? bytes.count
        precondition(0 <= start && start <= end && end <= bytes.count, "reader range \(start)..<\(end) outside \(bytes.count) bytes")
        self.bytes = bytes
        self.offset = start
        self.end = end
    }

    /// How many bytes remain.
    public var remaining: Int { end - offset }

    /// True when all bytes were consumed.
    public var isAtEnd: Bool { offset >= end }

    /// Reads one byte.
    /// - Throws: ``DecodingError`` at the end of the input.
    public mutating func readByte() throws(DecodingError) -> UInt8 {
        guard offset < end else { throw DecodingError("unexpected end reading a byte at offset \(offset)") }
        defer { offset += 1 }
        return bytes.load(fromByteOffset: offset, as: UInt8.self)
    }

    /// Reads a little-endian fixed-width integer.
    /// - Throws: ``DecodingError`` when fewer bytes than the integer's size remain.
    public mutating func read<T: FixedWidthInteger>(_: T.Type) throws(DecodingError) -> T {
        let size = MemoryLayout<T>.size
        guard end - offset >= size else {
            throw DecodingError("unexpected end reading \(size)-byte integer at offset \(offset)")
        }
        defer { offset += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Reads an unsigned LEB128 varint (at most 10 bytes): the one varint decoder of the wire format.
    /// - Throws: ``DecodingError`` when the input ends inside it or it runs past 10 bytes.
    public mutating func readVarint() throws(DecodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard shift < 64 else { throw DecodingError("varint longer than 10 bytes at offset \(offset)") }
            let byte = try readByte()
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Reads exactly `count` bytes, copied out once (an empty array allocates nothing).
    /// - Throws: ``DecodingError`` when fewer than `count` bytes remain.
    public mutating func readRaw(_ count: Int) throws(DecodingError) -> [UInt8] {
        guard count >= 0, end - offset >= count else {
            throw DecodingError("unexpected end reading \(count) bytes at offset \(offset)")
        }
        guard count > 0 else { return [] }
        defer { offset += count }
        // One allocation and a memcpy. (Not `Array(unsafeUninitializedCapacity:)`: specialised outside the standard
        // library it looks up the storage class's metadata on every call, which doubles the cost of a short copy.)
        return Array(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)]))
    }

    /// Reads a list like ``readList()``, keeping at most `limit` elements: the rest are checked and skipped, so the
    /// memory taken stays bounded by `limit` whatever the count (a one-byte element costs an array of its own).
    /// - Throws: ``DecodingError`` for a count larger than the bytes left, or a bad element (skipped ones too).
    public mutating func readList(keepingAtMost limit: Int) throws(DecodingError) -> [[UInt8]] {
        let n = try readCount(limit: remaining)
        var out: [[UInt8]] = []
        out.reserveCapacity(Swift.min(n, limit))
        for i in 0..<n {
            if i < limit {
                out.append(try readBytes())
            } else {
                let length = try readCount()
                guard end - offset >= length else {
                    throw DecodingError("unexpected end skipping \(length) bytes at offset \(offset)")
                }
                offset += length
            }
        }
        return out
    }

    /// Reads a varint count, then that many length-prefixed byte strings.
    /// - Throws: ``DecodingError`` for a count larger than the bytes left, or a bad element.
    public mutating func readList() throws(DecodingError) -> [[UInt8]] {
        // Every element takes at least its one-byte length.
        let n = try readCount(limit: remaining)
        var out: [[UInt8]] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try readBytes()) }
        return out
    }
}
