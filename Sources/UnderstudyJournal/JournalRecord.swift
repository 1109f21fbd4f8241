import UnderstudyWire

/// One journaled request: its sequence number, the context a handler may read (time, seed) and the request bytes.
public struct JournalRecord: Sendable, Equatable {
    /// The record's sequence number; the first record of a journal is 1 and they increase by one.
    public var sequence: UInt64
    /// The journaled wall-clock time, in milliseconds since the Unix epoch.
    public var time: Int64
    /// The journaled random seed.
    public var seed: UInt64
    /// The protocol tag (which front-end protocol the payload is in).
    public var tag: UInt8
    /// The request bytes.
    public var payload: [UInt8]

    /// Creates a record.
    ///
    /// - Parameters:
    ///   - sequence: The sequence number.
    ///   - time: The journaled wall-clock time, ms since the Unix epoch.
    ///   - seed: The journaled random seed.
    ///   - tag: The protocol tag.
    ///   - payload: The request bytes.
    public init(sequence: UInt64, time: Int64, seed: UInt64, tag: UInt8, payload: [UInt8]) {
        self.sequence = sequence
        self.time = time
        self.seed = seed
        self.tag = tag
        self.payload = payload
    }
}

/// The on-disk layout of a record, little-endian:
///
/// ```
/// offset size field
///      0    4 payload length (bytes)
///      4    8 sequence
///     12    8 time (ms since the Unix epoch, signed)
///     20    8 seed
///     28    1 tag
///     29    n payload
///   29+n    4 CRC32C of bytes 0 ..< 29+n
/// ```
enum RecordCodec {
    static let headerSize = 29
    static let trailerSize = 4
    static let overhead = headerSize + trailerSize
    /// The largest payload any journal holds (``UnderstudyLimits/maxInputBytes``); a larger length field is
    /// corruption.
    static let maxPayload = UnderstudyLimits.maxInputBytes

    /// The encoded size of a record with `payloadCount` payload bytes.
    @inline(__always)
    static func encodedSize(payloadCount: Int) -> Int { overhead + payloadCount }

    /// Writes the header of `record` into `header` (which must hold `headerSize` bytes).
    @inline(__always)
    static func writeHeader(_ record: JournalRecord, into header: UnsafeMutableRawPointer) {
        header.storeBytes(of: UInt32(truncatingIfNeeded: record.payload.count).littleEndian, as: UInt32.self)
        header.storeBytes(of: record.sequence.littleEndian, toByteOffset: 4, as: UInt64.self)
        header.storeBytes(of: record.time.littleEndian, toByteOffset: 12, as: Int64.self)
        header.storeBytes(of: record.seed.littleEndian, toByteOffset: 20, as: UInt64.self)
        header.storeBytes(of: record.tag, toByteOffset: 28, as: UInt8.self)
    }

    /// Appends the encoding of `record` to `buffer`.
    @inline(__always)
    static func encode(_ record: JournalRecord, into buffer: inout [UInt8]) {
        withUnsafeTemporaryAllocation(byteCount: headerSize + trailerSize, alignment: 8) { scratch in
            let base = scratch.baseAddress!
            writeHeader(record, into: base)
            var crc = CRC32C.update(0, UnsafeRawBufferPointer(start: base, count: headerSize))
            crc = record.payload.withUnsafeBytes { CRC32C.update(crc, $0) }
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: base, count: headerSize))
            buffer.append(contentsOf: record.payload)
            base.storeBytes(of: crc.littleEndian, as: UInt32.self)
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: base, count: trailerSize))
        }
    }

    /// What is found at an offset of a byte buffer.
    enum Parse {
        /// A whole record with a matching checksum, `size` bytes long.
        case record(sequence: UInt64, size: Int)
        /// Fewer bytes remain than the header or the length field says.
        case short(needed: Int, available: Int)
        /// The length field is larger than any record can be.
        case badLength(UInt32)
        /// The checksum does not match; `sequence` is what the (untrusted) header says.
        case checksumMismatch(sequence: UInt64, size: Int)
    }

    @inline(__always)
    static func loadLength(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inline(__always)
    static func loadSequence(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self))
    }

    /// Parses (and checks) the record at `offset`.
    static func parse(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Parse {
        let available = bytes.count - offset
        guard available >= headerSize else { return .short(needed: headerSize, available: available) }
        let length = loadLength(bytes, at: offset)
        guard length <= maxPayload else { return .badLength(length) }
        let size = overhead + Int(length)
        guard available >= size else { return .short(needed: size, available: available) }
        let sequence = loadSequence(bytes, at: offset)
        let body = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + size - trailerSize)])
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + size - trailerSize, as: UInt32.self))
        guard CRC32C.update(0, body) == stored else { return .checksumMismatch(sequence: sequence, size: size) }
        return .record(sequence: sequence, size: size)
    }

    /// Decodes the record at `offset`, which `parse` has already accepted.
    static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> JournalRecord {
        let length = Int(loadLength(bytes, at: offset))
        let payloadStart = offset + headerSize
        return JournalRecord(
            sequence: loadSequence(bytes, at: offset),
            time: Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 12, as: Int64.self)),
            seed: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 20, as: UInt64.self)),
            tag: bytes[offset + 28],
            payload: Array(bytes[payloadStart..<(payloadStart + length)])
        )
    }

    /// Looks for a valid record starting after `offset` whose sequence is at least `minimumSequence`
    /// (resynchronising after a damaged record). Returns the first one found and the last sequence of
    /// the valid run that follows it, or nil when nothing valid follows.
    static func findValidRecords(
        _ bytes: UnsafeRawBufferPointer,
        after offset: Int,
        minimumSequence: UInt64
    ) -> (offset: Int, firstSequence: UInt64, lastSequence: UInt64)? {
        // No more records can follow than fit in the bytes left; that bounds plausible sequence numbers.
        let maximumSequence = minimumSequence + UInt64(max(0, bytes.count - offset) / overhead) + 1
        var position = offset + 1
        var found: (offset: Int, firstSequence: UInt64, lastSequence: UInt64)?
        while position + overhead <= bytes.count {
            let length = loadLength(bytes, at: position)
            let size = overhead + Int(length)
            if length <= maxPayload, position + size <= bytes.count {
                let sequence = loadSequence(bytes, at: position)
                if sequence >= minimumSequence, sequence <= maximumSequence,
                   case .record = parse(bytes, at: position) {
                    if found == nil {
                        found = (position, sequence, sequence)
                    } else {
                        found!.lastSequence = max(found!.lastSequence, sequence)
                    }
                    position += size
                    continue
                }
            }
            position += 1
        }
        return found
    }
}
