import Synchronization
import UnderstudyKit
import UnderstudyWire

/// Prefetch hints this process received through the SDK's `prefetch(keys:state:)` hook (a diagnostic, not state:
/// only the primary is sent hints, so `PREFETCHED` replies are not compared).
enum PrefetchLog {
    private static let keysReceived = Atomic<Int64>(0)
    static func record(_ keys: Int) { keysReceived.add(Int64(keys), ordering: .relaxed) }
    static var count: Int64 { keysReceived.load(ordering: .relaxed) }
}

/// RESP2 reply encodings used by the test service.
enum Reply {
    /// `:n\r\n`
    static func integer(_ value: Int64) -> [UInt8] { Array(":\(value)\r\n".utf8) }
    /// `:n\r\n` for an unsigned count.
    static func integer(_ value: UInt64) -> [UInt8] { Array(":\(value)\r\n".utf8) }
    /// The null bulk string, `$-1\r\n`.
    static let null: [UInt8] = Array("$-1\r\n".utf8)
    /// `-ERR message\r\n`
    static func error(_ message: String) -> [UInt8] { Array("-ERR \(message)\r\n".utf8) }
}

/// One parsed request of the counter protocol (shared by both schema versions).
enum CounterCommand {
    case incr(key: [UInt8])
    case add(key: [UInt8], amount: Int64)
    case get(key: [UInt8])
    case del(key: [UInt8])
    case rand(key: [UInt8])
    case now
    /// How many prefetch-hinted keys this process has received (process-local, never compared).
    case prefetched
    /// Schema 2 only: how many times a key was updated since it was created (or migrated).
    case updates(key: [UInt8])

    /// Parses a request, or returns the error reply to send instead.
    static func parse(_ request: ServiceRequest) -> Result<CounterCommand, ParseFailure> {
        guard request.tag == InputTag.resp else {
            return .failure(ParseFailure(reply: Reply.error("unsupported input tag \(request.tag)")))
        }
        guard let args = try? CommandCodec.decode(request.payload), let first = args.first else {
            return .failure(ParseFailure(reply: Reply.error("malformed command payload")))
        }
        let name = String(decoding: first, as: UTF8.self).uppercased()
        func arity(_ n: Int) -> ParseFailure? {
            args.count == n ? nil : ParseFailure(reply: Reply.error("wrong number of arguments for '\(name.lowercased())' command"))
        }
        switch name {
        case "INCR":
            if let f = arity(2) { return .failure(f) }
            return .success(.incr(key: args[1]))
        case "ADD":
            if let f = arity(3) { return .failure(f) }
            guard let n = Int64(String(decoding: args[2], as: UTF8.self)) else {
                return .failure(ParseFailure(reply: Reply.error("value is not an integer or out of range")))
            }
            return .success(.add(key: args[1], amount: n))
        case "GET":
            if let f = arity(2) { return .failure(f) }
            return .success(.get(key: args[1]))
        case "DEL":
            if let f = arity(2) { return .failure(f) }
            return .success(.del(key: args[1]))
        case "RAND":
            if let f = arity(2) { return .failure(f) }
            return .success(.rand(key: args[1]))
        case "PREFETCHED":
            if let f = arity(1) { return .failure(f) }
            return .success(.prefetched)
        case "NOW":
            if let f = arity(1) { return .failure(f) }
            return .success(.now)
        case "UPDATES":
            if let f = arity(2) { return .failure(f) }
            return .success(.updates(key: args[1]))
        default:
            return .failure(ParseFailure(reply: Reply.error("unknown command '\(String(decoding: first, as: UTF8.self))'")))
        }
    }
}

/// A request that could not be parsed, with the reply that says why.
struct ParseFailure: Error {
    var reply: [UInt8]
}

/// Adds with overflow detection, as Redis's INCRBY does.
func checkedAdd(_ a: Int64, _ b: Int64) -> Int64? {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? nil : sum
}

let overflowReply = Reply.error("increment or decrement would overflow")

/// The validation suite shared by both versions: the observable protocol is the same.
let counterValidationSuite: [ValidationCase] = [
    ValidationCase(
        name: "counter lifecycle",
        steps: [
            ValidationStep(.command(["DEL", "validation:c"]), check: { reply in
                reply == Reply.integer(Int64(0)) || reply == Reply.integer(Int64(1)) ? nil : "DEL replied \(String(decoding: reply, as: UTF8.self).debugDescription)"
            }),
            ValidationStep(.command(["GET", "validation:c"]), expect: Reply.null),
            ValidationStep(.command(["INCR", "validation:c"]), expect: Reply.integer(Int64(1))),
            ValidationStep(.command(["ADD", "validation:c", "41"]), expect: Reply.integer(Int64(42))),
            ValidationStep(.command(["GET", "validation:c"]), expect: Reply.integer(Int64(42))),
            ValidationStep(.command(["DEL", "validation:c"]), expect: Reply.integer(Int64(1))),
            ValidationStep(.command(["GET", "validation:c"]), expect: Reply.null),
        ]),
    ValidationCase(
        name: "errors and randomness",
        steps: [
            ValidationStep(.command(["ADD", "validation:e", "many"]), expect: Reply.error("value is not an integer or out of range")),
            ValidationStep(.command(["FLY"]), expect: Reply.error("unknown command 'FLY'")),
            ValidationStep(.command(["INCR"]), expect: Reply.error("wrong number of arguments for 'incr' command")),
            ValidationStep(.command(["RAND", "validation:r"]), check: { reply in
                let text = String(decoding: reply, as: UTF8.self)
                guard text.hasPrefix(":"), text.hasSuffix("\r\n"), let v = Int64(text.dropFirst().dropLast(2)), (0..<1000).contains(v)
                else { return "RAND replied \(text.debugDescription)" }
                return nil
            }),
        ]),
]
