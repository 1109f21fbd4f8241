import Testing
import UnderstudyJournal

@Suite("CRC32C")
struct CRC32CTests {
    @Test("known check values", arguments: [
        ("", UInt32(0)),
        ("a", UInt32(0xC1D0_4330)),
        ("123456789", UInt32(0xE306_9283)),
        ("The quick brown fox jumps over the lazy dog", UInt32(0x2262_0404)),
    ])
    func knownValues(input: String, expected: UInt32) {
        #expect(CRC32C.checksum(Array(input.utf8)) == expected)
    }

    @Test("32 zero bytes and 32 0xFF bytes (RFC 3720 vectors)")
    func iscsiVectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    }

    @Test("incremental update equals one-shot checksum at every split")
    func incremental() {
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let whole = CRC32C.checksum(bytes)
        for split in [0, 1, 7, 8, 9, 63, 64, 150, 299, 300] {
            #expect(CRC32C.update(CRC32C.checksum(bytes[..<split]), bytes[split...]) == whole)
        }
        // A non-contiguous collection takes the same path.
        #expect(CRC32C.checksum(bytes.lazy.map { $0 }) == whole)
    }
}
