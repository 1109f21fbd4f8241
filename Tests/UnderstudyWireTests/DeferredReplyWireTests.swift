import Testing
import UnderstudyWire

@Suite("Deferred replies on the wire")
struct DeferredReplyWireTests {
    static func roundTrip(_ m: WireMessage) throws -> WireMessage? {
        var out = ByteWriter()
        FrameCodec.encode(m, into: &out)
        var decoder = FrameDecoder()
        decoder.append(out.bytes)
        return try decoder.next()
    }

    static func bytes(_ m: WireMessage) -> [UInt8] {
        var out = ByteWriter()
        FrameCodec.encode(m, into: &out)
        return out.bytes
    }

    @Test("a pending result and one with deferred replies round-trip; a plain result's bytes are unchanged")
    func appliedRoundTrip() throws {
        let pending = ApplyResult(sequence: 7, response: [], touched: [[1]], written: [], pending: true)
        #expect(try Self.roundTrip(.applied(pending)) == .applied(pending))
        let waking = ApplyResult(
            sequence: 9, response: Array(":1\r\n".utf8), touched: [[1]], written: [[1]],
            deferredReplies: [DeferredReply(sequence: 7, response: Array("*-1\r\n".utf8)), DeferredReply(sequence: 8, response: [])])
        #expect(try Self.roundTrip(.applied(waking)) == .applied(waking))
        // Without the new fields, the frame is byte for byte what it was: the fields are an optional tail.
        var plain = waking
        plain.deferredReplies = []
        let plainBytes = Self.bytes(.applied(plain))
        let tailBytes = Self.bytes(.applied(waking))
        #expect(Array(tailBytes.dropFirst(4).prefix(plainBytes.count - 4)) == Array(plainBytes.dropFirst(4)))
        #expect(try Self.roundTrip(.applied(plain)) == .applied(plain))
    }

    @Test("a greeting declaring blocking commands round-trips, alone and after the other sections")
    func helloRoundTrip() throws {
        var h = Hello(service: "kv", version: "1", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false,
                      pid: 1, comparisonRules: ["KEYS": .orderInsensitive], blockingCommands: ["BLPOP", "BZPOPMIN"])
        #expect(try Self.roundTrip(.hello(h)) == .hello(h))
        h.commands = CommandTable(["blpop": -3, "get": 2])
        #expect(try Self.roundTrip(.hello(h)) == .hello(h))
        h.http = HTTPServiceDeclaration(requestHeaders: [], routes: [])
        #expect(try Self.roundTrip(.hello(h)) == .hello(h))
        var plain = h
        plain.http = nil
        plain.commands = nil
        plain.blockingCommands = []
        let withBlocking = Self.bytes(.hello(Hello(
            service: "kv", version: "1", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false, pid: 1,
            comparisonRules: ["KEYS": .orderInsensitive], blockingCommands: ["BLPOP"])))
        let without = Self.bytes(.hello(plain))
        #expect(Array(withBlocking.dropFirst(4).prefix(without.count - 4)) == Array(without.dropFirst(4)))
    }

    @Test("a bad pending flag is a malformed frame")
    func badFlag() {
        var bytes = Self.bytes(.applied(ApplyResult(sequence: 1, response: [], touched: [], written: [], pending: true)))
        // The flag is the byte after sequence (8), an empty response (1) and two empty lists (2): offset 4 + 1 + 11.
        bytes[4 + 1 + 11] = 2
        var decoder = FrameDecoder()
        decoder.append(bytes)
        #expect(throws: FrameError.self) { try decoder.next() }
    }
}
