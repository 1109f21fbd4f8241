import UnderstudyWire

/// One example of every ``WireMessage`` case, with non-trivial field values.
enum WireFixtures {
    static let request = ApplyRequest(
        sequence: 42, time: 1_700_000_000_123, seed: 0xDEAD_BEEF_0BAD_F00D, tag: InputTag.resp,
        payload: CommandCodec.encode([Array("INCR".utf8), Array("k1".utf8)]))

    static let all: [WireMessage] = [
        .hello(
            Hello(
                service: "test-service", version: "1.2.3-β", schemaVersion: 2, minimumMigratableSchema: 1,
                canDowngrade: true, pid: 4242, comparisonRules: ["KEYS": .orderInsensitive, "TIME": .ignore, "GET": .exact])),
        .helloAck(instanceID: 7),
        .apply(request),
        .applied(
            ApplyResult(sequence: 42, response: Array(":5\r\n".utf8), touched: [[1, 2], [], [3]], written: [[1, 2]])),
        .snapshotRequest(streamID: 9),
        .snapshotChunk(
            SnapshotChunk(
                streamID: 9, sequence: .max, schemaVersion: 3, data: Array(0...255), isFinal: true,
                checksum: 0x0123_4567_89AB_CDEF)),
        .restored(sequence: 1000, entryCount: 12),
        .digestRequest,
        .downgradeDigestRequest,
        .digest(DigestReport(sequence: 99, buckets: [0, 1, .max, 0x8000_0000_0000_0000], entryCount: 4)),
        .drillDown(buckets: [0, 17, 4095]),
        .drillDownResult(
            sequence: 5,
            entries: [
                KeyHash(key: MapKey(map: "counters", key: Array("a".utf8)), valueHash: 1),
                KeyHash(key: MapKey(map: "", key: []), valueHash: .max),
            ]),
        .fetch(keys: [MapKey(map: "counters", key: [0xFF, 0x00]), MapKey(map: "m", key: [])]),
        .fetchResult(entries: [
            KeyValue(key: MapKey(map: "counters", key: [1]), value: [8, 0, 0, 0, 0, 0, 0, 0]),
            KeyValue(key: MapKey(map: "counters", key: [2]), value: nil),
            KeyValue(key: MapKey(map: "counters", key: [3]), value: []),
        ]),
        .patch(entries: [
            KeyValue(key: MapKey(map: "counters", key: [1]), value: nil),
            KeyValue(key: MapKey(map: "other", key: Array("long key".utf8)), value: Array(repeating: 7, count: 300)),
        ]),
        .patched(count: 2),
        .prefetch(keys: [Array("a".utf8), [], Array(repeating: 0xAA, count: 200)]),
        .ping(nonce: 0xFFFF_FFFF_FFFF_FFFF),
        .pong(nonce: 1, sequence: 123_456_789),
        .shutdown,
        .error(code: .outOfOrder, message: "expected sequence 3, got 5; not applied ✓"),
        .forkCreate(forkID: 1),
        .forkApply(forkID: 1, request: ApplyRequest(sequence: 0, time: -5, seed: 0, tag: InputTag.tick, payload: [])),
        .forkResult(forkID: 1, response: Array("$-1\r\n".utf8)),
        .forkDrop(forkID: .max),
        .forkAck(forkID: 3),
        .validate,
        .validationReport(
            ValidationReport(casesRun: 3, failures: [.init(name: "lifecycle", message: "step 2: expected :1, got :2")])),
    ]

    /// Minimal values too: empty collections and strings, zero numbers.
    static let minimal: [WireMessage] = [
        .hello(
            Hello(
                service: "", version: "", schemaVersion: 0, minimumMigratableSchema: 0, canDowngrade: false, pid: 0,
                comparisonRules: [:])),
        .applied(ApplyResult(sequence: 0, response: [], touched: [], written: [])),
        .snapshotChunk(SnapshotChunk(streamID: 0, sequence: 0, schemaVersion: 0, data: [], isFinal: false, checksum: 0)),
        .digest(DigestReport(sequence: 0, buckets: [], entryCount: 0)),
        .digest(DigestReport(sequence: 1, buckets: Array(repeating: 0x0102_0304_0506_0708, count: 4096), entryCount: 1)),
        .drillDown(buckets: []),
        .drillDownResult(sequence: 0, entries: []),
        .fetch(keys: []),
        .fetchResult(entries: []),
        .patch(entries: []),
        .prefetch(keys: []),
        .error(code: .malformedFrame, message: ""),
        .validationReport(ValidationReport(casesRun: 0, failures: [])),
    ]

    /// Every wire error code, each in an error frame.
    static let errorCodes: [WireMessage] = [
        WireErrorCode.malformedFrame, .unknownFrameType, .frameTooLarge, .unexpectedMessage, .handlerFailed,
        .restoreFailed, .unsupported, .outOfOrder, .protocolMismatch, .unknownFork,
    ].map { .error(code: $0, message: "code \($0.rawValue)") }
}

/// Builds a frame from a type byte and a raw body, with a correct length prefix.
func rawFrame(type: UInt8, body: [UInt8]) -> [UInt8] {
    var w = ByteWriter()
    w.write(UInt32(body.count + 1))
    w.write(type)
    w.writeRaw(body)
    return w.bytes
}

/// The body of a frame (after the length prefix and type byte).
func body(of message: WireMessage) -> [UInt8] {
    Array(FrameCodec.encode(message).dropFirst(FrameCodec.lengthPrefixSize + 1))
}

/// A small deterministic generator for tests.
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
