import Testing
import UnderstudyKit
import UnderstudyWire

/// A service whose `WAIT name` (a connection-scoped input) holds its reply back until `POST name value` answers
/// every waiter of that name; a closed connection's waiter is forgotten.
struct MailboxService: UnderstudyService {
    struct State: TrackedState {
        /// Waiting sequence numbers (8 bytes, big-endian) → the connection id (8 bytes) and the name they wait for.
        var waiting = TrackedMap<[UInt8]>(name: "waiting")
        func visitMaps(_ v: inout some TrackedMapVisitor) { v.visit(waiting) }
        mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) { v.visit(&waiting) }
    }
    static var name: String { "mailbox" }
    static var version: String { "1.0.0" }
    static var schemaVersion: UInt32 { 1 }
    static var blockingCommands: [String] { ["WAIT"] }

    func makeInitialState() -> State { State() }

    static func key(_ s: UInt64) -> [UInt8] { withUnsafeBytes(of: s.bigEndian) { Array($0) } }
    static func connection(_ c: Int64) -> [UInt8] { withUnsafeBytes(of: c.bigEndian) { Array($0) } }

    func handle(_ request: ServiceRequest, state: inout State, context: inout RequestContext) -> [UInt8] {
        switch request.tag {
        case InputTag.connectionCommand:
            guard let (connection, body) = try? ConnectionInput.decode(request.payload),
                  let args = try? CommandCodec.decode(body), args.count == 2 else { return [] }
            state.waiting.set(Self.key(context.sequence), Self.connection(connection) + args[1])
            context.deferReply()
            return Array("ignored".utf8)
        case InputTag.resp:
            guard let args = try? CommandCodec.decode(request.payload), args.count == 3 else { return [] }
            var answered: [[UInt8]] = []
            state.waiting.forEach { k, v in if Array(v.dropFirst(8)) == args[1] { answered.append(k) } }
            for k in answered.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                state.waiting.remove(k)
                context.reply(to: k.reduce(0) { $0 << 8 | UInt64($1) }, args[2])
            }
            return Array(":\(answered.count)\r\n".utf8)
        case InputTag.connectionClosed:
            guard let (connection, _) = try? ConnectionInput.decode(request.payload) else { return [] }
            var gone: [[UInt8]] = []
            state.waiting.forEach { k, v in if Array(v.prefix(8)) == Self.connection(connection) { gone.append(k) } }
            for k in gone { state.waiting.remove(k) }
            return []
        default:
            return []
        }
    }
}

@Suite("Deferred replies in the SDK")
struct DeferredReplyTests {
    static func apply(_ engine: inout ServiceEngine<MailboxService>, tag: UInt8, _ payload: [UInt8]) -> ApplyResult {
        engine.apply(ApplyRequest(sequence: engine.lastSequence + 1, time: 1, seed: 1, tag: tag, payload: payload))
    }

    static func wait(_ engine: inout ServiceEngine<MailboxService>, connection: Int64, _ name: String) -> ApplyResult {
        apply(&engine, tag: InputTag.connectionCommand, ConnectionInput.encode(
            connection: connection, body: CommandCodec.encode([Array("WAIT".utf8), Array(name.utf8)])))
    }

    static func post(_ engine: inout ServiceEngine<MailboxService>, _ name: String, _ message: String) -> ApplyResult {
        apply(&engine, tag: InputTag.resp, CommandCodec.encode(["POST", name, message].map { Array($0.utf8) }))
    }

    @Test("a deferred reply is pending with an empty response; a later input answers it; a closed connection's is forgotten")
    func deferAndAnswer() {
        var engine = ServiceEngine(service: MailboxService())
        let a = Self.wait(&engine, connection: 1, "x")
        #expect(a.pending && a.response.isEmpty && a.deferredReplies.isEmpty)
        let b = Self.wait(&engine, connection: 2, "x")
        _ = Self.wait(&engine, connection: 3, "y")
        let post = Self.post(&engine, "x", "hello")
        #expect(!post.pending && post.response == Array(":2\r\n".utf8))
        #expect(post.deferredReplies == [
            DeferredReply(sequence: a.sequence, response: Array("hello".utf8)),
            DeferredReply(sequence: b.sequence, response: Array("hello".utf8)),
        ])
        let closed = Self.apply(&engine, tag: InputTag.connectionClosed, ConnectionInput.encode(connection: 3))
        #expect(closed.response.isEmpty && !closed.pending && closed.deferredReplies.isEmpty)
        #expect(Self.post(&engine, "y", "late").deferredReplies.isEmpty)
        #expect(ServiceEngine<MailboxService>.hello(pid: 1).blockingCommands == ["WAIT"])
    }
}
