import Testing
import UnderstudyWire

@Suite("StableHasher")
struct StableHasherTests {
    /// Pinned values: digests, checksums and bucket assignments are compared across processes and
    /// versions, so a change to the hash function must be deliberate. If one of these fails, the
    /// hash changed: every stored snapshot checksum and every mixed-version digest comparison breaks.
    @Test("fixed inputs give fixed, known values")
    func pinnedValues() {
        #expect(StableHasher.hash([]) == 10_113_505_425_183_806_031)
        #expect(StableHasher.hash(Array("understudy".utf8)) == 2_468_075_726_231_631_879)
        #expect(StableHasher.hash(Array(0..<32)) == 12_452_810_389_852_487_303)
        #expect(StableHasher.hash([1, 2, 3], seed: 7) == 6_519_502_144_860_214_907)
        var h = StableHasher()
        h.combine(UInt64(42))
        h.combine(Array("key".utf8))
        #expect(h.finalize() == 17_620_213_998_492_584_053)
        #expect(StableHasher().finalize() == 17_665_956_581_633_026_203)
    }

    @Test("equal across calls and instances")
    func deterministic() {
        var rng = TestRandom(seed: 3)
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let first = StableHasher.hash(bytes)
            #expect(StableHasher.hash(bytes) == first)
            #expect(StableHasher.hash(Array(bytes)) == first)
            var a = StableHasher()
            bytes.withUnsafeBytes { a.combine(buffer: $0) }
            a.combine(UInt64(bytes.count))
            #expect(a.finalize() == first)
        }
    }

    @Test("combining a sequence equals combining the same bytes as a buffer")
    func sequenceEqualsBuffer() {
        var rng = TestRandom(seed: 4)
        for length in 0...70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var bySequence = StableHasher(seed: 99)
            bySequence.combine(bytes.lazy.map { $0 })
            var byBuffer = StableHasher(seed: 99)
            bytes.withUnsafeBytes { byBuffer.combine(buffer: $0) }
            #expect(bySequence.finalize() == byBuffer.finalize(), "length \(length)")
        }
    }

    @Test("length, content and seed all change the value")
    func sensitivity() {
        #expect(StableHasher.hash([0]) != StableHasher.hash([0, 0]))
        #expect(StableHasher.hash([]) != StableHasher.hash([0]))
        #expect(StableHasher.hash([1, 2, 3]) != StableHasher.hash([3, 2, 1]))
        #expect(StableHasher.hash([1, 2, 3], seed: 1) != StableHasher.hash([1, 2, 3], seed: 2))
        // Many distinct short inputs give distinct values.
        var seen = Set<UInt64>()
        for i in 0..<20_000 {
            seen.insert(StableHasher.hash(Array("key-\(i)".utf8)))
        }
        #expect(seen.count == 20_000)
    }
}
