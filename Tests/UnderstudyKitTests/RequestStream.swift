import UnderstudyKit
import UnderstudyWire

/// A small deterministic generator for building test inputs (SplitMix64).
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds journaled inputs for the counter protocol of `test-service`.
enum RequestStream {
    static let baseTime: Int64 = 1_700_000_000_000

    /// A journaled RESP command.
    static func apply(_ sequence: UInt64, _ arguments: [String], seed: UInt64 = 0, time: Int64? = nil) -> ApplyRequest {
        ApplyRequest(
            sequence: sequence, time: time ?? baseTime &+ Int64(truncatingIfNeeded: sequence) &* 7, seed: seed, tag: InputTag.resp,
            payload: CommandCodec.encode(arguments.map { Array($0.utf8) }))
    }

    /// `count` random requests numbered from `first`, over `keys` keys named `k0`, `k1`, …
    static func random(count: Int, from first: UInt64 = 1, keys: Int = 500, seed: UInt64) -> [ApplyRequest] {
        var rng = TestRandom(seed: seed)
        return (0..<count).map { i in
            let sequence = first + UInt64(i)
            let key = "k\(Int.random(in: 0..<keys, using: &rng))"
            let arguments: [String]
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<35: arguments = ["INCR", key]
            case 35..<55: arguments = ["ADD", key, String(Int.random(in: -1000...1000, using: &rng))]
            case 55..<75: arguments = ["GET", key]
            case 75..<85: arguments = ["DEL", key]
            case 85..<95: arguments = ["RAND", key]
            case 95..<98: arguments = ["NOW"]
            default: arguments = ["ADD", key, "not-a-number"]
            }
            return apply(sequence, arguments, seed: rng.next(), time: baseTime + Int64(sequence) * 7 + Int64.random(in: 0..<5, using: &rng))
        }
    }

    static func integer(_ v: Int64) -> [UInt8] { Array(":\(v)\r\n".utf8) }
    static let null: [UInt8] = Array("$-1\r\n".utf8)
}

/// What `test-service` (either schema) must reply, computed independently of it.
struct CounterModel {
    var values: [String: Int64] = [:]

    mutating func reply(to request: ApplyRequest) -> [UInt8] {
        let args = (try? CommandCodec.decode(request.payload))?.map { String(decoding: $0, as: UTF8.self) } ?? []
        switch (args.first ?? "", args.count) {
        case ("INCR", 2):
            return add(1, args[1])
        case ("ADD", 3):
            guard let n = Int64(args[2]) else { return Array("-ERR value is not an integer or out of range\r\n".utf8) }
            return add(n, args[1])
        case ("GET", 2):
            return values[args[1]].map(RequestStream.integer) ?? RequestStream.null
        case ("DEL", 2):
            return RequestStream.integer(values.removeValue(forKey: args[1]) == nil ? 0 : 1)
        case ("RAND", 2):
            var random = DeterministicRandom(seed: request.seed)
            let v = Int64(random.next() % 1000)
            values[args[1]] = v
            return RequestStream.integer(v)
        case ("NOW", 1):
            return RequestStream.integer(request.time)
        default:
            return Array("-ERR unexpected request in model\r\n".utf8)
        }
    }

    private mutating func add(_ n: Int64, _ key: String) -> [UInt8] {
        let v = (values[key] ?? 0) + n
        values[key] = v
        return RequestStream.integer(v)
    }
}
