import Testing
import UnderstudyWire

@Suite("Frame round trips")
struct FrameRoundTripTests {
    @Test("every message round-trips through encode and the decoder", arguments: WireFixtures.all + WireFixtures.minimal + WireFixtures.errorCodes)
    func roundTrip(_ message: WireMessage) throws {
        let frame = FrameCodec.encode(message)
        let length = Int(frame[0]) | Int(frame[1]) << 8 | Int(frame[2]) << 16 | Int(frame[3]) << 24
        #expect(length == frame.count - FrameCodec.lengthPrefixSize)
        #expect(frame[4] == message.frameType)

        var decoder = FrameDecoder()
        decoder.append(frame)
        #expect(try decoder.next() == message)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedByteCount == 0)
        try decoder.finish()

        // The body alone decodes through FrameCodec.decode, also from the middle of a larger buffer.
        #expect(try FrameCodec.decode(type: message.frameType, body: body(of: message)) == message)
        let padded = [0xEE, 0xEE] + frame + [0xEE]
        #expect(try FrameCodec.decode(type: message.frameType, body: padded, from: 7, to: padded.count - 1) == message)
    }

    @Test("every message round-trips when fed one byte at a time", arguments: WireFixtures.all + WireFixtures.minimal)
    func byteAtATime(_ message: WireMessage) throws {
        let frame = FrameCodec.encode(message)
        var decoder = FrameDecoder()
        for (i, byte) in frame.enumerated() {
            decoder.append(CollectionOfOne(byte))
            let got = try decoder.next()
            if i < frame.count - 1 {
                #expect(got == nil, "decoded early after \(i + 1) of \(frame.count) bytes")
                #expect(throws: FrameError.self) { try decoder.finish() }
            } else {
                #expect(got == message)
            }
        }
        try decoder.finish()
    }

    @Test("the fixtures cover every frame type")
    func fixturesCoverEveryType() {
        let types = Set(WireFixtures.all.map(\.frameType))
        #expect(types == Set(1...28))
        #expect(WireFixtures.all.count == 28)
    }

    @Test("a stream of many frames decodes in order whatever the read sizes")
    func streamInRandomChunks() throws {
        let messages = Array(repeating: WireFixtures.all + WireFixtures.minimal, count: 20).flatMap { $0 }
        var w = ByteWriter()
        for m in messages { FrameCodec.encode(m, into: &w) }
        let stream = w.bytes
        #expect(stream.count > 1 << 17)  // long enough for the decoder to compact its buffer

        var rng = TestRandom(seed: 11)
        var decoder = FrameDecoder()
        var decoded: [WireMessage] = []
        var offset = 0
        while offset < stream.count {
            let n = min(stream.count - offset, Int.random(in: 1...3000, using: &rng))
            stream.withUnsafeBytes { raw in
                decoder.append(buffer: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)]))
            }
            offset += n
            while let m = try decoder.next() { decoded.append(m) }
        }
        try decoder.finish()
        #expect(decoded.count == messages.count)
        #expect(decoded == messages)
    }

    @Test("a frame exactly at the maximum size is accepted")
    func exactlyMaximum() throws {
        // prefetch body: varint count 1, varint length 2 bytes (0x..), payload.
        let maximum = 1024
        let payloadSize = maximum - 1 - 1 - 2
        let message = WireMessage.prefetch(keys: [Array(repeating: 3, count: payloadSize)])
        let frame = FrameCodec.encode(message)
        #expect(frame.count == maximum + FrameCodec.lengthPrefixSize)
        var decoder = FrameDecoder(maximumFrameSize: maximum)
        decoder.append(frame)
        #expect(try decoder.next() == message)
    }
}

/// A hand-made bad frame and the error it must produce.
struct BadFrame: Sendable, CustomTestStringConvertible {
    enum Expected: Sendable { case malformed(type: UInt8), unknown(UInt8) }
    var name: String
    var frame: [UInt8]
    var expected: Expected
    var testDescription: String { name }

    func matches(_ error: FrameError) -> Bool {
        switch (expected, error) {
        case let (.malformed(t), .malformed(type, reason)): return t == type && !reason.isEmpty
        case let (.unknown(t), .unknownFrameType(type)): return t == type
        default: return false
        }
    }

    static func withByte(_ message: WireMessage, at index: Int, set value: UInt8, name: String) -> BadFrame {
        var b = body(of: message)
        b[index] = value
        return BadFrame(name: name, frame: rawFrame(type: message.frameType, body: b), expected: .malformed(type: message.frameType))
    }

    static func cut(_ message: WireMessage, dropLast n: Int, name: String) -> BadFrame {
        BadFrame(
            name: name, frame: rawFrame(type: message.frameType, body: Array(body(of: message).dropLast(n))),
            expected: .malformed(type: message.frameType))
    }

    static let all: [BadFrame] = [
        BadFrame(name: "ping with a 4-byte nonce", frame: rawFrame(type: 18, body: [1, 2, 3, 4]), expected: .malformed(type: 18)),
        BadFrame(name: "pong without its sequence", frame: rawFrame(type: 19, body: Array(repeating: 1, count: 8)), expected: .malformed(type: 19)),
        BadFrame(name: "ping with trailing bytes", frame: rawFrame(type: 18, body: Array(repeating: 1, count: 9)), expected: .malformed(type: 18)),
        BadFrame(name: "shutdown with a body", frame: rawFrame(type: 20, body: [0]), expected: .malformed(type: 20)),
        BadFrame(name: "digest request with a body", frame: rawFrame(type: 8, body: [1, 2]), expected: .malformed(type: 8)),
        cut(WireFixtures.request.asApply, dropLast: 1, name: "apply with its payload cut short"),
        cut(WireFixtures.all[3], dropLast: 1, name: "applied with its written list cut short"),
        cut(WireFixtures.all[0], dropLast: 1, name: "hello with its last rule cut short"),
        cut(WireFixtures.all[5], dropLast: 3, name: "snapshot chunk without its whole checksum"),
        cut(WireFixtures.all[27], dropLast: 1, name: "validation report cut short"),
        withByte(
            .snapshotChunk(SnapshotChunk(streamID: 1, sequence: 2, schemaVersion: 3, data: [], isFinal: true, checksum: 4)),
            at: 17, set: 2, name: "snapshot chunk with isFinal = 2"),
        withByte(
            .hello(Hello(service: "", version: "", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false, pid: 1, comparisonRules: [:])),
            at: 10, set: 0xFF, name: "hello with canDowngrade = 255"),
        withByte(
            .patch(entries: [KeyValue(key: MapKey(map: "m", key: [1]), value: nil)]),
            at: 5, set: 9, name: "patch with presence byte 9"),
        withByte(
            .fetchResult(entries: [KeyValue(key: MapKey(map: "m", key: [1]), value: nil)]),
            at: 5, set: 2, name: "fetch result with presence byte 2"),
        withByte(
            .hello(Hello(service: "s", version: "v", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false, pid: 1, comparisonRules: ["A": .exact])),
            at: 22, set: 3, name: "hello with comparison rule 3"),
        BadFrame(name: "error message not UTF-8", frame: rawFrame(type: 21, body: [1, 0, 2, 0xC3, 0x28]), expected: .malformed(type: 21)),
        BadFrame(name: "varint longer than ten bytes", frame: rawFrame(type: 17, body: Array(repeating: 0xFF, count: 11) + [0]), expected: .malformed(type: 17)),
        BadFrame(name: "list count beyond the body", frame: rawFrame(type: 17, body: [5]), expected: .malformed(type: 17)),
        BadFrame(name: "byte string longer than the body", frame: rawFrame(type: 24, body: [1, 0, 0, 0, 100, 1, 2]), expected: .malformed(type: 24)),
        BadFrame(name: "huge byte-string length", frame: rawFrame(type: 24, body: [1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]), expected: .malformed(type: 24)),
        BadFrame(
            name: "digest announcing more buckets than it carries",
            frame: rawFrame(type: 10, body: Array(repeating: 0, count: 16) + [3] + Array(repeating: 1, count: 8)),
            expected: .malformed(type: 10)),
        BadFrame(name: "empty body for a fork ack", frame: rawFrame(type: 26, body: []), expected: .malformed(type: 26)),
        BadFrame(name: "unknown type 0", frame: rawFrame(type: 0, body: [1, 2, 3]), expected: .unknown(0)),
        BadFrame(name: "unknown type 29", frame: rawFrame(type: 29, body: []), expected: .unknown(29)),
        BadFrame(name: "unknown type 200", frame: rawFrame(type: 200, body: Array(repeating: 0, count: 40)), expected: .unknown(200)),
        BadFrame(name: "unknown type 255", frame: rawFrame(type: 255, body: [0xFF]), expected: .unknown(255)),
    ]
}

extension ApplyRequest {
    var asApply: WireMessage { .apply(self) }
}

@Suite("Bad frames")
struct BadFrameTests {
    static let ping = WireMessage.ping(nonce: 0x5EED)

    @Test("a bad frame is a typed error and the decoder continues with the next frame", arguments: BadFrame.all)
    func badFrameThenGoodFrame(_ bad: BadFrame) throws {
        var decoder = FrameDecoder()
        decoder.append(bad.frame + FrameCodec.encode(Self.ping))
        do {
            let m = try decoder.next()
            Issue.record("expected an error, decoded \(String(describing: m))")
        } catch {
            #expect(bad.matches(error), "got \(error)")
            #expect(!error.description.isEmpty)
        }
        #expect(try decoder.next() == Self.ping)
        #expect(try decoder.next() == nil)
        try decoder.finish()
    }

    @Test("a bad frame fed one byte at a time fails exactly once", arguments: BadFrame.all)
    func badFrameByteAtATime(_ bad: BadFrame) throws {
        var decoder = FrameDecoder()
        var errors: [FrameError] = []
        var messages: [WireMessage] = []
        for byte in bad.frame + FrameCodec.encode(Self.ping) {
            decoder.append([byte])
            do {
                if let m = try decoder.next() { messages.append(m) }
            } catch {
                errors.append(error)
            }
        }
        #expect(errors.count == 1)
        #expect(errors.allSatisfy(bad.matches))
        #expect(messages == [Self.ping])
    }

    @Test("the body decoder reports the same errors")
    func bodyDecoderReportsErrors() {
        #expect(throws: FrameError.unknownFrameType(99)) { try FrameCodec.decode(type: 99, body: []) }
        #expect(throws: FrameError.self) { try FrameCodec.decode(type: 18, body: [1]) }
    }

    @Test("a zero-length frame is malformed and skipped")
    func zeroLength() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 0] + FrameCodec.encode(Self.ping))
        #expect {
            try decoder.next()
        } throws: { error in
            guard case .malformed(type: 0, _) = error as? FrameError else { return false }
            return true
        }
        #expect(try decoder.next() == Self.ping)
    }

    @Test("an oversized length prefix is reported as soon as the prefix arrives")
    func oversized() throws {
        var decoder = FrameDecoder(maximumFrameSize: 1024)
        decoder.append([0x01, 0x04, 0x00])  // 1025, three bytes so far
        #expect(try decoder.next() == nil)
        decoder.append([0x00])
        #expect(throws: FrameError.frameTooLarge(length: 1025, maximum: 1024)) { try decoder.next() }
        // The stream cannot be resynchronised: the error repeats rather than guessing.
        #expect(throws: FrameError.frameTooLarge(length: 1025, maximum: 1024)) { try decoder.next() }

        var big = FrameDecoder()
        big.append([0xFF, 0xFF, 0xFF, 0xFF, 18])
        #expect(throws: FrameError.frameTooLarge(length: 0xFFFF_FFFF, maximum: FrameCodec.defaultMaximumFrameSize)) {
            try big.next()
        }
        #expect(FrameError.frameTooLarge(length: 1, maximum: 0).wireCode == .frameTooLarge)
    }

    @Test("finish reports a truncated frame")
    func finishReportsTruncation() throws {
        let frame = FrameCodec.encode(Self.ping)  // 4 + 1 + 8 bytes

        let empty = FrameDecoder()
        try empty.finish()

        var partialPrefix = FrameDecoder()
        partialPrefix.append(frame.prefix(1))
        #expect(try partialPrefix.next() == nil)
        #expect(throws: FrameError.truncated(missing: 3)) { try partialPrefix.finish() }

        var partialBody = FrameDecoder()
        partialBody.append(frame.dropLast(3))
        #expect(try partialBody.next() == nil)
        #expect(throws: FrameError.truncated(missing: 3)) { try partialBody.finish() }
        #expect(FrameError.truncated(missing: 3).wireCode == .malformedFrame)

        var complete = FrameDecoder()
        complete.append(frame + frame.prefix(6))
        #expect(try complete.next() == Self.ping)
        #expect(try complete.next() == nil)
        #expect(throws: FrameError.truncated(missing: 7)) { try complete.finish() }
    }

    @Test("error codes map to wire codes")
    func wireCodes() {
        #expect(FrameError.unknownFrameType(1).wireCode == .unknownFrameType)
        #expect(FrameError.malformed(type: 1, reason: "x").wireCode == .malformedFrame)
        #expect(FrameError.truncated(missing: 1).description.contains("1 bytes missing"))
    }

    @Test("random and mutated frames never crash the decoder")
    func fuzz() throws {
        var rng = TestRandom(seed: 0xF00D)
        let valid = (WireFixtures.all + WireFixtures.minimal).map { FrameCodec.encode($0) }
        var decodedCount = 0
        var errorCount = 0
        for round in 0..<4000 {
            var frame: [UInt8]
            switch round % 4 {
            case 0:  // random type and body
                let type = UInt8.random(in: 0...30, using: &rng)
                frame = rawFrame(type: type, body: (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
            case 1:  // a valid frame with one body byte changed
                frame = valid.randomElement(using: &rng)!
                let type = frame[4]
                var b = Array(frame.dropFirst(5))
                if !b.isEmpty { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
                frame = rawFrame(type: type, body: b)
            case 2:  // a valid frame with its body cut short
                frame = valid.randomElement(using: &rng)!
                frame = rawFrame(type: frame[4], body: Array(frame.dropFirst(5).dropLast(Int.random(in: 1...4, using: &rng))))
            default:  // a valid frame with bytes appended
                frame = valid.randomElement(using: &rng)!
                frame = rawFrame(type: frame[4], body: Array(frame.dropFirst(5)) + [UInt8.random(in: 0...255, using: &rng)])
            }
            var decoder = FrameDecoder()
            decoder.append(frame + FrameCodec.encode(.ping(nonce: UInt64(round))))
            do {
                if let m = try decoder.next() {
                    decodedCount += 1
                    // Whatever decodes must re-encode to something that decodes to the same message.
                    var again = FrameDecoder()
                    again.append(FrameCodec.encode(m))
                    #expect(try again.next() == m)
                }
            } catch {
                errorCount += 1
                #expect(error.wireCode != .frameTooLarge)
            }
            #expect(try decoder.next() == .ping(nonce: UInt64(round)))
        }
        #expect(errorCount > 1000)
        #expect(decodedCount > 100)
    }
}
