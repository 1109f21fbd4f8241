import Testing
import UnderstudyWire

/// The `apply` frame, built field by field from the documented layout (not through any encoder under test).
func expectedApplyFrame(_ r: ApplyRequest, varint: [UInt8]) -> [UInt8] {
    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    let body = le(r.sequence) + le(r.time) + le(r.seed) + [r.tag] + varint + r.payload
    return le(UInt32(1 + body.count)) + [3] + body
}

/// Decodes an `applied` body with the pointer-based decoder.
func decodeInPlace(_ body: [UInt8]) throws(FrameError) -> ApplyResult {
    let outcome = body.withUnsafeBytes { raw in Result { () throws(FrameError) in try FrameCodec.decodeAppliedBody(raw) } }
    return try outcome.get()
}

@Suite("The request path's frames")
struct RequestPathCodecTests {
    /// Payload lengths around every varint boundary that matters, with the length's varint bytes written out.
    static let payloadLengths: [(length: Int, varint: [UInt8])] = [
        (0, [0x00]), (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (16383, [0xFF, 0x7F]),
        (16384, [0x80, 0x80, 0x01]), ((1 << 20) + 3, [0x83, 0x80, 0x40]),
    ]

    static func request(payloadLength n: Int) -> ApplyRequest {
        ApplyRequest(
            sequence: 0x0102_0304_0506_0708 &+ UInt64(n), time: -1_700_000_000_123, seed: .max - UInt64(n),
            tag: InputTag.resp, payload: (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) })
    }

    @Test("the shared apply encoder writes exactly the frame FrameCodec.encode writes, and the documented layout",
          arguments: payloadLengths.indices)
    func applyEncoderMatches(_ index: Int) throws {
        let (n, varint) = Self.payloadLengths[index]
        let r = Self.request(payloadLength: n)
        var sink = ByteWriter()
        FrameCodec.encodeApply(r, into: &sink)
        #expect(sink.bytes == FrameCodec.encode(.apply(r)))
        #expect(sink.bytes == expectedApplyFrame(r, varint: varint))
        var decoder = FrameDecoder()
        decoder.append(sink.bytes)
        #expect(try decoder.next() == .apply(r))
    }

    @Test("the fixture's apply frame is byte for byte the documented one, and frames append to what a sink holds")
    func applyFixtureAndAppending() {
        let r = WireFixtures.request
        #expect(FrameCodec.encode(.apply(r)) == expectedApplyFrame(r, varint: [UInt8(r.payload.count)]))
        var sink = ByteWriter()
        sink.writeRaw([0xEE, 0xEE])
        FrameCodec.encodeApply(r, into: &sink)
        FrameCodec.encodeApply(Self.request(payloadLength: 128), into: &sink)
        #expect(sink.bytes == [0xEE, 0xEE] + FrameCodec.encode(.apply(r)) + FrameCodec.encode(.apply(Self.request(payloadLength: 128))))
        #expect(FrameCodec.applyFrameType == WireMessage.apply(r).frameType)
        #expect(FrameCodec.appliedFrameType == WireMessage.applied(ApplyResult(sequence: 0, response: [], touched: [], written: [])).frameType)
    }

    @Test("varints are written the one way, at every length")
    func varintWriting() throws {
        for (value, bytes): (UInt64, [UInt8]) in [
            (0, [0]), (0x7F, [0x7F]), (0x80, [0x80, 0x01]), (300, [0xAC, 0x02]),
            (UInt64(UInt32.max), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            (.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        ] {
            var w = ByteWriter()
            w.appendVarint(value)
            #expect(w.bytes == bytes)
            var old = ByteWriter()
            old.writeVarint(value)
            #expect(old.bytes == bytes)
            var r = ByteReader(bytes)
            #expect(try r.readVarint() == value)
            #expect(r.isAtEnd)
        }
    }

    /// An `applied` result with a short name for the test log.
    struct Case: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var result: ApplyResult
    }

    static let cases: [Case] = [
        Case(testDescription: "empty", result: ApplyResult(sequence: 0, response: [], touched: [], written: [])),
        Case(
            testDescription: "keys, one of them empty",
            result: ApplyResult(sequence: 42, response: Array(":5\r\n".utf8), touched: [[1, 2], [], [3]], written: [[1, 2]])),
        Case(
            testDescription: "pending",
            result: ApplyResult(sequence: 7, response: [], touched: [[1]], written: [], pending: true)),
        Case(
            testDescription: "deferred replies, one of them empty",
            result: ApplyResult(
                sequence: 9, response: Array(":1\r\n".utf8), touched: [[1]], written: [[1]],
                deferredReplies: [
                    DeferredReply(sequence: 7, response: Array("*-1\r\n".utf8)), DeferredReply(sequence: 8, response: []),
                ])),
        Case(
            testDescription: "large: 70 kB reply, 500 keys, 130 deferred replies",
            result: ApplyResult(
                sequence: .max, response: Array(repeating: 0x61, count: 70_000),
                touched: (0..<300).map { Array(repeating: UInt8(truncatingIfNeeded: $0), count: $0) },
                written: (0..<200).map { [UInt8(truncatingIfNeeded: $0)] }, pending: true,
                deferredReplies: (0..<130).map {
                    DeferredReply(sequence: UInt64($0), response: Array(repeating: 0x62, count: $0 * 3))
                })),
    ]
    static let results = cases.map(\.result)

    @Test("applied bodies round-trip through the in-place decoder, deferred tail included", arguments: cases)
    func appliedRoundTrip(_ c: Case) throws {
        let result = c.result
        let b = body(of: .applied(result))
        #expect(try decodeInPlace(b) == result)
        #expect(try FrameCodec.decode(type: 4, body: b) == .applied(result))
        // From the middle of a larger buffer, as the supervisor reads it.
        let padded = [0xEE, 0xEE, 0xEE] + b + [0xEE]
        let decoded = padded.withUnsafeBytes { raw in
            Result { () throws(FrameError) in
                try FrameCodec.decodeAppliedBody(UnsafeRawBufferPointer(rebasing: raw[3..<(3 + b.count)]))
            }
        }
        #expect(try decoded.get() == result)
    }

    /// Asserts that both decoders refuse a body as a malformed `applied` body.
    static func expectMalformed(_ b: [UInt8], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let inPlace = Result { () throws(FrameError) in try decodeInPlace(b) }.map(WireMessage.applied)
        let viaCodec = Result { () throws(FrameError) in try FrameCodec.decode(type: 4, body: b) }
        for outcome in [inPlace, viaCodec] {
            switch outcome {
            case .success(let m): Issue.record("\(what): decoded \(m)", sourceLocation: sourceLocation)
            case .failure(.malformed(type: 4, let reason)) where !reason.isEmpty: break
            case .failure(let e): Issue.record("\(what): \(e)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("every cut of an applied body is malformed, except the one that ends before the optional tail")
    func truncatedBodies() throws {
        let full = Self.results[3]
        let b = body(of: .applied(full))
        var plain = full
        plain.deferredReplies = []
        let tailStart = body(of: .applied(plain)).count
        for cut in 0..<b.count {
            let prefix = Array(b.prefix(cut))
            if cut == tailStart {
                #expect(try decodeInPlace(prefix) == plain)
            } else {
                Self.expectMalformed(prefix, "cut at \(cut) of \(b.count)")
            }
        }
    }

    @Test("bad applied bodies are malformed frames, never a trap")
    func badBodies() {
        let seq: [UInt8] = Array(repeating: 1, count: 8)
        let good = body(of: .applied(Self.results[3]))
        Self.expectMalformed([], "empty")
        Self.expectMalformed(Array(repeating: 0xFF, count: 40), "all 0xFF")
        Self.expectMalformed(seq + Array(repeating: 0xFF, count: 10) + [0x01, 0, 0], "response length varint of 11 bytes")
        Self.expectMalformed(seq + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0, 0], "response length 2^64 - 1")
        Self.expectMalformed(seq + [100, 1, 2, 3], "response longer than the body")
        Self.expectMalformed(seq + [0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0], "touched count beyond the body")
        Self.expectMalformed(seq + [0, 1, 5, 9, 0], "a touched key longer than the body")
        Self.expectMalformed(seq + [0, 0, 3], "written count beyond the body")
        Self.expectMalformed(seq + [0, 0, 0, 2, 0], "pending flag 2")
        Self.expectMalformed(seq + [0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], "deferred count 2^64 - 1")
        Self.expectMalformed(seq + [0, 0, 0, 0, 1] + seq + [5, 1], "deferred reply longer than the body")
        Self.expectMalformed(good + [0], "a byte after the tail")
        Self.expectMalformed(seq + [0, 0, 0, 1], "a pending flag with no count")
    }

    @Test("a worker's key lists are kept to their first 65 536 keys; the rest are checked and skipped")
    func keyListsBounded() throws {
        let keep = UnderstudyLimits.maxReportedKeys
        let touched = (0..<(keep + 1000)).map { i in [UInt8(truncatingIfNeeded: i), UInt8(truncatingIfNeeded: i >> 8)] }
        let written = (0..<3).map { [UInt8($0)] }
        let full = ApplyResult(sequence: 7, response: Array("+OK\r\n".utf8), touched: touched, written: written)
        let b = body(of: .applied(full))
        guard case .applied(let viaCodec) = try FrameCodec.decode(type: 4, body: b) else {
            Issue.record("not an applied message")
            return
        }
        for decoded in [try decodeInPlace(b), viaCodec] as [ApplyResult?] {
            #expect(decoded?.touched.count == keep)
            #expect(decoded?.touched == Array(touched.prefix(keep)), "the first keys, in order")
            #expect(decoded?.written == written, "the list after a cut one is read from the right place")
            #expect(decoded?.response == full.response && decoded?.sequence == 7)
        }
        // The worst case for memory: two million empty keys (one byte each on the wire) become 65 536 arrays.
        let seq: [UInt8] = Array(repeating: 1, count: 8)
        var empties = seq + [0]
        var count = ByteWriter()
        count.writeVarint(2_000_000)
        empties += count.bytes + Array(repeating: 0, count: 2_000_000) + [0]
        #expect(try decodeInPlace(empties).touched.count == keep)
        // A skipped key still has to fit the body.
        var cut = seq + [0]
        var n = ByteWriter()
        n.writeVarint(UInt64(keep + 2))
        cut += n.bytes + Array(repeating: 0, count: keep + 1) + [9, 1, 2]
        Self.expectMalformed(cut, "a skipped key longer than the body")
    }

    @Test("random and mutated applied bodies never trap, and both decoders agree on them")
    func fuzz() {
        var rng = TestRandom(seed: 0xA991)
        let valid = Self.results.prefix(4).map { body(of: .applied($0)) }
        var decoded = 0
        var refused = 0
        for round in 0..<5000 {
            var b: [UInt8]
            switch round % 3 {
            case 0: b = (0..<Int.random(in: 0...48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                b = valid.randomElement(using: &rng)!
                if !b.isEmpty { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            default:
                b = valid.randomElement(using: &rng)!
                b.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...b.count, using: &rng))
            }
            let inPlace = Result { () throws(FrameError) in try decodeInPlace(b) }
            let viaCodec = Result { () throws(FrameError) in try FrameCodec.decode(type: 4, body: b) }
            switch (inPlace, viaCodec) {
            case (.success(let r), .success(let m)):
                decoded += 1
                #expect(m == .applied(r))
            case (.failure(let e), .failure(let f)):
                refused += 1
                #expect(e == f)
                guard case .malformed(type: 4, _) = e else {
                    Issue.record("unexpected error \(e)")
                    continue
                }
            default:
                Issue.record("the decoders disagree on \(b): \(inPlace) and \(viaCodec)")
            }
        }
        #expect(decoded > 100)
        #expect(refused > 1000)
    }

    @Test("the pointer-based reader checks bounds on every read and never reads past its end")
    func unsafeReaderBounds() throws {
        let bytes: [UInt8] = [0x2A, 0x01, 0x80, 0x01, 0x02, 0xAA, 0xBB, 0x00]
        try bytes.withUnsafeBytes { raw throws in
            var r = UnsafeByteReader(raw, from: 1, to: 7)
            #expect(r.remaining == 6)
            #expect(try r.readBool() == true)
            #expect(try r.readVarint() == 128)
            #expect(try r.readBytes() == [0xAA, 0xBB])
            #expect(r.isAtEnd && r.offset == 7)
            #expect(throws: DecodingError.self) { try r.readByte() }
            #expect(throws: DecodingError.self) { try r.read(UInt16.self) }
            #expect(throws: DecodingError.self) { try r.readRaw(1) }
            #expect(throws: DecodingError.self) { try r.readRaw(-1) }
            #expect(try r.readRaw(0) == [])
            #expect(r.offset == 7, "a failed read consumes nothing past the end")
            var wide = UnsafeByteReader(raw)
            #expect(try wide.read(UInt64.self) == 0x00BB_AA02_0180_012A)
            #expect(throws: DecodingError.self) { try wide.readByte() }
            var short = UnsafeByteReader(raw, from: 2, to: 3)
            #expect(throws: DecodingError.self) { try short.readVarint() }
        }
    }
}
