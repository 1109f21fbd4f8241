import NIOCore
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("Sequencer and input log")
struct SequencerTests {
    @Test("numbers follow the journal's last record, are taken only on commit, and times never go backwards")
    func sequencing() {
        var s = Sequencer(after: 41, seed: 7)
        #expect(s.nextSequence == 42 && s.lastSequence == 41)
        let a = s.next(tag: InputTag.resp, payload: [1], nowMillis: 1_000)
        #expect(a.sequence == 42 && a.time == 1_000 && a.tag == InputTag.resp && a.payload == [1])
        // Not committed (the journal refused it): the same number again, and no gap.
        let again = s.next(tag: InputTag.tick, payload: [], nowMillis: 900)
        #expect(again.sequence == 42)
        #expect(again.time == 1_000, "the clock went back; the journaled time did not")
        #expect(again.seed != a.seed)
        s.commit()
        let b = s.next(tag: InputTag.resp, payload: [], nowMillis: 2_000)
        s.commit()
        #expect(b.sequence == 43 && b.time == 2_000)
        #expect(s.lastSequence == 43)
    }

    @Test("the same seed gives the same seeds (the seeds are journaled; this only keeps tests reproducible)")
    func seeds() {
        var x = Sequencer(after: 0, seed: 99)
        var y = Sequencer(after: 0, seed: 99)
        for _ in 0..<10 {
            #expect(x.next(tag: 1, payload: [], nowMillis: 0).seed == y.next(tag: 1, payload: [], nowMillis: 0).seed)
        }
    }

    func entry(_ seq: UInt64, released: Bool = false) -> InputLog.Entry {
        var e = InputLog.Entry(request: ApplyRequest(sequence: seq, time: 0, seed: 0, tag: 1, payload: []), sink: nil, enqueuedAt: .now())
        e.released = released
        return e
    }

    @Test("the log finds entries by sequence number, trims from the front only, and keeps its base")
    func log() {
        var log = InputLog(first: 10)
        #expect(log.index(of: 10) == nil && log.count == 0)
        for seq in UInt64(10)..<20 { log.append(entry(seq, released: seq < 15)) }
        #expect(log.count == 10)
        #expect(log.index(of: 9) == nil && log.index(of: 20) == nil)
        #expect(log[log.index(of: 17)!].request.sequence == 17)
        log.trim { $0.released }
        #expect(log.base == 15 && log.count == 5)
        #expect(log.index(of: 14) == nil)
        #expect(log[log.index(of: 15)!].request.sequence == 15)
        log[log.index(of: 16)!].released = true
        log.trim { $0.released }
        #expect(log.base == 15, "an unreleased entry at the front stops the trim")
        log.trim { _ in true }
        #expect(log.count == 0 && log.base == 20)
        log.append(entry(20))
        #expect(log.index(of: 20) != nil)
    }

    @Test("a window that grew in a burst gives its storage back once drained, keeping every entry and its base")
    func logShrinks() {
        var log = InputLog(first: 1)
        for seq in UInt64(1)...200_000 { log.append(entry(seq)) }
        #expect(log.capacity >= 200_000)
        log.trim { $0.request.sequence <= 199_000 }
        #expect(log.base == 199_001 && log.count == 1_000)
        #expect(log.capacity < 16_384, "capacity \(log.capacity) kept after draining")
        #expect(log[log.index(of: 199_001)!].request.sequence == 199_001)
        #expect(log[log.index(of: 200_000)!].request.sequence == 200_000)
        #expect(log.index(of: 199_000) == nil && log.index(of: 200_001) == nil)
        log.append(entry(200_001))
        #expect(log[log.index(of: 200_001)!].request.sequence == 200_001)
    }
}

@Suite("Snapshot schedule")
struct SnapshotScheduleTests {
    let schedule = SnapshotSchedule(everyRecords: 1000, interval: .seconds(60), minimumSpacing: .seconds(1))
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func situation(
        head: UInt64, last: UInt64 = 0, requested: UInt64 = 0, since: TimeAmount = .seconds(5), inProgress: Bool = false,
        sourceLive: Bool = true, catchingUp: Bool = false
    ) -> SnapshotSchedule.Situation {
        .init(
            now: t0, head: head, lastSnapshotSequence: last, lastRequestSequence: requested, lastSnapshotAt: t0 - since,
            inProgress: inProgress, sourceLive: sourceLive, standbyCatchingUp: catchingUp)
    }

    @Test("due after N inputs or after the interval with changes; never twice for the same inputs")
    func due() {
        #expect(schedule.isDue(situation(head: 1000)))
        #expect(!schedule.isDue(situation(head: 999)))
        #expect(schedule.isDue(situation(head: 5, last: 4, since: .seconds(61))))
        #expect(!schedule.isDue(situation(head: 4, last: 4, since: .seconds(61))), "nothing changed since the last snapshot")
        // A lagging source: the last written snapshot is old, but one was already asked for at this head.
        #expect(!schedule.isDue(situation(head: 1500, last: 100, requested: 1200)))
        #expect(schedule.isDue(situation(head: 2200, last: 100, requested: 1200)))
    }

    @Test("never thrashes: one at a time, spaced, never while a standby catches up, only from a live source")
    func neverThrashes() {
        #expect(!schedule.isDue(situation(head: 5000, inProgress: true)))
        #expect(!schedule.isDue(situation(head: 5000, since: .milliseconds(999))))
        #expect(!schedule.isDue(situation(head: 5000, catchingUp: true)))
        #expect(!schedule.isDue(situation(head: 5000, sourceLive: false)))
    }

    @Test("chunks: 1 MiB pieces, the last carries the checksum; an empty snapshot is one empty final chunk")
    func chunks() {
        let data = (0..<(2 * 1024 + 5)).map { UInt8(truncatingIfNeeded: $0) }
        let chunks = Snapshotter.chunks(data, sequence: 9, schemaVersion: 2, chunkSize: 1024)
        #expect(chunks.map(\.data.count) == [1024, 1024, 5])
        #expect(chunks.map(\.isFinal) == [false, false, true])
        #expect(chunks.last?.checksum == StableHasher.hash(data))
        #expect(Set(chunks.map(\.streamID)).count == 1)
        #expect(chunks.flatMap(\.data) == data)
        let empty = Snapshotter.chunks([], sequence: 1, schemaVersion: 1)
        #expect(empty.count == 1 && empty[0].isFinal && empty[0].data.isEmpty)
    }
}

@Suite("Instance roster")
struct RosterTests {
    final class Member: RosterMember {
        var role: InstanceRole
        var phase: WorkerInstance.Phase
        var version: String
        var schemaVersion: UInt32?
        init(_ role: InstanceRole, _ phase: WorkerInstance.Phase, _ version: String, schema: UInt32 = 1) {
            self.role = role
            self.phase = phase
            self.version = version
            self.schemaVersion = schema
        }
    }

    @Test("failover prefers a replaying same-version shadow, then the probation instance, never a dead or restoring one")
    func failoverTarget() {
        let dead = Member(.shadow, .dead("x"), "1")
        let restoring = Member(.shadow, .restoring, "1")
        let candidate = Member(.candidate, .live, "2")
        let probation = Member(.probation, .live, "1")
        let shadow1 = Member(.shadow, .catchingUp, "1")
        let shadow2 = Member(.shadow, .live, "2")
        #expect(Roster.failoverTarget(primaryVersion: "1", standbys: [dead, restoring, candidate, probation, shadow1]) === shadow1)
        #expect(Roster.failoverTarget(primaryVersion: "2", standbys: [probation, shadow1]) === probation)
        #expect(Roster.failoverTarget(primaryVersion: "3", standbys: [shadow2, candidate]) === shadow2)
        #expect(Roster.failoverTarget(primaryVersion: "1", standbys: [dead, restoring, candidate]) == nil, "a candidate is never a failover target")
    }

    @Test("snapshots come only from a live shadow of the primary's version and schema")
    func snapshotSource() {
        let catching = Member(.shadow, .catchingUp, "1")
        let other = Member(.shadow, .live, "1", schema: 2)
        let good = Member(.shadow, .live, "1", schema: 1)
        #expect(Roster.snapshotSource(primaryVersion: "1", primarySchema: 1, standbys: [catching, other, good]) === good)
        #expect(Roster.snapshotSource(primaryVersion: "1", primarySchema: 1, standbys: [catching, other]) == nil)
    }

    @Test("health: ping when none is out, re-arm on progress, hung only without progress past the timeout")
    func health() {
        let t = NIODeadline.uptimeNanoseconds(10_000_000_000)
        #expect(Roster.health(outstandingPing: nil, applied: 5, now: t, hangTimeout: .seconds(5)) == .ping)
        #expect(Roster.health(outstandingPing: (t - .seconds(9), 4), applied: 5, now: t, hangTimeout: .seconds(5)) == .rearm)
        #expect(Roster.health(outstandingPing: (t - .seconds(4), 5), applied: 5, now: t, hangTimeout: .seconds(5)) == .wait)
        #expect(Roster.health(outstandingPing: (t - .seconds(6), 5), applied: 5, now: t, hangTimeout: .seconds(5)) == .hung)
    }

    @Test("the request deadline watches one input and kills only when that same input outlasts it")
    func deadline() {
        let t = NIODeadline.uptimeNanoseconds(10_000_000_000)
        #expect(Roster.deadline(executing: nil, watched: (3, t - .seconds(60)), now: t, deadline: .seconds(5)) == .idle)
        #expect(Roster.deadline(executing: 3, watched: nil, now: t, deadline: .seconds(5)) == .watch(sequence: 3))
        #expect(Roster.deadline(executing: 4, watched: (3, t - .seconds(60)), now: t, deadline: .seconds(5)) == .watch(sequence: 4))
        #expect(Roster.deadline(executing: 3, watched: (3, t - .seconds(4)), now: t, deadline: .seconds(5)) == .wait)
        #expect(Roster.deadline(executing: 3, watched: (3, t - .seconds(5)), now: t, deadline: .seconds(5)) == .kill(sequence: 3))
    }
}
