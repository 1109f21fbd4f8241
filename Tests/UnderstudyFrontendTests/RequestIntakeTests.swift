import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import UnderstudyWire

@testable import UnderstudyFrontend

/// A request path that only records: what a front-end submitted, under which tag, and the sinks to answer it
/// with. The front-ends reach the request path only through ``RequestIntake``, so this is all they can see.
final class RecordingIntake: RequestIntake {
    struct Submission {
        var tag: UInt8
        var payload: [UInt8]
        var onPending: PendingSink?
        var sink: ReplySink?
    }

    let loop: any EventLoop
    let intakeThrottle = IntakeThrottle()
    var followsJournal = false
    var serviceHello: Hello? = nil
    var blocking: Set<[UInt8]> = []
    private(set) var submissions: [Submission] = []
    private(set) var forgotten: [UInt64] = []
    private(set) var formatters: [UInt8: FailureFormatter] = [:]
    private var dirty: [any Flushable] = []

    init(loop: any EventLoop) { self.loop = loop }

    func submit(tag: UInt8, payload: [UInt8], onPending: PendingSink?, sink: ReplySink?) {
        submissions.append(Submission(tag: tag, payload: payload, onPending: onPending, sink: sink))
    }
    func forgetPending(_ sequence: UInt64) { forgotten.append(sequence) }
    func mayBlock(_ name: [UInt8]) -> Bool { blocking.contains(name) }
    func clientNeedsFlush(_ client: any Flushable) { dirty.append(client) }
    func registerFailureFormatter(tag: UInt8, _ formatter: @escaping FailureFormatter) { formatters[tag] = formatter }

    /// The RESP inputs submitted so far, decoded: "SET k v"; a connection-scoped one as "#2 BLPOP q 0"; the
    /// connections-reset marker as "reset".
    var commands: [String] {
        func text(_ payload: [UInt8]) -> String {
            guard let args = try? CommandCodec.decode(payload) else { return "?" }
            return args.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
        }
        return submissions.map { s in
            switch s.tag {
            case InputTag.resp: return text(s.payload)
            case InputTag.connectionCommand:
                guard let (connection, body) = try? ConnectionInput.decode(s.payload) else { return "?" }
                return "#\(connection) " + text(body)
            case InputTag.connectionsReset: return "reset"
            default: return "tag \(s.tag)"
            }
        }
    }

    /// Answers submission `index` and ends the event-loop turn (the flushes asked for in it happen).
    func answer(_ index: Int, _ reply: [UInt8]) {
        submissions[index].sink?(reply)
        endTurn()
    }

    func endTurn() {
        let clients = dirty
        dirty = []
        for c in clients { c.flushNow() }
    }
}

/// A client channel set up by a front-end exactly as the supervisor sets up an accepted connection.
struct FrontendChannel {
    let channel = EmbeddedChannel()
    let intake: RecordingIntake

    init(_ makeFrontend: (RecordingIntake) -> any ClientFrontend) throws {
        intake = RecordingIntake(loop: channel.eventLoop)
        try makeFrontend(intake).initialize(channel)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6380)).wait()
    }

    /// Delivers `text` as one read; returns what the connection wrote back.
    func send(_ text: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: text))
        channel.pipeline.fireChannelReadComplete()
        return try written()
    }

    func written() throws -> String {
        var out = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buffer) }
        return out
    }
}

private func resp(_ args: String...) -> String {
    "*\(args.count)\r\n" + args.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
}

private func respFrontend(access: AccessControl = .open) -> (RecordingIntake) -> any ClientFrontend {
    { RESPFrontend(pipeline: $0, limits: RESPLimits(), access: access, connections: ConnectionEpoch()) }
}

@Suite("Front-ends through the request intake")
struct RequestIntakeTests {
    @Test("pipelined RESP commands are submitted in order and answered in request order, whatever order replies come in")
    func respRepliesInRequestOrder() throws {
        let c = try FrontendChannel(respFrontend())
        #expect(try c.send(resp("SET", "k", "v") + resp("GET", "k") + resp("INCR", "n")) == "")
        #expect(c.intake.commands == ["SET k v", "GET k", "INCR n"])
        // The service answers the later ones first: nothing may leave before the first reply.
        c.intake.answer(2, Array(":1\r\n".utf8))
        c.intake.answer(1, Array("$1\r\nv\r\n".utf8))
        #expect(try c.written() == "")
        c.intake.answer(0, Array("+OK\r\n".utf8))
        #expect(try c.written() == "+OK\r\n$1\r\nv\r\n:1\r\n")
    }

    @Test("connection-scoped commands are answered by the front-end and never reach the request path")
    func connectionCommandsStayLocal() throws {
        let c = try FrontendChannel(respFrontend())
        #expect(try c.send(resp("CLIENT", "SETNAME", "probe")) == "+OK\r\n")
        #expect(try c.send(resp("CLIENT", "GETNAME")) == "$5\r\nprobe\r\n")
        #expect(try c.send(resp("CLIENT", "ID")) == ":2\r\n")
        #expect(c.intake.submissions.isEmpty)
    }

    @Test("each connection of a front-end gets the next client id")
    func clientIDs() throws {
        let intake = RecordingIntake(loop: EmbeddedEventLoop())
        let frontend = RESPFrontend(pipeline: intake, limits: RESPLimits(), connections: ConnectionEpoch())
        var replies: [String] = []
        for _ in 0..<3 {
            let channel = EmbeddedChannel()
            try frontend.initialize(channel)
            try channel.writeInbound(ByteBuffer(string: resp("CLIENT", "ID")))
            while let b = try channel.readOutbound(as: ByteBuffer.self) { replies.append(String(buffer: b)) }
        }
        #expect(replies == [":2\r\n", ":3\r\n", ":4\r\n"])
        #expect(intake.submissions.isEmpty)
    }

    @Test("with a password required, nothing is submitted before AUTH, and a wrong password submits nothing either")
    func authenticationBeforeIntake() throws {
        let access = try AccessControl(requirePass: "s3cret", aclFile: nil)
        let c = try FrontendChannel(respFrontend(access: access))
        #expect(try c.send(resp("SET", "k", "v")).hasPrefix("-NOAUTH"))
        #expect(try c.send(resp("AUTH", "wrong")).hasPrefix("-WRONGPASS"))
        #expect(c.intake.submissions.isEmpty)
        #expect(try c.send(resp("AUTH", "s3cret")) == "+OK\r\n")
        _ = try c.send(resp("SET", "k", "v"))
        #expect(c.intake.commands == ["SET k v"])
    }

    @Test("behind a command the service may block on, nothing more of the connection is submitted until it is answered")
    func blockingCommandHoldsTheConnection() throws {
        let c = try FrontendChannel(respFrontend())
        c.intake.blocking = [Array("BLPOP".utf8)]
        _ = try c.send(resp("BLPOP", "q", "0") + resp("GET", "k"))
        // A blocking command is connection-scoped (the service must know whose it is), behind the process's
        // connections-reset marker.
        #expect(c.intake.commands == ["reset", "#2 BLPOP q 0"])
        c.intake.submissions[1].onPending?(41)
        #expect(c.intake.commands == ["reset", "#2 BLPOP q 0"])
        c.intake.answer(1, Array("*2\r\n$1\r\nq\r\n$1\r\nx\r\n".utf8))
        // The held GET goes in a later turn (never inside the release of a reply).
        c.channel.embeddedEventLoop.run()
        #expect(c.intake.commands == ["reset", "#2 BLPOP q 0", "GET k"])
        c.intake.answer(2, Array("$-1\r\n".utf8))
        #expect(try c.written() == "*2\r\n$1\r\nq\r\n$1\r\nx\r\n$-1\r\n")
    }

    @Test("a standby supervisor's connections journal no connections-reset marker")
    func standbyJournalsNoEpoch() throws {
        let loop = EmbeddedEventLoop()
        let intake = RecordingIntake(loop: loop)
        intake.followsJournal = true
        let epoch = ConnectionEpoch()
        epoch.begin(intake)
        #expect(intake.submissions.isEmpty)
        intake.followsJournal = false
        epoch.begin(intake)
        epoch.begin(intake)
        #expect(intake.submissions.map(\.tag) == [InputTag.connectionsReset], "once per process, when it may journal")
    }

    @Test("an HTTP request is submitted once, as an encoded request under the HTTP tag, and its reply is serialised")
    func httpThroughTheIntake() throws {
        let c = try FrontendChannel { HTTPFrontend(pipeline: $0, configuration: HTTPFrontendConfiguration()) }
        #expect(try c.send("GET /accounts/7?x=1 HTTP/1.1\r\nHost: t\r\n\r\n") == "")
        #expect(c.intake.submissions.count == 1)
        let submitted = try #require(c.intake.submissions.first)
        #expect(submitted.tag == InputTag.http)
        let request = try HTTPRequest(decoding: submitted.payload)
        #expect(request.method == "GET" && request.target == "/accounts/7?x=1")
        c.intake.answer(0, HTTPResponse.json(200, ["id": .int(7)]).encoded)
        let out = try c.written()
        #expect(out.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(out.hasSuffix("{\"id\":7}"))
    }

    @Test("the HTTP front-end registers how the supervisor's own replies look in HTTP; RESP keeps the default")
    func failureFormatters() throws {
        let c = try FrontendChannel { HTTPFrontend(pipeline: $0, configuration: HTTPFrontendConfiguration()) }
        let format = try #require(c.intake.formatters[InputTag.http])
        let busy = try HTTPResponse(decoding: format(.busy))
        #expect(busy.status == 503 && busy.header("retry-after") == "1")
        let quarantined = try HTTPResponse(decoding: format(.quarantined(sequence: 9, reason: "it trapped")))
        #expect(quarantined.status == 500)
        #expect(c.intake.formatters[InputTag.resp] == nil)
        #expect(String(decoding: PipelineFailure.readOnly.respBytes, as: UTF8.self).hasPrefix("-READONLY "))
    }
}
