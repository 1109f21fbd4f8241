import NIOCore
import NIOEmbedded
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

/// MULTI queueing against the service's declared command table. The harness's
/// pipeline has no worker: what reaches it is held (``RequestPipeline/heldCount``), unanswered.
@Suite("RESP transactions: queue-time errors and WATCH")
struct RESPTransactionTests {
    static let table = CommandTable([
        "get": 2, "set": -3, "ping": -1, "incr": 2, "select": 2, "client": -2,
    ])
    static let execAbort = "-EXECABORT Transaction discarded because of previous errors.\r\n"

    @Test("a command the service does not know, or with the wrong arity, is refused while queueing; EXEC aborts")
    func queueTimeErrors() throws {
        let h = try ConnectionHarness(commandTable: Self.table)
        defer { try? h.close() }
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("SET", "k", "v")) == "+QUEUED\r\n")
        #expect(try h.send(resp("FOO", "a", "b")) == "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n")
        #expect(try h.send(resp("GET")) == "-ERR wrong number of arguments for 'get' command\r\n")
        #expect(try h.send(resp("GeT", "k", "x")) == "-ERR wrong number of arguments for 'get' command\r\n")
        // As in redis-server, later commands are still acknowledged, and SELECT and CLIENT are checked too.
        #expect(try h.send(resp("GET", "k")) == "+QUEUED\r\n")
        #expect(try h.send(resp("SELECT")) == "-ERR wrong number of arguments for 'select' command\r\n")
        #expect(try h.send(resp("EXEC")) == Self.execAbort)
        #expect(h.pipeline.heldCount == 0, "nothing of an aborted transaction is journaled")

        // Runtime errors stay per command: a queued command with the right arity goes to the service.
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("INCR", "not-a-number")) == "+QUEUED\r\n")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(h.pipeline.heldCount == 1)
        // Outside MULTI an unknown command goes to the service as before, which answers it.
        #expect(try h.send(resp("FOO")) == "")
        #expect(h.pipeline.heldCount == 2)
    }

    @Test("a MULTI queue over the input limit aborts with EXECABORT, with or without a table")
    func oversizeQueue() throws {
        let value = String(repeating: "v", count: 30)
        let one = CommandCodec.encodedSize(["SET", "k", value].map { Array($0.utf8) })
        let limit = CommandCodec.encodedTransactionSize(commandCount: 1, commandBytes: one) + 10
        for table in [Self.table, nil] {
            let h = try ConnectionHarness(limits: RESPLimits(maximumInputBytes: limit), commandTable: table)
            defer { try? h.close() }
            #expect(try h.send(resp("MULTI")) == "+OK\r\n")
            #expect(try h.send(resp("SET", "k", value)) == "+QUEUED\r\n")
            #expect(try h.send(resp("SET", "k", value)) == "-ERR MULTI queue exceeds \(limit) bytes; transaction discarded\r\n")
            #expect(try h.send(resp("GET", "k")) == "+QUEUED\r\n")
            #expect(try h.send(resp("EXEC")) == Self.execAbort)
            #expect(h.pipeline.heldCount == 0)
        }
    }

    @Test("without a declared table every command is queued, as before")
    func oldService() throws {
        let h = try ConnectionHarness()
        defer { try? h.close() }
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("FOO", "a")) == "+QUEUED\r\n")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(h.pipeline.heldCount == 1)
    }
}
