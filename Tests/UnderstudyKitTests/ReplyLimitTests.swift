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
}
