/// Appends little-endian integers and length-prefixed byte strings to a growing buffer.
///
/// Used for frames, snapshots and the canonical encoding of state. The layout is fixed
/// (little-endian, no padding) so that the same value encodes to the same bytes in every process.
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public var bytes: [UInt8]

    /// Creates an empty writer.
    /// - Parameter capacity: bytes to reserve up front.
    public init(capacity: Int = 0) {
        self.bytes = []
        self.bytes.reserveCapacity(capacity)
    }

    /// Appends one byte.
    @inlinable public mutating func write(_ value: UInt8) { bytes.append(value) }

    /// Appends a `UInt16` in little-endian order.
    @inlinable public mutating func write(_ value: UInt16) { writeFixed(value) }

    /// Appends a `UInt32` in little-endian order.
    @inlinable public mutating func write(_ value: UInt32) { writeFixed(value) }

    /// Appends a `UInt64` in little-endian order.
    @inlinable public mutating func write(_ value: UInt64) { writeFixed(value) }

    /// Appends an `Int64` in little-endian two's complement.
    @inlinable public mutating func write(_ value: Int64) { writeFixed(UInt64(bitPattern: value)) }

    /// Appends a `Bool` as one byte.
    @inlinable public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    @inlinable mutating func writeFixed<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends an unsigned LEB128 variable-length integer (``ByteSink/appendVarint(_:)``).
    @inlinable public mutating func writeVarint(_ value: UInt64) { appendVarint(value) }

    /// Appends a varint length followed by the bytes.
    @inlinable public mutating func writeBytes(_ value: some Collection<UInt8>) {
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends a UTF-8 string with a varint length.
    @inlinable public mutating func writeString(_ value: String) {
        writeBytes(Array(value.utf8))
    }

    /// Appends raw bytes with no length.
    @inlinable public mutating func writeRaw(_ value: some Collection<UInt8>) {
        bytes.append(contentsOf: value)
    }
}

/// The error a ``ByteReader`` throws when its input ends early or is malformed.
public struct DecodingError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What was being read when the input ran out or made no sense.
    public var context: String
    /// Creates an error.
    public init(_ context: String) { self.context = context }
    public var description: String { "malformed input: \(context)" }
}

/// Reads what a ``ByteWriter`` wrote, checking bounds on every read.
public struct ByteReader: ByteDecoding, Sendable {
    /// The whole input.
    public let bytes: [UInt8]
    /// The index of the next unread byte.
    public private(set) var offset: Int
    /// The end of the readable range.
    public let end: Int

    /// Creates a reader over a range of bytes.
    public init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    /// How many bytes remain.
    public var remaining: Int { end - offset }

    /// True when all bytes were consumed.
    public var isAtEnd: Bool { offset >= end }

    /// Reads one byte.
    public mutating func readByte() throws(DecodingError) -> UInt8 {
        guard offset < end else { throw DecodingError("unexpected end reading a byte at offset \(offset)") }
        defer { offset += 1 }
        return bytes[offset]
    }

    /// Reads a little-endian fixed-width integer.
    public mutating func read<T: FixedWidthInteger>(_: T.Type) throws(DecodingError) -> T {
        let size = MemoryLayout<T>.size
        guard end - offset >= size else {
            throw DecodingError("unexpected end reading \(size)-byte integer at offset \(offset)")
        }
        var value: T = 0
        for i in 0..<size {
            value |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i)
        }
        offset += size
        return value
    }

    /// Reads an `Int64`.
    public mutating func readInt64() throws(DecodingError) -> Int64 {
        Int64(bitPattern: try read(UInt64.self))
    }

    /// Reads an unsigned LEB128 varint (at most 10 bytes), with ``UnsafeByteReader/readVarint()``.
    public mutating func readVarint() throws(DecodingError) -> UInt64 {
        // Not through the generic `withUnsafeReader`: this runs for every length and count, and unspecialised (as in
        // debug builds) the generic path made decoding a million-command transaction 40 % slower.
        let start = offset
        let end = self.end
        var next = start
        var failure: DecodingError?
        let value = bytes.withUnsafeBytes { raw -> UInt64 in
            var reader = UnsafeByteReader(raw, from: start, to: end)
            do throws(DecodingError) {
                let value = try reader.readVarint()
                next = reader.offset
                return value
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        offset = next
        return value
    }

    /// Runs `body` with an ``UnsafeByteReader`` over the unread bytes, then continues after what it read.
    ///
    /// How this reader shares the pointer-based one's code: an error leaves the offset where it was.
    mutating func withUnsafeReader<T>(
        _ body: (inout UnsafeByteReader) throws(DecodingError) -> T
    ) throws(DecodingError) -> T {
        let start = offset
        let end = self.end
        // `withUnsafeBytes` only rethrows untyped errors: the typed one travels in a Result.
        let outcome: Result<(T, Int), DecodingError> = bytes.withUnsafeBytes { raw in
            var reader = UnsafeByteReader(raw, from: start, to: end)
            do throws(DecodingError) {
                let value = try body(&reader)
                return .success((value, reader.offset))
            } catch {
                return .failure(error)
            }
        }
        let (value, next) = try outcome.get()
        offset = next
        return value
    }

    /// Reads exactly `count` bytes.
    public mutating func readRaw(_ count: Int) throws(DecodingError) -> [UInt8] {
        guard count >= 0, end - offset >= count else {
            throw DecodingError("unexpected end reading \(count) bytes at offset \(offset)")
        }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}
