import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// What has no redis-server answer to compare with: counts Redis could only answer by streaming until it runs
/// out of memory. Both versions answer at once, with a bounded reply.
@Suite("Hostile arguments without a reference")
struct BoundedReplyTests {
    static func reply<S: UnderstudyService>(_ engine: inout ServiceEngine<S>, _ parts: [String]) -> [UInt8] {
        let seq = engine.lastSequence + 1
        return engine.apply(request(seq, 1_800_000_000_000, parts)).response
    }

    @Test("repeated random picks with a huge negative count answer an error, not gigabytes",
          arguments: ["-9223372036854775807", "-4611686018427387903", "-100000000", "-3000000"])
    func hugeNegativeCounts(count: String) {
        var e = ServiceEngine(service: KVServiceV2())
        _ = Self.reply(&e, ["SADD", "st", "a", "b", "c"])
        _ = Self.reply(&e, ["HSET", "h", "f", "v", "g", "w"])
        _ = Self.reply(&e, ["ZADD", "z", "1", "a", "2.5", "b"])
        let tooLarge = "-ERR count is too large: the reply could exceed 16777216 bytes\r\n"
        func text(_ parts: [String]) -> String { String(decoding: Self.reply(&e, parts).prefix(200), as: UTF8.self) }
        #expect(text(["SRANDMEMBER", "st", count]) == tooLarge)
        #expect(text(["HRANDFIELD", "h", count]) == tooLarge)
        #expect(text(["ZRANDMEMBER", "z", count]) == tooLarge)
        if count != "-9223372036854775807" {
            #expect(text(["HRANDFIELD", "h", count, "WITHVALUES"]) == tooLarge)
            #expect(text(["ZRANDMEMBER", "z", count, "WITHSCORES"]) == tooLarge)
        }
        // Missing keys and other types answer as Redis does before the count matters.
        #expect(Self.reply(&e, ["SRANDMEMBER", "missing", count]) == bytes("*0\r\n"))
        #expect(Self.reply(&e, ["HRANDFIELD", "st", count]) == bytes("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"))
    }

    @Test("repeated random picks up to the bound are answered in full")
    func withinBound() {
        var e = ServiceEngine(service: KVServiceV1())
        _ = Self.reply(&e, ["SADD", "st", "a", "b", "c"])
        let r = RESPValue.parseAll(Self.reply(&e, ["SRANDMEMBER", "st", "-100000"]))
        guard case .array(let items?) = r else {
            Issue.record("expected an array, got \(r)")
            return
        }
        #expect(items.count == 100_000)
    }
}
