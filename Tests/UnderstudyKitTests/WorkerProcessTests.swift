#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import UnderstudyKit
import UnderstudyWire

/// Real `test-service` worker processes, driven over a Unix socket exactly as the supervisor does.
@Suite("Worker processes")
struct WorkerProcessTests {
    @Test("two workers fed the same 100 000 requests agree on every reply and every 1 000th digest; a third differs only where its input did")
    func replicasAgree() throws {
        let total = 100_000
        let divergeAt: UInt64 = 50_000
        var requests = RequestStream.random(count: total, seed: 0x5EED_0001)
        // Keys outside the random key space, so the difference stays confined to them.
        requests[Int(divergeAt) - 1] = RequestStream.apply(divergeAt, ["INCR", "original-key"], seed: 1)
        let alternative = RequestStream.apply(divergeAt, ["INCR", "alternative-key"], seed: 1)
        let counters = TrackedMap<Int64>(name: "counters")
        let expectedBuckets = Set([counters.bucket(of: Array("original-key".utf8)), counters.bucket(of: Array("alternative-key".utf8))])

        let workers = try (0..<3).map { _ in try TestWorker.start() }
        for w in workers {
            #expect(w.hello.service == "test-service")
            #expect(w.hello.schemaVersion == 1)
            #expect(w.hello.protocolVersion == wireProtocolVersion)
            #expect(w.hello.pid == UInt32(w.process.pid))
            #expect(w.hello.comparisonRules == ["NOW": .ignore, "PREFETCHED": .ignore])
        }

        var model = CounterModel()
        var replyMismatches: [String] = []
        var digestMismatches: [String] = []
        var digestsCompared = 0
        var randReplies = Set<[UInt8]>()
        let batch = 1_000
        for start in stride(from: 0, to: total, by: batch) {
            let end = start + batch  // sequence number of the batch's last request
            for (i, w) in workers.enumerated() {
                for r in requests[start..<end] {
                    w.enqueue(.apply(i == 2 && r.sequence == divergeAt ? alternative : r))
                }
                w.enqueue(.digestRequest)
            }
            for w in workers { try w.flush() }
            let replies = try workers.map { try $0.receive(batch + 1) }

            for j in 0..<batch {
                let request = requests[start + j]
                guard case .applied(let a) = replies[0][j], case .applied(let b) = replies[1][j],
                    case .applied(let c) = replies[2][j]
                else {
                    replyMismatches.append("seq \(request.sequence): not applied: \(replies.map { $0[j] })")
                    continue
                }
                let expected = model.reply(to: request)
                if a.sequence != request.sequence || a.response != expected {
                    replyMismatches.append("seq \(request.sequence): worker 0 replied \(String(decoding: a.response, as: UTF8.self).debugDescription), model says \(String(decoding: expected, as: UTF8.self).debugDescription)")
                }
                if a != b { replyMismatches.append("seq \(request.sequence): workers 0 and 1 differ: \(a) vs \(b)") }
                if request.sequence == divergeAt {
                    if c.response != a.response || c.touched != [Array("alternative-key".utf8)] {
                        replyMismatches.append("seq \(request.sequence): the alternative request replied \(c)")
                    }
                } else if a != c {
                    replyMismatches.append("seq \(request.sequence): workers 0 and 2 differ: \(a) vs \(c)")
                }
                if (try? CommandCodec.decode(request.payload))?.first == Array("RAND".utf8) {
                    randReplies.insert(a.response)
                }
            }
            guard case .digest(let da) = replies[0][batch], case .digest(let db) = replies[1][batch],
                case .digest(let dc) = replies[2][batch]
            else {
                digestMismatches.append("at \(end): no digest: \(replies.map { $0[batch] })")
                continue
            }
            digestsCompared += 1
            if da.sequence != UInt64(end) || da != db {
                digestMismatches.append("at \(end): workers 0 and 1 differ in buckets \(da.mismatchedBuckets(against: db)) (sequences \(da.sequence), \(db.sequence))")
            }
            let differing = Set(da.mismatchedBuckets(against: dc))
            let wanted = UInt64(end) < divergeAt ? [] : expectedBuckets
            if differing != wanted || da.entryCount != dc.entryCount {
                digestMismatches.append("at \(end): worker 2 differs in buckets \(differing.sorted()), expected \(wanted.sorted())")
            }
            if end == total {
                #expect(da.entryCount == UInt64(model.values.count))
                #expect(da.entryCount > 400)
            }
        }
        #expect(replyMismatches.isEmpty, "\(replyMismatches.count) reply mismatches, first: \(replyMismatches.prefix(5))")
        #expect(digestMismatches.isEmpty, "\(digestMismatches.count) digest mismatches, first: \(digestMismatches.prefix(5))")
        #expect(digestsCompared == total / batch)
        #expect(randReplies.count > 500, "RAND should draw from the journaled seed, got \(randReplies.count) distinct replies")

        for w in workers {
            #expect(try w.request(.ping(nonce: 9)) == .pong(nonce: 9, sequence: UInt64(total)))
            #expect(w.process.isRunning)
        }
    }

    /// Applies `requests` and returns the replies.
    static func apply(_ requests: some Sequence<ApplyRequest>, to worker: TestWorker) throws -> [ApplyResult] {
        var count = 0
        for r in requests {
            worker.enqueue(.apply(r))
            count += 1
        }
        return try worker.receive(count).map { message in
            guard case .applied(let result) = message else { throw HarnessError("expected applied, got \(message)") }
            return result
        }
    }

    static func digest(of worker: TestWorker, downgraded: Bool = false) throws -> DigestReport {
        let reply = try worker.request(downgraded ? .downgradeDigestRequest : .digestRequest)
        guard case .digest(let d) = reply else { throw HarnessError("expected a digest, got \(reply)") }
        return d
    }

    static func snapshot(of worker: TestWorker, streamID: UInt32) throws -> (data: [UInt8], last: SnapshotChunk) {
        worker.enqueue(.snapshotRequest(streamID: streamID))
        var data: [UInt8] = []
        while true {
            let message = try worker.receive(1)[0]
            guard case .snapshotChunk(let chunk) = message, chunk.streamID == streamID else {
                throw HarnessError("expected a snapshot chunk, got \(message)")
            }
            data += chunk.data
            if chunk.isFinal { return (data, chunk) }
        }
    }

    /// Sends a snapshot in chunks of `chunkSize` bytes and returns the worker's answer.
    static func restore(
        _ data: [UInt8], sequence: UInt64, schema: UInt32, into worker: TestWorker, streamID: UInt32, chunkSize: Int,
        checksum: UInt64? = nil
    ) throws -> WireMessage {
        var start = 0
        repeat {
            let end = min(data.count, start + chunkSize)
            let final = end == data.count
            worker.enqueue(.snapshotChunk(SnapshotChunk(
                streamID: streamID, sequence: sequence, schemaVersion: schema, data: Array(data[start..<end]),
                isFinal: final, checksum: final ? (checksum ?? StableHasher.hash(data)) : 0)))
            start = end
        } while start < data.count
        return try worker.receive(1)[0]
    }

    @Test("a snapshot restores into a fresh worker process with an identical digest")
    func snapshotRestore() throws {
        let source = try TestWorker.start()
        let requests = RequestStream.random(count: 3_500, seed: 77)
        _ = try Self.apply(requests[0..<3_000], to: source)
        let sourceDigest = try Self.digest(of: source)
        #expect(sourceDigest.sequence == 3_000)
        let (data, last) = try Self.snapshot(of: source, streamID: 5)
        #expect(last.sequence == 3_000)
        #expect(last.schemaVersion == 1)
        #expect(last.checksum == StableHasher.hash(data))

        let fresh = try TestWorker.start()
        // A corrupted stream is refused and leaves the state alone.
        let refused = try Self.restore(data, sequence: 3_000, schema: 1, into: fresh, streamID: 1, chunkSize: 1 << 20, checksum: 1)
        guard case .error(.restoreFailed, _) = refused else {
            Issue.record("a bad checksum was not refused: \(refused)")
            return
        }
        #expect(try Self.digest(of: fresh).entryCount == 0)

        // Many small chunks reassemble into the same snapshot.
        let restored = try Self.restore(data, sequence: 3_000, schema: 1, into: fresh, streamID: 2, chunkSize: 97)
        #expect(restored == .restored(sequence: 3_000, entryCount: sourceDigest.entryCount))
        #expect(try Self.digest(of: fresh) == sourceDigest)
        #expect(try fresh.request(.ping(nonce: 1)) == .pong(nonce: 1, sequence: 3_000))

        // Both carry on identically from there.
        let a = try Self.apply(requests[3_000...], to: source)
        let b = try Self.apply(requests[3_000...], to: fresh)
        #expect(a == b)
        #expect(try Self.digest(of: source) == Self.digest(of: fresh))
    }

    @Test("snapshots are encoded beside the other work: each holds the state as of its request, streams in request order, inputs and other replies in theirs")
    func snapshotBesideInputs() throws {
        let worker = try TestWorker.start()
        // A state large enough that its snapshot takes a while to encode.
        let keys = 200_000
        let load = (1...keys).map { RequestStream.apply(UInt64($0), ["ADD", "key\($0)", "\($0)"]) }
        _ = try Self.apply(load, to: worker)
        let before = try Self.digest(of: worker)
        #expect(before.sequence == UInt64(keys) && before.entryCount == UInt64(keys))

        // One batch: a snapshot request, inputs, a ping, a second snapshot request, more inputs, a digest request.
        let n = UInt64(keys)
        worker.enqueue(.snapshotRequest(streamID: 7))
        for i in 1...2_000 { worker.enqueue(.apply(RequestStream.apply(n + UInt64(i), ["INCR", "key\(i)"]))) }
        worker.enqueue(.ping(nonce: 42))
        worker.enqueue(.snapshotRequest(streamID: 8))
        for i in 2_001...3_000 { worker.enqueue(.apply(RequestStream.apply(n + UInt64(i), ["INCR", "key\(i)"]))) }
        worker.enqueue(.digestRequest)

        var streams: [UInt32: (data: [UInt8], final: SnapshotChunk?)] = [:]
        var applied: [UInt64] = []
        var pong: UInt64?
        var digest: DigestReport?
        while digest == nil || streams[7]?.final == nil || streams[8]?.final == nil {
            let message = try worker.receive(1)[0]
            switch message {
            case .snapshotChunk(let chunk):
                #expect(chunk.streamID == 7 || chunk.streamID == 8)
                if chunk.streamID == 8 { #expect(streams[7]?.final != nil, "the second stream began before the first ended") }
                streams[chunk.streamID, default: ([], nil)].data += chunk.data
                if chunk.isFinal { streams[chunk.streamID]!.final = chunk }
            case .applied(let r):
                applied.append(r.sequence)
                if r.sequence > n + 2_000 { #expect(pong != nil, "input \(r.sequence) overtook the ping queued before it") }
            case .pong(let nonce, let sequence):
                #expect(nonce == 42)
                #expect(applied.last == n + 2_000, "the ping was answered out of turn")
                pong = sequence
            case .digest(let d):
                #expect(applied.count == 3_000, "the digest was answered before the inputs queued before it")
                digest = d
            default:
                Issue.record("unexpected \(message)")
            }
        }
        #expect(applied == Array((n + 1)...(n + 3_000)), "every input applied once, in order")
        #expect(pong == n + 2_000)
        #expect(digest?.sequence == n + 3_000)

        // Each snapshot holds the state as of its own request, not of the inputs applied while it was encoded.
        let first = try #require(streams[7]?.final)
        let second = try #require(streams[8]?.final)
        #expect(first.sequence == n && second.sequence == n + 2_000)
        #expect(first.checksum == StableHasher.hash(streams[7]!.data) && second.checksum == StableHasher.hash(streams[8]!.data))
        let fresh = try TestWorker.start()
        let restored = try Self.restore(streams[7]!.data, sequence: n, schema: 1, into: fresh, streamID: 1, chunkSize: 1 << 20)
        #expect(restored == .restored(sequence: n, entryCount: UInt64(keys)))
        #expect(try Self.digest(of: fresh) == before)
        let other = try TestWorker.start()
        _ = try Self.restore(streams[8]!.data, sequence: n + 2_000, schema: 1, into: other, streamID: 1, chunkSize: 1 << 20)
        // Both carry on to the worker's own final state.
        _ = try Self.apply((1...3_000).map { RequestStream.apply(n + UInt64($0), ["INCR", "key\($0)"]) }, to: fresh)
        _ = try Self.apply((2_001...3_000).map { RequestStream.apply(n + UInt64($0), ["INCR", "key\($0)"]) }, to: other)
        #expect(try Self.digest(of: fresh) == digest)
        #expect(try Self.digest(of: other) == digest)
    }

    @Test("a schema 1 snapshot migrates into a schema 2 worker, which answers correctly and downgrades to the same digest")
    func migration() throws {
        let v1 = try TestWorker.start(schema: 1)
        let v2 = try TestWorker.start(schema: 2)
        #expect(v2.hello.schemaVersion == 2)
        #expect(v2.hello.minimumMigratableSchema == 1)
        #expect(v2.hello.canDowngrade)
        #expect(v2.hello.version == "2.0.0")
        #expect(!v1.hello.canDowngrade)

        var model = CounterModel()
        let requests = RequestStream.random(count: 2_000, keys: 300, seed: 99)
        for r in requests { _ = model.reply(to: r) }
        _ = try Self.apply(requests, to: v1)
        let v1Digest = try Self.digest(of: v1)
        let (data, last) = try Self.snapshot(of: v1, streamID: 3)

        let restored = try Self.restore(data, sequence: last.sequence, schema: 1, into: v2, streamID: 4, chunkSize: 1000)
        #expect(restored == .restored(sequence: 2_000, entryCount: v1Digest.entryCount))

        // GET returns the migrated values for every key, present or not.
        var sequence: UInt64 = 2_000
        let gets = (0..<300).map { k -> ApplyRequest in
            sequence += 1
            return RequestStream.apply(sequence, ["GET", "k\(k)"])
        }
        let answers = try Self.apply(gets, to: v2)
        #expect(answers.map(\.response) == gets.map { model.reply(to: $0) })
        #expect(answers.map(\.response) == (try Self.apply(gets, to: v1)).map(\.response))

        // Schema 2 state is not schema 1 state, but it downgrades to exactly the same digest.
        let v2Digest = try Self.digest(of: v2)
        #expect(v2Digest.entryCount == v1Digest.entryCount)
        #expect(v2Digest.buckets != v1Digest.buckets)
        #expect(try Self.digest(of: v2, downgraded: true) == Self.digest(of: v1))
        guard case .error(.unsupported, _) = try v1.request(.downgradeDigestRequest) else {
            Issue.record("schema 1 has no downgrade and must say so")
            return
        }

        // Serving on from the migrated state: same replies, still the same downgraded digest.
        let more = RequestStream.random(count: 1_000, from: sequence + 1, keys: 300, seed: 100)
        let replies2 = try Self.apply(more, to: v2)
        let replies1 = try Self.apply(more, to: v1)
        #expect(replies2.map(\.response) == replies1.map(\.response))
        #expect(replies2.map(\.response) == more.map { model.reply(to: $0) })
        #expect(try Self.digest(of: v2, downgraded: true) == Self.digest(of: v1))

        // A checkpoint input: schema 2 answers for schema 1 with its downgraded digest, exactly as
        // schema 1 answers for itself; an impossible reference schema gets an empty reply.
        sequence = more.last!.sequence
        var checkpoints: [ApplyRequest] = []
        for reference: UInt32 in [1, 2, .max] {
            sequence += 1
            var w = ByteWriter()
            w.write(reference)
            checkpoints.append(ApplyRequest(sequence: sequence, time: 1, seed: 0, tag: InputTag.checkpoint, payload: w.bytes))
        }
        let fromV2 = try Self.apply(checkpoints, to: v2)
        let fromV1 = try Self.apply(checkpoints, to: v1)
        #expect(try DigestReport(encoded: fromV2[0].response) == DigestReport(encoded: fromV1[0].response))
        #expect(try DigestReport(encoded: fromV1[0].response).buckets == Self.digest(of: v1).buckets)
        #expect(try DigestReport(encoded: fromV2[1].response).buckets == Self.digest(of: v2).buckets)
        #expect(fromV1[1].response.isEmpty)
        #expect(fromV2[2].response.isEmpty && fromV1[2].response.isEmpty)
        #expect(v2.process.isRunning)

        // A schema 1 worker cannot read a schema 2 snapshot: refused, state unchanged.
        let (data2, last2) = try Self.snapshot(of: v2, streamID: 6)
        #expect(last2.schemaVersion == 2)
        let before = try Self.digest(of: v1)
        let refused = try Self.restore(data2, sequence: last2.sequence, schema: 2, into: v1, streamID: 7, chunkSize: 1 << 20)
        guard case .error(.restoreFailed, let message) = refused else {
            Issue.record("a schema 2 snapshot was not refused by schema 1: \(refused)")
            return
        }
        #expect(message.contains("schema 2"))
        #expect(try Self.digest(of: v1) == before)

        // Both versions run their validation suites on a fork.
        #expect(try v1.request(.validate) == .validationReport(ValidationReport(casesRun: 2, failures: [])))
        #expect(try v2.request(.validate) == .validationReport(ValidationReport(casesRun: 3, failures: [])))
        #expect(try Self.digest(of: v1) == before)
    }

    @Test("bad frames over the socket get error frames and the worker keeps serving")
    func badFramesOverSocket() throws {
        let worker = try TestWorker.start()
        func frame(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
            var w = ByteWriter()
            w.write(UInt32(body.count + 1))
            w.write(type)
            w.writeRaw(body)
            return w.bytes
        }
        var chunk = FrameCodec.encode(.snapshotChunk(SnapshotChunk(streamID: 1, sequence: 0, schemaVersion: 1, data: [], isFinal: true, checksum: 0)))
        chunk[4 + 1 + 17] = 2  // isFinal = 2
        let cases: [(name: String, bytes: [UInt8], code: WireErrorCode)] = [
            ("truncated field", frame(18, [1, 2, 3]), .malformedFrame),
            ("trailing bytes", frame(18, Array(repeating: 1, count: 9)), .malformedFrame),
            ("bad bool byte", chunk, .malformedFrame),
            ("unknown type", frame(250, [1, 2, 3, 4]), .unknownFrameType),
            ("zero length", [0, 0, 0, 0], .malformedFrame),
            ("worker-bound pong", FrameCodec.encode(.pong(nonce: 1, sequence: 1)), .unexpectedMessage),
            ("out-of-order apply", FrameCodec.encode(.apply(RequestStream.apply(5, ["INCR", "x"]))), .outOfOrder),
            ("unknown fork", FrameCodec.encode(.forkApply(forkID: 9, request: RequestStream.apply(1, ["GET", "x"]))), .unknownFork),
        ]
        // One at a time, each followed by a ping that must still be answered.
        for (i, c) in cases.enumerated() {
            worker.enqueueRaw(c.bytes)
            worker.enqueue(.ping(nonce: UInt64(i)))
            let replies = try worker.receive(2)
            guard case .error(let code, let message) = replies[0] else {
                Issue.record("\(c.name): expected an error frame, got \(replies[0])")
                continue
            }
            #expect(code == c.code, "\(c.name): \(message)")
            #expect(!message.isEmpty)
            #expect(replies[1] == .pong(nonce: UInt64(i), sequence: 0), "\(c.name)")
        }
        // All at once, in one write: the same errors, in order.
        for c in cases { worker.enqueueRaw(c.bytes) }
        worker.enqueue(.ping(nonce: 99))
        let replies = try worker.receive(cases.count + 1)
        for (c, reply) in zip(cases, replies) {
            guard case .error(let code, _) = reply else {
                Issue.record("\(c.name): expected an error frame, got \(reply)")
                continue
            }
            #expect(code == c.code, "\(c.name)")
        }
        #expect(replies.last == .pong(nonce: 99, sequence: 0))
        #expect(worker.process.isRunning)

        // The state was never touched.
        #expect(try Self.digest(of: worker).entryCount == 0)
        // An orderly shutdown.
        worker.enqueue(.shutdown)
        #expect(try worker.receiveUntilClosed() == [])
        #expect(worker.process.wait(timeout: .seconds(5)) == .exited(0))
    }

    @Test("an oversized frame gets an error frame, then a clean close with the protocol exit status")
    func oversizedFrame() throws {
        let worker = try TestWorker.start()
        #expect(try worker.request(.ping(nonce: 1)) == .pong(nonce: 1, sequence: 0))
        worker.enqueueRaw([0xFF, 0xFF, 0xFF, 0x7F, 18])
        let replies = try worker.receiveUntilClosed()
        #expect(replies.count == 1)
        guard case .error(.frameTooLarge, let message)? = replies.first else {
            Issue.record("expected a frameTooLarge error, got \(replies)")
            return
        }
        #expect(message.contains("\(0x7FFF_FFFF)"))
        #expect(worker.process.wait(timeout: .seconds(5)) == .exited(WorkerRuntime.protocolExitStatus))
    }

    @Test("a frame cut off by the end of the stream gets an error frame and the protocol exit status")
    func truncatedAtEndOfStream() throws {
        let worker = try TestWorker.start()
        worker.enqueueRaw(Array(FrameCodec.encode(.ping(nonce: 7)).prefix(9)))
        try worker.shutdownWrite()
        let replies = try worker.receiveUntilClosed()
        guard replies.count == 1, case .error(.malformedFrame, let message) = replies[0] else {
            Issue.record("expected one malformedFrame error, got \(replies)")
            return
        }
        #expect(message.contains("4 bytes missing"))
        #expect(worker.process.wait(timeout: .seconds(5)) == .exited(WorkerRuntime.protocolExitStatus))
    }

    @Test("a worker exits within a second when its supervisor socket closes")
    func exitsWhenSocketCloses() throws {
        let worker = try TestWorker.start()
        _ = try Self.apply(RequestStream.random(count: 200, seed: 5), to: worker)
        #expect(try worker.request(.ping(nonce: 2)) == .pong(nonce: 2, sequence: 200))
        let clock = ContinuousClock()
        let started = clock.now
        worker.closeSocket()
        let exit = worker.process.wait(timeout: .seconds(5))
        let elapsed = clock.now - started
        #expect(exit == .exited(0))
        #expect(elapsed < .seconds(1), "took \(elapsed)")
    }

    @Test("a worker whose supervisor vanishes mid-reply exits cleanly, not by SIGPIPE")
    func exitsWhenSocketClosesWhileReplying() throws {
        let worker = try TestWorker.start()
        // Many digest requests: about 32 KiB of reply each, far more than the socket buffers hold.
        for _ in 0..<400 { worker.enqueue(.digestRequest) }
        try worker.flush()
        usleep(20_000)
        worker.closeSocket()
        #expect(worker.process.wait(timeout: .seconds(5)) == .exited(0))
    }

    /// Runs test-service with `arguments` and no supervisor; returns how it ended and its output.
    static func runAlone(_ arguments: [String], environment: [String: String] = [:]) throws -> (ProcessExit?, stdout: String, stderr: String) {
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let process = try ChildProcess(
            try testServiceBinary(), arguments: arguments, environment: environment, stdout: directory + "/out",
            stderr: directory + "/err")
        let exit = process.wait(timeout: .seconds(20))
        return (exit, readFile(directory + "/out"), readFile(directory + "/err"))
    }

    @Test("started without a socket, the worker exits 64 and names `understudy run`")
    func noSocket() throws {
        let (exit, _, stderr) = try Self.runAlone([])
        #expect(exit == .exited(WorkerRuntime.usageExitStatus))
        #expect(exit == .exited(64))
        #expect(stderr.contains("understudy run"), "stderr: \(stderr)")

        let (exit2, _, stderr2) = try Self.runAlone(["--schema", "2"])
        #expect(exit2 == .exited(64))
        #expect(stderr2.contains("understudy run"))
    }

    @Test("other start-up paths: bad schema, unreachable socket, the environment variable, --describe")
    func startUp() throws {
        let (badSchema, _, badSchemaErr) = try Self.runAlone(["--schema", "3"])
        #expect(badSchema == .exited(64))
        #expect(badSchemaErr.contains("--schema"))

        let (unreachable, _, unreachableErr) = try Self.runAlone(["--understudy-socket", "/tmp/usk-no-such-socket"])
        #expect(unreachable == .exited(WorkerRuntime.connectExitStatus))
        #expect(unreachableErr.contains("/tmp/usk-no-such-socket"))

        let (describe, out, _) = try Self.runAlone(["--schema", "2", "--describe"])
        #expect(describe == .exited(0))
        #expect(out == "test-service 2.0.0 schema 2 protocol \(wireProtocolVersion)\n")

        // UNDERSTUDY_SOCKET works as well as the flag.
        let directory = try makeTemporaryDirectory()
        defer { removeDirectory(directory) }
        let listener = try UnixListener(path: directory + "/s")
        let process = try ChildProcess(try testServiceBinary(), arguments: [], environment: ["UNDERSTUDY_SOCKET": listener.path])
        let fd = try listener.accept(timeout: .seconds(20))
        var header = [UInt8](repeating: 0, count: 5)
        let n = header.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 5, Int32(MSG_WAITALL)) }
        close(fd)
        #expect(n == 5)
        #expect(header[4] == 1)  // hello
        #expect(process.wait(timeout: .seconds(5)) == .exited(0))
    }
}
