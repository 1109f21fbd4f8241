import Testing
import UnderstudyWire

@testable import UnderstudyKit

@Suite("Reply limits")
struct ReplyLimitTests {
    @Test("a reply too large for a frame becomes an error reply; one that fits is untouched; the stand-in fits")
    func oversizedReply() {
        let limit = ServiceEngine<LedgerService>.maximumReplyBytes
        #expect(limit < UnderstudyLimits.maxFrameBytes)
        let fits = [UInt8](repeating: 0x61, count: 16)
        #expect(ServiceEngine<LedgerService>.boundedReply(fits) == fits)
        // Zero pages: the kernel maps them lazily, so this costs no real gigabyte.
        let huge = [UInt8](repeating: 0, count: limit + 1)
        let replaced = ServiceEngine<LedgerService>.boundedReply(huge)
        #expect(String(decoding: replaced, as: UTF8.self).hasPrefix("-ERR reply of \(limit + 1) bytes exceeds the maximum"))
        let result = ApplyResult(sequence: 9, response: huge, touched: [Array("k".utf8)], written: [])
        let bounded = ServiceEngine<LedgerService>.bounded(result)
        #expect(bounded.sequence == 9)
        #expect(bounded.response == replaced)
        #expect(bounded.touched == [Array("k".utf8)])
    }

    @Test("deferred replies too large for a frame together become error replies, largest first; the reply stays")
    func oversizedDeferredReplies() {
        let limit = ServiceEngine<LedgerService>.maximumReplyBytes
        // Zero pages, as above: two halves that do not fit together.
        let half = [UInt8](repeating: 0, count: limit / 2 + 16)
        let larger = [UInt8](repeating: 0, count: limit / 2 + 17)
        let result = ApplyResult(
            sequence: 9, response: Array(":1\r\n".utf8), touched: [], written: [],
            deferredReplies: [DeferredReply(sequence: 3, response: half), DeferredReply(sequence: 4, response: larger)])
        let bounded = ServiceEngine<LedgerService>.bounded(result)
        #expect(bounded.response == Array(":1\r\n".utf8))
        #expect(bounded.deferredReplies.map(\.sequence) == [3, 4])
        #expect(bounded.deferredReplies[0].response.count == half.count)
        #expect(String(decoding: bounded.deferredReplies[1].response, as: UTF8.self).hasPrefix("-ERR reply of \(larger.count) bytes"))
        // A pending result keeps an empty reply.
        var pending = result
        pending.response = []
        pending.pending = true
        #expect(ServiceEngine<LedgerService>.bounded(pending).response.isEmpty)
    }
}
