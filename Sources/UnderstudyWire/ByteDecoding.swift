/// What the two byte readers share. ``ByteReader`` (over an array) and ``UnsafeByteReader`` (over lent memory) differ
/// only in how they reach the bytes — one byte, a varint, a run of raw bytes; everything built from those (booleans,
/// counts, length-prefixed strings) is written once, here.
public protocol ByteDecoding {
    /// Reads one byte.
    /// - Throws: ``DecodingError`` at the end of the input.
    mutating func readByte() throws(DecodingError) -> UInt8
    /// Reads an unsigned LEB128 varint (at most 10 bytes).
    /// - Throws: ``DecodingError`` when it runs past the input or past 10 bytes.
    mutating func readVarint() throws(DecodingError) -> UInt64
    /// Reads exactly `count` bytes, copied out once.
    /// - Throws: ``DecodingError`` when fewer than `count` bytes remain.
    mutating func readRaw(_ count: Int) throws(DecodingError) -> [UInt8]
}

extension ByteDecoding {
    /// Reads a `Bool` written as one byte.
    /// - Throws: ``DecodingError`` at the end of the input, or for a byte other than 0 and 1.
    @inlinable
    public mutating func readBool() throws(DecodingError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        case let b: throw DecodingError("invalid boolean byte \(b)")
        }
    }

    /// Reads a varint that must fit in `Int` and not exceed `limit`.
    /// - Throws: ``DecodingError`` for a bad varint or one above `limit`.
    @inlinable
    public mutating func readCount(limit: Int = Int(Int32.max)) throws(DecodingError) -> Int {
        let v = try readVarint()
        guard v <= UInt64(limit) else { throw DecodingError("count \(v) exceeds limit \(limit)") }
        return Int(v)
    }

    /// Reads a varint-length-prefixed byte string, copied out once.
    /// - Throws: ``DecodingError`` for a bad length or one beyond the input.
    @inlinable
    public mutating func readBytes() throws(DecodingError) -> [UInt8] {
        let count = try readCount()
        return try readRaw(count)
    }

    /// Reads a varint-length-prefixed UTF-8 string.
    /// - Throws: ``DecodingError`` for a bad length, one beyond the input, or bytes that are not UTF-8.
    @inlinable
    public mutating func readString() throws(DecodingError) -> String {
        let raw = try readBytes()
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw DecodingError("invalid UTF-8 string")
        }
        return s
    }
}
