import Benchmark
import Foundation
import KVStore
import Logging
import UnderstudyJournal
import UnderstudyKit
import UnderstudyPrediction
import UnderstudyWire

/// Pre-encoded `SET key:i value` requests.
func setRequests(_ count: Int, from start: UInt64 = 1) -> [ApplyRequest] {
    (0..<count).map { i in
        ApplyRequest(
            sequence: start + UInt64(i), time: 1_700_000_000_000, seed: UInt64(i), tag: InputTag.resp,
            payload: CommandCodec.encode([Array("SET".utf8), Array("key:\(i)".utf8), Array("value-\(i)".utf8)]))
    }
}

/// One kv command as an input.
func kvRequest(_ sequence: UInt64, _ parts: [String]) -> ApplyRequest {
    ApplyRequest(sequence: sequence, time: 1_700_000_000_000, seed: sequence &* 0x9E37_79B9_7F4A_7C15, tag: InputTag.resp,
                 payload: CommandCodec.encode(parts.map { Array($0.utf8) }))
}

/// The kv command groups measured in-process on one big value (200 000 members where a collection is involved):
/// name, the commands that build the value, and the measured command for iteration `i`.
let kvGroups: [(name: String, setup: [[String]], command: @Sendable (Int) -> [String])] = {
    let zset = stride(from: 0, to: 200_000, by: 500).map { base in
        ["ZADD", "z"] + (base..<(base + 500)).flatMap { [String($0 % 9973), "m\($0)"] }
    }
    let set = stride(from: 0, to: 200_000, by: 500).map { base in ["SADD", "s"] + (base..<(base + 500)).map { "m\($0)" } }
    let hash = stride(from: 0, to: 200_000, by: 500).map { base in
        ["HSET", "h"] + (base..<(base + 500)).flatMap { ["f\($0)", "v"] }
    }
    return [
        ("ZADD new members into a 200k sorted set", zset, { i in ["ZADD", "z", String(i % 7919), "n\(i)"] }),
        ("ZADD changing scores in a 200k sorted set", zset, { i in ["ZADD", "z", String(i % 7919), "m\(i % 200_000)"] }),
        ("ZRANK in a 200k sorted set", zset, { i in ["ZRANK", "z", "m\(i % 200_000)"] }),
        ("ZRANGEBYSCORE LIMIT 0 10 in a 200k sorted set", zset, { i in ["ZRANGEBYSCORE", "z", String(i % 9973), "+inf", "LIMIT", "0", "10"] }),
        ("ZPOPMIN+ZADD on a 200k sorted set", zset, { i in i % 2 == 0 ? ["ZPOPMIN", "z"] : ["ZADD", "z", "0", "p\(i)"] }),
        ("SPOP+SADD on a 200k set", set, { i in i % 2 == 0 ? ["SPOP", "s"] : ["SADD", "s", "p\(i)"] }),
        ("SRANDMEMBER on a 200k set", set, { _ in ["SRANDMEMBER", "s"] }),
        ("SSCAN COUNT 10 on a 200k set", set, { i in ["SSCAN", "s", String(UInt64(i) &* 0x9E37_79B9_7F4A_7C15 >> 1), "COUNT", "10"] }),
        ("HRANDFIELD on a 200k hash", hash, { _ in ["HRANDFIELD", "h"] }),
        ("SETBIT+BITCOUNT on a 1 MiB string", [["SETBIT", "b", "8388607", "1"]], { i in
            i % 2 == 0 ? ["SETBIT", "b", String((i &* 7919) % 8_388_608), "1"] : ["BITCOUNT", "b", "0", "1023"]
        }),
    ]
}()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal], maxDuration: .seconds(5))

    // Worker apply rate in-process: the kv service applying SETs (digest maintenance included).
    Benchmark("Kit: kv-v1 apply SET in-process", configuration: .init(scalingFactor: .kilo)) { benchmark in
        var engine = ServiceEngine(service: KVServiceV1())
        let requests = setRequests(benchmark.scaledIterations.count)
        benchmark.startMeasurement()
        for r in requests { blackHole(engine.apply(r)) }
    }

    // Digest update cost per mutation: one TrackedMap write (hash of key and value, bucket update).
    Benchmark("Kit: digest update per mutation", configuration: .init(scalingFactor: .mega)) { benchmark in
        var map = TrackedMap<Int64>(name: "counters")
        let keys = (0..<1024).map { Array("k\($0)".utf8) }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations { map.set(keys[i & 1023], Int64(i)) }
        blackHole(map.bucketDigests)
    }

    // Snapshot and restore of 1 M small string keys.
    Benchmark("Kit: snapshot 1M keys", configuration: .init(metrics: [.wallClock, .peakMemoryResident], maxIterations: 5)) { benchmark in
        var engine = ServiceEngine(service: KVServiceV1())
        for r in setRequests(1_000_000) { _ = engine.apply(r) }
        benchmark.startMeasurement()
        blackHole(engine.state.encodeSnapshot(schemaVersion: 1, sequence: engine.lastSequence))
        // Freeing a 1 M-key tree takes most of a second: keep it out of the measured time.
        benchmark.stopMeasurement()
        blackHole(engine)
    }
    Benchmark("Kit: restore 1M keys", configuration: .init(metrics: [.wallClock, .peakMemoryResident], maxIterations: 5)) { benchmark in
        var engine = ServiceEngine(service: KVServiceV1())
        for r in setRequests(1_000_000) { _ = engine.apply(r) }
        let bytes = engine.state.encodeSnapshot(schemaVersion: 1, sequence: engine.lastSequence)
        benchmark.startMeasurement()
        var fresh = KVStateV1()
        try fresh.load(from: try StateSnapshot(bytes: bytes))
        benchmark.stopMeasurement()
        blackHole(fresh)
        blackHole(engine)
    }

    // Frame codec: encode and decode one apply frame.
    Benchmark("Wire: apply frame encode+decode", configuration: .init(scalingFactor: .mega)) { benchmark in
        let message = WireMessage.apply(setRequests(1)[0])
        var decoder = FrameDecoder()
        for _ in benchmark.scaledIterations {
            decoder.append(FrameCodec.encode(message))
            blackHole(try decoder.next())
        }
    }

    // Journal appends with 100-byte payloads (everysec) and replay from disk.
    Benchmark("Journal: append everysec 100 B", configuration: .init(scalingFactor: .mega, maxIterations: 3)) { benchmark in
        let dir = NSTemporaryDirectory() + "us-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal.open(directory: dir, configuration: .init(fsync: .everysec), logger: Logger(label: "bench"))
        let payload = [UInt8](repeating: 7, count: 100)
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            try journal.append(JournalRecord(sequence: UInt64(i) + 1, time: 0, seed: 0, tag: 1, payload: payload))
        }
        benchmark.stopMeasurement()
        try journal.close()
    }
    Benchmark("Journal: replay 100 B records", configuration: .init(scalingFactor: .mega, maxIterations: 3)) { benchmark in
        let dir = NSTemporaryDirectory() + "us-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let journal = try Journal.open(directory: dir, configuration: .init(fsync: .no), logger: Logger(label: "bench"))
        let payload = [UInt8](repeating: 7, count: 100)
        for i in benchmark.scaledIterations {
            try journal.append(JournalRecord(sequence: UInt64(i) + 1, time: 0, seed: 0, tag: 1, payload: payload))
        }
        try journal.close()
        benchmark.startMeasurement()
        let reopened = try Journal.open(directory: dir, configuration: .init(fsync: .no), logger: Logger(label: "bench"))
        var next: UInt64 = 1
        while true {
            let batch = try reopened.read(from: next, maxCount: 4096)
            if batch.isEmpty { break }
            next = batch.last!.sequence + 1
        }
        benchmark.stopMeasurement()
        try reopened.close()
    }

    // One online update of the recurrent cell: forward step, a gradient on h, backward (window 1), Adam step.
    for hidden in [32, 64, 128] {
        Benchmark("Prediction: GRU update hidden \(hidden)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var rng = SplitMix64(seed: 1)
            let input = 24
            let store = ParameterStore(capacity: recurrentParameterCount(.gru, inputSize: input, hiddenSize: hidden) + 64)
            let cell = makeRecurrentCell(.gru, inputSize: input, hiddenSize: hidden, store: store, rng: &rng)
            let runner = TruncatedBPTT(cell: cell, window: 1)
            let x = FloatBuffer(count: cell.inputSize)
            let g = FloatBuffer(count: cell.hiddenSize)
            for j in 0..<cell.hiddenSize { g[j] = Float(rng.nextUnit() - 0.5) * 0.1 }
            func one(_ i: Int) {
                x.zero()
                x[i % 8] = 1
                x[8 + (i % 5)] = 0.5
                x[18] = 1
                runner.step(input: x.pointer)
                runner.addHiddenGradient(g.pointer)
                runner.backward()
                store.step()
            }
            for i in 0..<1000 { one(i) }
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations { one(i) }
        }
    }

    // The prediction engine: observations per second on one core (hidden 32, GRU, Adam).
    Benchmark("Prediction: engine observe", configuration: .init(scalingFactor: .kilo)) { benchmark in
        let engine = PredictionEngine(configuration: .init())
        let keys = (0..<500).map { Array("key:\($0)".utf8) }
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            engine.observe(Observation(command: "GET", keys: [keys[(i * 7) % 500]], timeMillis: Int64(i), isWrite: false))
        }
    }

    // The kv's newer command groups, in-process (kv-v2, digest maintenance included).
    for group in kvGroups {
        Benchmark("KV: kv-v2 \(group.name)", configuration: .init(scalingFactor: .kilo)) { benchmark in
            var engine = ServiceEngine(service: KVServiceV2())
            var sequence: UInt64 = 0
            for parts in group.setup {
                sequence += 1
                _ = engine.apply(kvRequest(sequence, parts))
            }
            let requests = benchmark.scaledIterations.map { kvRequest(sequence + 1 + UInt64($0), group.command($0)) }
            benchmark.startMeasurement()
            for r in requests { blackHole(engine.apply(r)) }
        }
    }
}
