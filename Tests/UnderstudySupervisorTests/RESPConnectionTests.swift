import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
@testable import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyWire

@testable import UnderstudySupervisor

/// One client connection on an `EmbeddedChannel`: the decoder feeding the connection handler directly, as the
/// supervisor wires them, and a pipeline with no workers (a command that reaches it is held, unanswered).
final class ConnectionHarness {
    let channel = EmbeddedChannel()
    let directory: String
    let journal: Journal
    let pipeline: RequestPipeline

    init(limits: RESPLimits = RESPLimits(), handlerMaximumInputBytes: Int? = nil, access: AccessControl = .open,
         commandTable: CommandTable? = nil, connections: ConnectionEpoch = ConnectionEpoch(),
         commandTables: (() -> CommandTable?)? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("resp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let logger = Logger(label: "resp-connection-test")
        journal = try Journal.open(directory: directory, configuration: JournalConfiguration(), logger: logger)
        pipeline = RequestPipeline(
            loop: channel.eventLoop, journal: journal, configuration: PipelineConfiguration(),
            serviceBinary: "/nonexistent", threadPool: NIOThreadPool(numberOfThreads: 1),
            comparator: Comparator(dataDirectory: nil, classifier: CommandClassifier()),
            metrics: SupervisorMetrics(factory: NOOPMetricsHandler.instance), logger: logger)
        let handler = RESPConnectionHandler(
            pipeline: pipeline, clientID: 1, maximumInputBytes: handlerMaximumInputBytes ?? limits.maximumInputBytes,
            access: access, connections: connections,
            commandTable: commandTables ?? commandTable.map { table in { table } })
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(RESPCommandDecoder(limits: limits) { [unowned handler] in handler.deliver($0) }))
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6380)).wait()
    }

    /// Delivers `bytes` as one read and returns what the connection wrote back.
    func send(_ bytes: [UInt8]) throws -> String {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        channel.pipeline.fireChannelReadComplete()
        var out = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buffer) }
        return out
    }

    func send(_ text: String) throws -> String { try send(Array(text.utf8)) }

    func close() throws {
        _ = try? channel.finish()
        try journal.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// RESP encoding of a command.
func resp(_ args: String...) -> String {
    "*\(args.count)\r\n" + args.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
}

@Suite("RESP connection limits")
struct RESPConnectionTests {
    @Test("a 1 048 576-argument command in 1 KiB reads comes out of the channel decoder whole")
    func millionArgumentsThroughChannel() throws {
        let (request, count) = RESPDecoderTests.millionArguments()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPCommandDecoder()))
        var inputs: [RESPInput] = []
        var offset = 0
        while offset < request.count {
            let end = min(offset + 1024, request.count)
            try channel.writeInbound(ByteBuffer(bytes: request[offset..<end]))
            offset = end
            while let input = try channel.readInbound(as: RESPInput.self) { inputs.append(input) }
        }
        #expect(inputs.count == 1)
        guard case .command(let command)? = inputs.first else {
            Issue.record("expected one command, got \(inputs.count) inputs")
            return
        }
        RESPDecoderTests.checkMillionArguments(command, count: count)
        _ = try channel.finish()
    }

    @Test("the query buffer limit counts the arguments held as well as the unparsed bytes")
    func queryBufferLimit() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(RESPCommandDecoder(limits: RESPLimits(maximumQueryBuffer: 32))))
        try channel.writeInbound(ByteBuffer(string: "*2\r\n$20\r\n01234567890123456789\r\n$20\r\n0123"))
        #expect(try channel.readInbound(as: RESPInput.self) == nil)  // 20 held + 4 unparsed
        try channel.writeInbound(ByteBuffer(string: "56789012"))
        #expect(try channel.readInbound(as: RESPInput.self) == nil)  // 20 held + 12 unparsed: at the limit
        try channel.writeInbound(ByteBuffer(string: "3"))
        #expect(try channel.readInbound(as: RESPInput.self) == .protocolError("query buffer of 33 bytes exceeds the limit"))
        _ = try channel.finish()
    }

    @Test("a MULTI queue that would exceed the input limit is refused and the transaction aborted")
    func multiQueueLimit() throws {
        let value = String(repeating: "v", count: 30)
        let one = CommandCodec.encodedSize(["SET", "k", value].map { Array($0.utf8) })
        // One such command fits in a transaction, two do not.
        let limit = CommandCodec.encodedTransactionSize(commandCount: 1, commandBytes: one) + 10
        #expect(CommandCodec.encodedTransactionSize(commandCount: 2, commandBytes: 2 * one) > limit)
        let harness = try ConnectionHarness(limits: RESPLimits(maximumInputBytes: limit))
        defer { try? harness.close() }

        #expect(try harness.send(resp("MULTI")) == "+OK\r\n")
        #expect(try harness.send(resp("SET", "k", value)) == "+QUEUED\r\n")
        #expect(try harness.send(resp("SET", "k", value))
            == "-ERR MULTI queue exceeds \(limit) bytes; transaction discarded\r\n")
        // Later commands are acknowledged as in redis-server after a queueing error; EXEC aborts.
        #expect(try harness.send(resp("PING")) == "+QUEUED\r\n")
        #expect(try harness.send(resp("EXEC")) == "-EXECABORT Transaction discarded because of previous errors.\r\n")

        // A new transaction starts from an empty queue, and so does one after DISCARD.
        #expect(try harness.send(resp("MULTI")) == "+OK\r\n")
        #expect(try harness.send(resp("SET", "k", value)) == "+QUEUED\r\n")
        #expect(try harness.send(resp("DISCARD")) == "+OK\r\n")
        #expect(try harness.send(resp("MULTI")) == "+OK\r\n")
        #expect(try harness.send(resp("SET", "k", value)) == "+QUEUED\r\n")
        // Within the limit, EXEC goes to the pipeline (held there: no worker in this test, so no reply yet).
        #expect(try harness.send(resp("EXEC")) == "")
        #expect(harness.channel.isActive)
    }

    @Test("a command over the input limit is refused before the pipeline, and the connection closed")
    func oversizedCommand() throws {
        // A command of exactly the limit goes to the pipeline (held there: no worker, so no reply yet).
        let fits = [Array("SET".utf8), Array("k".utf8), Array(repeating: UInt8(ascii: "v"), count: 32 - 8)]
        #expect(CommandCodec.encodedSize(fits) == 32)
        let accepting = try ConnectionHarness(limits: RESPLimits(maximumInputBytes: 32))
        defer { try? accepting.close() }
        #expect(try accepting.send(resp("SET", "k", String(repeating: "v", count: 24))) == "")
        #expect(accepting.channel.isActive)

        let harness = try ConnectionHarness(limits: RESPLimits(maximumInputBytes: 32))
        defer { try? harness.close() }
        let reply = try harness.send(resp("SET", "k", String(repeating: "v", count: 40)))
        #expect(reply == "-ERR Protocol error: command exceeds the maximum input size of 32 bytes\r\n")
        #expect(!harness.channel.isActive)
        #expect(harness.journal.lastSequence == 0)
    }

    @Test("the handler refuses an input over its own limit even when the decoder allowed it")
    func handlerBackstop() throws {
        let harness = try ConnectionHarness(handlerMaximumInputBytes: 32)
        defer { try? harness.close() }
        let big = [Array("SET".utf8), Array("k".utf8), Array(repeating: UInt8(ascii: "v"), count: 40)]
        let size = CommandCodec.encodedSize(big)
        #expect(try harness.send(resp("SET", "k", String(repeating: "v", count: 40)))
            == "-ERR input of \(size) bytes exceeds the maximum of 32 bytes; not executed\r\n")
        #expect(harness.channel.isActive)
        #expect(try harness.send(resp("GET", "k")) == "")  // held by the pipeline
    }
}
