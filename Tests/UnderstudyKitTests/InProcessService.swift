import Testing
import UnderstudyKit
import UnderstudyWire

/// The in-process test service's state: two maps of different value types.
struct LedgerState: TrackedState {
    var counters = TrackedMap<Int64>(name: "counters")
    var labels = TrackedMap<String>(name: "labels")
    func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(counters)
        v.visit(labels)
    }
    mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&counters)
        v.visit(&labels)
    }
}

/// A small service for driving ``ServiceEngine`` in-process: INCR, GET, DEL, LABEL key text, RAND key, FILL count.
struct LedgerService: UnderstudyService {
    static let name = "ledger"
    static let version = "1.0.0"
    static let schemaVersion: UInt32 = 1

    var suite: [ValidationCase] = LedgerService.passingSuite

    func makeInitialState() -> LedgerState { LedgerState() }

    func handle(_ request: ServiceRequest, state: inout LedgerState, context: inout RequestContext) -> [UInt8] {
        guard let args = try? CommandCodec.decode(request.payload), let first = args.first else {
            return Array("-ERR malformed\r\n".utf8)
        }
        switch (String(decoding: first, as: UTF8.self), args.count) {
        case ("INCR", 2):
            let v = state.counters.update(args[1]) { value -> Int64 in
                value = (value ?? 0) &+ 1
                return value!
            }
            return RequestStream.integer(v)
        case ("GET", 2):
            return state.counters.get(args[1]).map(RequestStream.integer) ?? RequestStream.null
        case ("DEL", 2):
            let a = state.counters.remove(args[1]) != nil
            let b = state.labels.remove(args[1]) != nil
            return RequestStream.integer(a || b ? 1 : 0)
        case ("LABEL", 3):
            state.labels.set(args[1], String(decoding: args[2], as: UTF8.self))
            return Array("+OK\r\n".utf8)
        case ("FILL", 2):
            // Sets counters k0 … k(count-1) to 1: one request that writes many keys.
            let count = Int(String(decoding: args[1], as: UTF8.self)) ?? 0
            for i in 0..<count { state.counters.set(Array("k\(i)".utf8), 1) }
            return RequestStream.integer(Int64(count))
        case ("RAND", 2):
            let v = Int64(context.random.next() % 1000)
            state.counters.set(args[1], v)
            return RequestStream.integer(v)
        default:
            return Array("-ERR unknown command\r\n".utf8)
        }
    }

    var validationSuite: [ValidationCase] { suite }

    static let passingSuite: [ValidationCase] = [
        ValidationCase(name: "incr", steps: [
            ValidationStep(.command(["DEL", "v"]), check: { _ in nil }),
            ValidationStep(.command(["INCR", "v"]), expect: RequestStream.integer(1)),
            ValidationStep(.command(["INCR", "v"]), expect: RequestStream.integer(2)),
        ]),
        ValidationCase(name: "labels", steps: [
            ValidationStep(.command(["LABEL", "v", "hello"]), expect: Array("+OK\r\n".utf8)),
            ValidationStep(.command(["NOPE"]), expect: Array("-ERR unknown command\r\n".utf8)),
        ]),
    ]
}

extension ServiceEngine {
    /// Handles one message and decodes the reply frames.
    mutating func exchange(_ message: WireMessage) throws -> [WireMessage] {
        var output = ByteWriter()
        _ = handle(message, output: &output)
        var decoder = FrameDecoder()
        decoder.append(output.bytes)
        var replies: [WireMessage] = []
        while let m = try decoder.next() { replies.append(m) }
        try decoder.finish()
        return replies
    }

    /// Handles one message that must get exactly one reply.
    mutating func reply(_ message: WireMessage) throws -> WireMessage {
        let replies = try exchange(message)
        guard replies.count == 1 else { throw HarnessError("expected one reply to \(message), got \(replies)") }
        return replies[0]
    }

    /// Applies requests in order through `handle`, returning the results.
    mutating func applyAll(_ requests: some Sequence<ApplyRequest>) throws -> [ApplyResult] {
        try requests.map { r in
            let m = try reply(.apply(r))
            guard case .applied(let result) = m else { throw HarnessError("expected applied, got \(m)") }
            return result
        }
    }

    func currentDigest() -> DigestReport { state.digest(sequence: lastSequence) }
}

/// Random requests for the ledger service.
func ledgerRequests(count: Int, from first: UInt64 = 1, keys: Int = 200, seed: UInt64) -> [ApplyRequest] {
    var rng = TestRandom(seed: seed)
    return (0..<count).map { i in
        let key = "k\(Int.random(in: 0..<keys, using: &rng))"
        let args: [String]
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<4: args = ["INCR", key]
        case 4..<6: args = ["GET", key]
        case 6: args = ["DEL", key]
        case 7..<9: args = ["LABEL", key, "label-\(Int.random(in: 0..<50, using: &rng))"]
        default: args = ["RAND", key]
        }
        return RequestStream.apply(first + UInt64(i), args, seed: rng.next())
    }
}

/// Keeps failure messages short: a report has 4 096 buckets.
extension DigestReport: CustomTestStringConvertible {
    public var testDescription: String {
        let nonzero = buckets.filter { $0 != 0 }.count
        return "DigestReport(sequence: \(sequence), entries: \(entryCount), \(nonzero) non-empty buckets, hash \(StableHasher.hash(buckets.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) })))"
    }
}
