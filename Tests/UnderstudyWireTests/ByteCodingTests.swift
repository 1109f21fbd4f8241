import Testing
import UnderstudyWire

@Suite("Byte coding")
struct ByteCodingTests {
    @Test("varints round-trip at their edges", arguments: [
        UInt64(0), 1, 127, 128, 255, 300, 16_383, 16_384, UInt64(UInt32.max), 1 << 56, UInt64.max,
    ])
    func varint(_ value: UInt64) throws {
        var w = ByteWriter()
        w.writeVarint(value)
        #expect(w.bytes.count == max(1, (64 - value.leadingZeroBitCount + 6) / 7))
        var r = ByteReader(w.bytes)
        #expect(try r.readVarint() == value)
        #expect(r.isAtEnd)
    }

    @Test("fixed-width integers are little-endian")
    func littleEndian() throws {
        var w = ByteWriter()
        w.write(UInt32(0x0102_0304))
        w.write(UInt16(0x0A0B))
        w.write(Int64(-2))
        w.write(true)
        #expect(w.bytes == [4, 3, 2, 1, 0x0B, 0x0A, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1])
        var r = ByteReader(w.bytes)
        #expect(try r.read(UInt32.self) == 0x0102_0304)
        #expect(try r.read(UInt16.self) == 0x0A0B)
        #expect(try r.readInt64() == -2)
        #expect(try r.readBool())
        #expect(throws: DecodingError.self) { try r.readByte() }
    }

    @Test("bad input is a DecodingError")
    func badInput() {
        var longVarint = ByteReader(Array(repeating: 0x80, count: 10) + [1])
        #expect(throws: DecodingError.self) { try longVarint.readVarint() }
        var badBool = ByteReader([2])
        #expect(throws: DecodingError("invalid boolean byte 2")) { try badBool.readBool() }
        var badString = ByteReader([2, 0xFF, 0xFE])
        #expect(throws: DecodingError.self) { try badString.readString() }
        var overLimit = ByteReader([100])
        #expect(throws: DecodingError.self) { try overLimit.readCount(limit: 99) }
        var shortInt = ByteReader([1, 2, 3])
        #expect(throws: DecodingError.self) { try shortInt.read(UInt32.self) }
        var bounded = ByteReader([1, 2, 3, 4, 5], from: 1, to: 3)
        #expect(throws: DecodingError.self) { try bounded.read(UInt32.self) }
        #expect(bounded.remaining == 2)
    }

    @Test("commands and transactions round-trip; trailing bytes are refused")
    func commandCodec() throws {
        let command: [[UInt8]] = [Array("ADD".utf8), Array("k".utf8), Array("-5".utf8), []]
        let encoded = CommandCodec.encode(command)
        #expect(try CommandCodec.decode(encoded) == command)
        #expect(throws: DecodingError.self) { try CommandCodec.decode(encoded + [0]) }
        #expect(throws: DecodingError.self) { try CommandCodec.decode(Array(encoded.dropLast())) }
        let transaction = [command, [Array("GET".utf8), Array("k".utf8)]]
        #expect(try CommandCodec.decodeTransaction(CommandCodec.encodeTransaction(transaction)) == transaction)
        #expect(throws: DecodingError.self) { try CommandCodec.decodeTransaction(CommandCodec.encodeTransaction(transaction) + [1]) }
    }

    @Test("digest reports list the buckets that differ")
    func mismatchedBuckets() {
        let a = DigestReport(sequence: 1, buckets: [1, 2, 3, 4], entryCount: 4)
        let b = DigestReport(sequence: 1, buckets: [1, 0, 3, 5], entryCount: 4)
        #expect(a.mismatchedBuckets(against: b) == [1, 3])
        #expect(a.mismatchedBuckets(against: a) == [])
        #expect(a.mismatchedBuckets(against: DigestReport(sequence: 1, buckets: [1], entryCount: 1)) == [0, 1, 2, 3])
    }
}
