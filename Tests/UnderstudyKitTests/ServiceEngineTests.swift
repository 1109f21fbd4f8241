import Testing
import UnderstudyKit
import UnderstudyWire

@Suite("ServiceEngine in-process")
struct ServiceEngineTests {
    @Test("an out-of-order apply is refused and not applied")
    func outOfOrder() throws {
        var engine = ServiceEngine(service: LedgerService())
        let empty = engine.currentDigest()
        for sequence: UInt64 in [0, 2, 7, .max] {
            let reply = try engine.reply(.apply(RequestStream.apply(sequence, ["INCR", "a"])))
            guard case .error(.outOfOrder, let message) = reply else {
                Issue.record("sequence \(sequence) on a fresh engine: \(reply)")
                continue
            }
            #expect(message.contains("expected sequence 1"))
        }
        #expect(engine.lastSequence == 0)
        #expect(engine.currentDigest() == empty)

        _ = try engine.applyAll([RequestStream.apply(1, ["INCR", "a"])])
        let afterOne = engine.currentDigest()
        // A replayed (duplicate) input is refused too.
        guard case .error(.outOfOrder, _) = try engine.reply(.apply(RequestStream.apply(1, ["INCR", "a"]))) else {
            Issue.record("a duplicate sequence number was applied")
            return
        }
        #expect(engine.currentDigest() == afterOne)
        #expect(try engine.applyAll([RequestStream.apply(2, ["GET", "a"])]).map(\.response) == [RequestStream.integer(1)])
        #expect(try engine.reply(.ping(nonce: 3)) == .pong(nonce: 3, sequence: 2))
    }

    @Test("a state restored at the last possible sequence number refuses further input instead of trapping")
    func sequenceAtMaximum() throws {
        var source = LedgerState()
        source.counters.set(Array("a".utf8), 1)
        let bytes = source.encodeSnapshot(schemaVersion: 1, sequence: .max)
        var engine = ServiceEngine(service: LedgerService())
        let restored = try engine.reply(.snapshotChunk(SnapshotChunk(
            streamID: 1, sequence: .max, schemaVersion: 1, data: bytes, isFinal: true, checksum: StableHasher.hash(bytes))))
        #expect(restored == .restored(sequence: .max, entryCount: 1))
        for sequence: UInt64 in [0, 1, .max] {
            guard case .error(.outOfOrder, _) = try engine.reply(.apply(RequestStream.apply(sequence, ["INCR", "a"]))) else {
                Issue.record("sequence \(sequence) after .max was applied")
                continue
            }
        }
        guard case .validationReport(let report) = try engine.reply(.validate) else {
            Issue.record("no validation report")
            return
        }
        #expect(report.failures.isEmpty)
    }

    @Test("apply reports the keys each request touched and wrote")
    func touchedAndWritten() throws {
        var engine = ServiceEngine(service: LedgerService())
        let results = try engine.applyAll([
            RequestStream.apply(1, ["INCR", "a"]),
            RequestStream.apply(2, ["GET", "a"]),
            RequestStream.apply(3, ["LABEL", "b", "x"]),
            RequestStream.apply(4, ["GET", "zz"]),
        ])
        #expect(results.map(\.sequence) == [1, 2, 3, 4])
        #expect(results[0].touched == [Array("a".utf8)])
        #expect(results[0].written == [Array("a".utf8)])
        #expect(results[1].touched == [Array("a".utf8)])
        #expect(results[1].written == [])
        #expect(results[2].written == [Array("b".utf8)])
        #expect(results[3].touched == [Array("zz".utf8)])
        #expect(results[3].written == [])
        #expect(engine.lastTime == RequestStream.baseTime + 4 * 7)
    }

    @Test("a request that writes more than 65 536 keys reports the first 65 536 of them, and every key is written")
    func reportedKeysBounded() throws {
        var engine = ServiceEngine(service: LedgerService())
        let keep = UnderstudyLimits.maxReportedKeys
        let results = try engine.applyAll([
            RequestStream.apply(1, ["FILL", "\(keep + 5)"]),
            RequestStream.apply(2, ["GET", "k\(keep + 4)"]),
        ])
        #expect(results[0].written.count == keep)
        #expect(results[0].touched.count == keep)
        #expect(results[0].written.first == Array("k0".utf8) && results[0].written.last == Array("k\(keep - 1)".utf8))
        #expect(results[1].response == RequestStream.integer(1), "the keys past the reported ones are written too")
        #expect(results[1].touched == [Array("k\(keep + 4)".utf8)], "the next request reports its own keys only")
    }

    @Test("fork create, apply and drop leave the live state's digest unchanged")
    func forks() throws {
        var engine = ServiceEngine(service: LedgerService())
        _ = try engine.applyAll(ledgerRequests(count: 500, seed: 1))
        let live = engine.currentDigest()
        let liveA = engine.state.counters.peek(Array("k1".utf8))

        #expect(try engine.reply(.forkCreate(forkID: 1)) == .forkAck(forkID: 1))
        #expect(try engine.reply(.forkCreate(forkID: 2)) == .forkAck(forkID: 2))
        var forkReplies: [[UInt8]] = []
        for (i, r) in ledgerRequests(count: 300, from: 501, seed: 2).enumerated() {
            let reply = try engine.reply(.forkApply(forkID: 1, request: r))
            guard case .forkResult(1, let response) = reply else {
                Issue.record("fork apply \(i): \(reply)")
                return
            }
            forkReplies.append(response)
        }
        // The fork really changed: incrementing k1 there sees the fork's own history.
        let inFork1 = try engine.reply(.forkApply(forkID: 1, request: RequestStream.apply(801, ["INCR", "fresh"])))
        let inFork1Again = try engine.reply(.forkApply(forkID: 1, request: RequestStream.apply(802, ["INCR", "fresh"])))
        let inFork2 = try engine.reply(.forkApply(forkID: 2, request: RequestStream.apply(801, ["INCR", "fresh"])))
        #expect(inFork1 == .forkResult(forkID: 1, response: RequestStream.integer(1)))
        #expect(inFork1Again == .forkResult(forkID: 1, response: RequestStream.integer(2)))
        #expect(inFork2 == .forkResult(forkID: 2, response: RequestStream.integer(1)))

        #expect(engine.currentDigest() == live)
        #expect(engine.lastSequence == 500)
        #expect(engine.state.counters.peek(Array("k1".utf8)) == liveA)
        #expect(engine.state.counters.peek(Array("fresh".utf8)) == nil)

        #expect(try engine.reply(.forkDrop(forkID: 1)) == .forkAck(forkID: 1))
        #expect(try engine.reply(.forkDrop(forkID: 2)) == .forkAck(forkID: 2))
        #expect(engine.currentDigest() == live)
        guard case .error(.unknownFork, _) = try engine.reply(.forkApply(forkID: 1, request: RequestStream.apply(1, ["GET", "a"]))) else {
            Issue.record("a dropped fork still accepted input")
            return
        }
        // The live state goes on from where it was.
        #expect(try engine.applyAll([RequestStream.apply(501, ["INCR", "fresh"])]).map(\.response) == [RequestStream.integer(1)])
    }

    @Test("validate runs the suite on a fork and reports failures by case and step")
    func validation() throws {
        var engine = ServiceEngine(service: LedgerService())
        _ = try engine.applyAll(ledgerRequests(count: 100, seed: 3) + [RequestStream.apply(101, ["INCR", "v"])])
        let live = engine.currentDigest()
        // "v" is 1 live; the suite deletes it first, so it passes whatever the live state holds.
        #expect(try engine.reply(.validate) == .validationReport(ValidationReport(casesRun: 2, failures: [])))
        #expect(engine.currentDigest() == live)
        #expect(engine.state.counters.peek(Array("v".utf8)) == 1)

        var failing = LedgerService()
        failing.suite = LedgerService.passingSuite + [
            ValidationCase(name: "wrong on purpose", steps: [
                ValidationStep(.command(["INCR", "w"]), expect: RequestStream.integer(1)),
                ValidationStep(.command(["INCR", "w"]), expect: RequestStream.integer(3)),
                ValidationStep(.command(["INCR", "w"]), expect: RequestStream.integer(99)),  // not reached
            ]),
            ValidationCase(name: "custom check", steps: [
                ValidationStep(.command(["RAND", "r"]), check: { reply in reply.first == UInt8(ascii: ":") ? "refused on purpose" : nil }),
            ]),
        ]
        var engine2 = ServiceEngine(service: failing)
        guard case .validationReport(let report) = try engine2.reply(.validate) else {
            Issue.record("no report")
            return
        }
        #expect(report.casesRun == 4)
        #expect(report.failures.map(\.name) == ["wrong on purpose", "custom check"])
        #expect(report.failures[0].message.hasPrefix("step 2:"))
        #expect(report.failures[0].message.contains(":3"))
        #expect(report.failures[1].message == "step 1: refused on purpose")
        #expect(engine2.currentDigest().entryCount == 0)
    }

    @Test("snapshots stream in chunks and restore to the same digest; bad streams leave the state alone")
    func snapshotRoundTrip() throws {
        var source = ServiceEngine(service: LedgerService())
        source.snapshotChunkSize = 256
        _ = try source.applyAll(ledgerRequests(count: 2_000, seed: 4))
        let chunks = try source.exchange(.snapshotRequest(streamID: 9))
        #expect(chunks.count > 3)
        var data: [UInt8] = []
        for (i, m) in chunks.enumerated() {
            guard case .snapshotChunk(let c) = m else {
                Issue.record("not a chunk: \(m)")
                return
            }
            #expect(c.streamID == 9 && c.sequence == 2_000 && c.schemaVersion == 1)
            #expect(c.isFinal == (i == chunks.count - 1))
            #expect(c.data.count <= 256)
            data += c.data
            if c.isFinal { #expect(c.checksum == StableHasher.hash(data)) }
        }

        var target = ServiceEngine(service: LedgerService())
        _ = try target.applyAll(ledgerRequests(count: 10, seed: 5))
        let before = target.currentDigest()
        // Wrong checksum, garbage bytes, a future schema: each refused, nothing changed.
        let corrupt = Array(data.dropLast())  // checksum matches, but the structure is cut short
        let bad: [SnapshotChunk] = [
            SnapshotChunk(streamID: 1, sequence: 2_000, schemaVersion: 1, data: data, isFinal: true, checksum: StableHasher.hash(data) ^ 1),
            SnapshotChunk(streamID: 2, sequence: 2_000, schemaVersion: 1, data: corrupt, isFinal: true, checksum: StableHasher.hash(corrupt)),
            SnapshotChunk(streamID: 3, sequence: 2_000, schemaVersion: 1, data: [1, 2, 3], isFinal: true, checksum: StableHasher.hash([1, 2, 3])),
        ]
        for chunk in bad {
            guard case .error(.restoreFailed, _) = try target.reply(.snapshotChunk(chunk)) else {
                Issue.record("stream \(chunk.streamID) was not refused")
                continue
            }
            #expect(target.currentDigest() == before)
            #expect(target.lastSequence == 10)
        }
        var future = LedgerState()
        future.counters.set([1], 1)
        let futureBytes = future.encodeSnapshot(schemaVersion: 2, sequence: 5)
        guard case .error(.restoreFailed, let message) = try target.reply(.snapshotChunk(SnapshotChunk(
            streamID: 4, sequence: 5, schemaVersion: 2, data: futureBytes, isFinal: true, checksum: StableHasher.hash(futureBytes))))
        else {
            Issue.record("a newer schema was not refused")
            return
        }
        #expect(message.contains("schema 2"))

        // Feed the good chunks (in the source's chunking) and the state is replaced wholesale.
        var replies: [WireMessage] = []
        for m in chunks { replies += try target.exchange(m) }
        #expect(replies == [.restored(sequence: 2_000, entryCount: source.currentDigest().entryCount)])
        #expect(target.currentDigest() == source.currentDigest())
        #expect(target.lastSequence == 2_000)
        let next = ledgerRequests(count: 200, from: 2_001, seed: 6)
        #expect(try target.applyAll(next) == source.applyAll(next))
    }

    @Test("drill-down, fetch and patch bring a diverged state to the source's digest")
    func patchRepairs() throws {
        var source = ServiceEngine(service: LedgerService())
        var target = ServiceEngine(service: LedgerService())
        let shared = ledgerRequests(count: 1_000, seed: 7)
        _ = try source.applyAll(shared)
        _ = try target.applyAll(shared)
        // Diverge: different tails touching some shared keys, some keys only one side has.
        _ = try source.applyAll(ledgerRequests(count: 40, from: 1_001, keys: 250, seed: 8))
        _ = try target.applyAll(ledgerRequests(count: 40, from: 1_001, keys: 250, seed: 9))
        let sourceDigest = source.currentDigest()
        let mismatched = target.currentDigest().mismatchedBuckets(against: sourceDigest)
        #expect(!mismatched.isEmpty)

        func drill(_ engine: inout ServiceEngine<LedgerService>) throws -> [MapKey: UInt64] {
            guard case .drillDownResult(_, let entries) = try engine.reply(.drillDown(buckets: mismatched.map(UInt32.init))) else {
                throw HarnessError("no drill-down result")
            }
            return Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.valueHash) })
        }
        let want = try drill(&source)
        let have = try drill(&target)
        let differing = Set(want.keys).union(have.keys).filter { want[$0] != have[$0] }
        #expect(!differing.isEmpty)
        guard case .fetchResult(let entries) = try source.reply(.fetch(keys: Array(differing))) else {
            Issue.record("no fetch result")
            return
        }
        #expect(entries.count == differing.count)
        #expect(try target.reply(.patch(entries: entries)) == .patched(count: UInt32(entries.count)))
        #expect(target.currentDigest().buckets == sourceDigest.buckets)
        #expect(target.currentDigest().entryCount == sourceDigest.entryCount)

        // A value that does not decode is reported, not trapped on.
        let badPatch = [KeyValue(key: MapKey(map: "counters", key: [1]), value: [1, 2, 3])]
        guard case .error(.handlerFailed, _) = try target.reply(.patch(entries: badPatch)) else {
            Issue.record("an undecodable patch value was accepted")
            return
        }
    }

    @Test("messages a worker never accepts get unexpectedMessage; shutdown exits; downgrade is unsupported without one")
    func otherMessages() throws {
        var engine = ServiceEngine(service: LedgerService())
        for m: WireMessage in [
            .pong(nonce: 1, sequence: 1), .applied(ApplyResult(sequence: 1, response: [], touched: [], written: [])),
            .digest(DigestReport(sequence: 0, buckets: [], entryCount: 0)), .forkAck(forkID: 1), .error(code: .handlerFailed, message: "x"),
        ] {
            guard case .error(.unexpectedMessage, _) = try engine.reply(m) else {
                Issue.record("\(m) was accepted")
                continue
            }
        }
        guard case .error(.unsupported, _) = try engine.reply(.downgradeDigestRequest) else {
            Issue.record("downgrade without support")
            return
        }
        #expect(try engine.exchange(.helloAck(instanceID: 1)) == [])
        #expect(try engine.exchange(.prefetch(keys: [[1]])) == [])
        var output = ByteWriter()
        #expect(engine.handle(.shutdown, output: &output) == .exit)
        #expect(output.bytes.isEmpty)
        #expect(engine.handle(.ping(nonce: 1), output: &output) == .continue)

        let hello = ServiceEngine<LedgerService>.hello(pid: 77)
        #expect(hello == Hello(service: "ledger", version: "1.0.0", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false, pid: 77, comparisonRules: [:]))
    }

    @Test("a checkpoint input replies with the digest at that sequence point and changes nothing")
    func checkpoint() throws {
        var engine = ServiceEngine(service: LedgerService())
        _ = try engine.applyAll(ledgerRequests(count: 300, seed: 12))
        let before = engine.currentDigest()
        func checkpoint(_ sequence: UInt64, _ payload: [UInt8]) -> ApplyRequest {
            ApplyRequest(sequence: sequence, time: 5, seed: 0, tag: InputTag.checkpoint, payload: payload)
        }
        let results = try engine.applyAll([
            checkpoint(301, [1, 0, 0, 0]),  // this schema
            checkpoint(302, [0, 0, 0, 0]),  // another schema
            checkpoint(303, [0xFF, 0xFF, 0xFF, 0xFF]),  // UInt32.max: no trap
            checkpoint(304, []),  // no reference at all
        ])
        let digest = try DigestReport(encoded: results[0].response)
        #expect(digest == DigestReport(sequence: 301, buckets: before.buckets, entryCount: before.entryCount))
        #expect(results[1...].allSatisfy { $0.response.isEmpty })
        #expect(results.allSatisfy { $0.touched.isEmpty && $0.written.isEmpty })
        #expect(engine.lastSequence == 304)
        #expect(engine.currentDigest().buckets == before.buckets)
    }

    @Test("the deterministic random generator gives fixed values for a seed")
    func deterministicRandom() {
        var a = DeterministicRandom(seed: 42)
        var b = DeterministicRandom(seed: 42)
        let first = (0..<5).map { _ in a.next() }
        #expect(first == (0..<5).map { _ in b.next() })
        #expect(first == [1_546_998_764_402_558_742, 6_990_951_692_964_543_102, 12_544_586_762_248_559_009, 17_057_574_109_182_124_193, 18_295_552_978_065_317_476])
        var c = DeterministicRandom(seed: 43)
        #expect(c.next() != first[0])
        let context = RequestContext(sequence: 1, timeMillis: 2, seed: 42)
        var r = context.random
        #expect(r.next() == first[0])
    }
}
