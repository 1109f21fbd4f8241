import NIOCore
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("Blocking commands at the front-end")
struct BlockingFrontendTests {
    @Test("behind a command that may block nothing more is submitted, a local command's reply included")
    func heldBehindBlockingCommand() throws {
        let harness = try ConnectionHarness()
        defer { try? harness.close() }
        harness.pipeline.learnBlockingCommands(["BLPOP", "BZPOPMIN"])
        // No worker: a submitted input is held by the pipeline, so heldCount counts submissions: the connections
        // reset (before this process's first connection-scoped input) and the BLPOP, nothing behind it.
        #expect(try harness.send(resp("blpop", "k", "0") + resp("PING") + resp("CLIENT", "ID")) == "")
        #expect(harness.pipeline.heldCount == 2)
        // Another connection's command goes through.
        let other = try ConnectionHarness()
        defer { try? other.close() }
        other.pipeline.learnBlockingCommands(["BLPOP"])
        #expect(try other.send(resp("GET", "k") + resp("BITCOUNT", "k") + resp("CLIENT", "ID")) == "")
        #expect(other.pipeline.heldCount == 2)
    }

    @Test("without a declaration nothing is held back at the front-end")
    func undeclared() throws {
        let harness = try ConnectionHarness()
        defer { try? harness.close() }
        #expect(try harness.send(resp("BLPOP", "k", "0") + resp("PING")) == "")
        #expect(harness.pipeline.heldCount == 2)
    }

    @Test("an applied input nobody waits for stays in the log while it carries deferred replies not yet released")
    func settledEntries() {
        var tick = InputLog.Entry(
            request: ApplyRequest(sequence: 7, time: 0, seed: 0, tag: InputTag.tick, payload: []), sink: nil, enqueuedAt: .now())
        #expect(!tick.isSettled, "not applied yet")
        tick.response = []
        #expect(tick.isSettled)
        tick.deferred = [DeferredReply(sequence: 3, response: Array("*-1\r\n".utf8))]
        #expect(!tick.isSettled, "its timed-out reply leaves only when it is released")
        tick.released = true
        #expect(tick.isSettled)
    }

    @Test("the set of blocking commands matches any case and nothing else")
    func commandSet() {
        var set = BlockingCommandSet()
        #expect(set.isEmpty && !set.contains(Array("BLPOP".utf8)))
        set.learn(["BLPOP", "bzmpop"])
        #expect(set.contains(Array("blpop".utf8)) && set.contains(Array("BlPoP".utf8)) && set.contains(Array("BZMPOP".utf8)))
        #expect(!set.contains(Array("BLPOPX".utf8)) && !set.contains(Array("BITCOUNT".utf8)) && !set.contains([]))
    }
}
