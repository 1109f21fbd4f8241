import HTTPTypes
import Hummingbird
import Ledger
import NIOCore
import Synchronization
import UnderstudyKit
import UnderstudyWire

// The ledger's logic served directly by a plain Hummingbird application: no journal, no shadow, no supervisor.
// The baseline the HTTP front-end is measured against (BENCHMARKS.md). Usage: ledger-hummingbird [PORT]

let port = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 8080
let service = LedgerServiceV1()
/// The state and the request counter (the ledger is a sequential state machine: one request at a time).
let store = Mutex<(state: LedgerStateV1, sequence: UInt64)>((LedgerStateV1(), 0))
let idempotencyKey = HTTPField.Name("idempotency-key")!

let responder = CallbackResponder<BasicRequestContext> { request, _ in
    var request = request
    let body = try await request.collectBody(upTo: 16 << 20)
    var headers: [HTTPHeader] = []
    if let key = request.headers[idempotencyKey] { headers.append(HTTPHeader("idempotency-key", key)) }
    let ledgerRequest = UnderstudyWire.HTTPRequest(
        method: request.method.rawValue, target: request.uri.description, headers: headers, body: Array(buffer: body))
    let reply = store.withLock { store in
        store.sequence += 1
        var context = RequestContext(
            sequence: store.sequence, timeMillis: 0,
            seed: store.sequence)
        let r = service.handle(ledgerRequest, state: &store.state, context: &context)
        _ = store.state.drainTouchedKeys()
        return r
    }
    var fields = HTTPFields()
    for h in reply.headers {
        if let name = HTTPField.Name(h.name) { fields[name] = h.value }
    }
    return Response(status: .init(code: reply.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
}

let app = Application(
    responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "ledger-hummingbird"))
try await app.runService()
