import NIOCore
import NIOEmbedded
import Testing
@testable import UnderstudyFrontend
import UnderstudyWire

@testable import UnderstudySupervisor

/// MULTI queueing against the service's declared command table, and WATCH's journaled inputs. The harness's
/// pipeline has no worker: what reaches it is held (``RequestPipeline/heldCount``), unanswered.
@Suite("RESP transactions: queue-time errors and WATCH")
struct RESPTransactionTests {
    static let table = CommandTable([
        "get": 2, "set": -3, "ping": -1, "incr": 2, "select": 2, "client": -2,
        "watch": -2, "unwatch": 1, "multi": 1, "exec": 1, "discard": 1,
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

    @Test("without a declared table every command is queued and WATCH is refused, as before")
    func oldService() throws {
        let h = try ConnectionHarness()
        defer { try? h.close() }
        #expect(try h.send(resp("WATCH", "k")) == "-ERR WATCH is not supported by this server\r\n")
        #expect(try h.send(resp("UNWATCH")) == "-ERR UNWATCH is not supported by this server\r\n")
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("WATCH", "k")) == "-ERR WATCH inside MULTI is not allowed\r\n")
        #expect(try h.send(resp("FOO", "a")) == "+QUEUED\r\n")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(h.pipeline.heldCount == 1)
    }

    @Test("WATCH, UNWATCH, DISCARD, EXEC and a disconnect of a watching connection are journaled; the rest is not")
    func watchInputs() throws {
        let h = try ConnectionHarness(commandTable: Self.table)
        defer { try? h.close() }
        // Answered here, journaling nothing: wrong arities, UNWATCH with nothing watched, WATCH inside MULTI.
        #expect(try h.send(resp("WATCH")) == "-ERR wrong number of arguments for 'watch' command\r\n")
        #expect(try h.send(resp("UNWATCH", "x")) == "-ERR wrong number of arguments for 'unwatch' command\r\n")
        #expect(try h.send(resp("UNWATCH")) == "+OK\r\n")
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("WATCH", "k")) == "-ERR WATCH inside MULTI is not allowed\r\n")
        #expect(try h.send(resp("DISCARD")) == "+OK\r\n")
        #expect(h.pipeline.heldCount == 0)

        // The first connection-scoped input of the process is preceded by the reset; later ones are not.
        #expect(try h.send(resp("WATCH", "k", "j")) == "")
        #expect(h.pipeline.heldCount == 2)
        #expect(try h.send(resp("WATCH", "m")) == "")
        #expect(h.pipeline.heldCount == 3)
        // EXEC of the watching connection (an UNWATCH queued inside is just a command).
        #expect(try h.send(resp("MULTI")) == "")
        #expect(try h.send(resp("UNWATCH")) == "")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(h.pipeline.heldCount == 4)
        // EXEC without MULTI keeps the watches (nothing journaled); DISCARD ends them.
        #expect(try h.send(resp("WATCH", "k")) == "")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(try h.send(resp("MULTI")) == "")
        #expect(try h.send(resp("DISCARD")) == "")
        #expect(h.pipeline.heldCount == 6)
        // An aborted EXEC ends them too; UNWATCH as well.
        #expect(try h.send(resp("WATCH", "k")) == "")
        #expect(try h.send(resp("MULTI")) == "")
        #expect(try h.send(resp("NOPE")) == "")
        #expect(try h.send(resp("EXEC")) == "")
        #expect(h.pipeline.heldCount == 8)
        #expect(try h.send(resp("WATCH", "k")) == "")
        #expect(try h.send(resp("UNWATCH")) == "")
        #expect(try h.send(resp("UNWATCH")) == "")
        #expect(h.pipeline.heldCount == 10)
        // A watching connection's close is journaled; an idle one's is not.
        #expect(try h.send(resp("WATCH", "k")) == "")
        #expect(h.pipeline.heldCount == 11)
        h.channel.pipeline.fireChannelInactive()
        #expect(h.pipeline.heldCount == 12)
        h.channel.pipeline.fireChannelInactive()
        #expect(h.pipeline.heldCount == 12)
    }

    @Test("while there is no primary, the last table seen still decides (WATCH is not refused meanwhile)")
    func noPrimaryForAMoment() throws {
        final class Source { var table: CommandTable? = RESPTransactionTests.table }
        let source = Source()
        let h = try ConnectionHarness(commandTables: { source.table })
        defer { try? h.close() }
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("NOPE")) == "-ERR unknown command 'NOPE', with args beginning with: \r\n")
        #expect(try h.send(resp("EXEC")) == Self.execAbort)
        source.table = nil
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("NOPE")) == "-ERR unknown command 'NOPE', with args beginning with: \r\n")
        #expect(try h.send(resp("DISCARD")) == "+OK\r\n")
        #expect(try h.send(resp("WATCH", "k")) == "")
        #expect(h.pipeline.heldCount == 2)
    }

    @Test("connections of one process share the reset: it is journaled once")
    func sharedEpoch() throws {
        let epoch = ConnectionEpoch()
        let a = try ConnectionHarness(commandTable: Self.table, connections: epoch)
        defer { try? a.close() }
        #expect(try a.send(resp("WATCH", "k")) == "")
        #expect(a.pipeline.heldCount == 2)
        // Another connection (its own pipeline here) of the same process: no second reset.
        let b = try ConnectionHarness(commandTable: Self.table, connections: epoch)
        defer { try? b.close() }
        #expect(try b.send(resp("WATCH", "k")) == "")
        #expect(b.pipeline.heldCount == 1)
    }
}
