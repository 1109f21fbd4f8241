import Foundation
import Logging
import PostgresTestSupport
import Synchronization
import Testing
import UnderstudyJournal
import UnderstudyJournalPostgres

/// The PostgreSQL journal against a real server: the same semantics as the file journal (append, read from any
/// sequence, tail, snapshots, recovery), plus the lease and fencing, lost connections and the one-service rule.
@Suite(.serialized, .enabled(if: PostgresCluster.unavailableReason == nil, "PostgreSQL is not available: \(PostgresCluster.unavailableReason ?? "")"))
struct PostgresJournalTests {
    static let logger = Logger(label: "test")

    func record(_ seq: UInt64, _ text: String = "") -> JournalRecord {
        JournalRecord(sequence: seq, time: Int64(seq) * 10, seed: UInt64.max - seq, tag: 1, payload: Array((text.isEmpty ? "SET k \(seq)" : text).utf8))
    }

    func open(_ cluster: PostgresCluster, fsync: FsyncPolicy = .always) throws -> PostgresJournal {
        try PostgresJournal.open(
            address: try PostgresJournalAddress(parsing: cluster.url), configuration: PostgresJournalConfiguration(fsync: fsync, snapshotChunkBytes: 1 << 16),
            logger: Self.logger)
    }

    /// Opens a journal and makes it the active one.
    func openActive(_ cluster: PostgresCluster, holder: String = "a", leaseMs: Int = 10_000) throws -> (PostgresJournal, UInt64) {
        let journal = try open(cluster)
        let epoch = try #require(try journal.acquireLease(holder: holder, milliseconds: leaseMs))
        try journal.activate(epoch: epoch)
        return (journal, epoch)
    }

    @Test func appendReadAndRecoverAcrossReopen() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (journal, _) = try openActive(cluster)
        let durable = Mutex<UInt64>(0)
        journal.onDurable { seq in durable.withLock { $0 = max($0, seq) } }
        for seq in 1...500 as ClosedRange<UInt64> {
            try journal.append(record(seq), wakeWriter: seq % 50 == 0)
        }
        journal.wakeWriter()
        try journal.sync(through: 500)
        #expect(journal.durableSequence == 500)
        #expect(durable.withLock { $0 } == 500)
        // Reads from any point, across the batch boundaries.
        let middle = try journal.read(from: 123, maxCount: 10)
        #expect(middle.map(\.sequence) == Array(123...132))
        #expect(middle[0] == record(123))
        #expect(try journal.read(from: 501, maxCount: 10).isEmpty)
        // Out of order is refused, nothing appended.
        #expect(throws: JournalError.self) { try journal.append(record(502), wakeWriter: true) }
        try journal.close()

        let reopened = try open(cluster)
        defer { try? reopened.close() }
        #expect(reopened.lastSequence == 500)
        #expect(reopened.recoveryReport.recordCount == 500)
        let all = try reopened.read(from: 1, maxCount: 1000)
        #expect(all.count == 500)
        #expect(all.last == record(500))
        // Payloads are bytes, not text: every byte value survives.
        #expect(all.allSatisfy { $0.seed == UInt64.max - $0.sequence })
    }

    @Test func binaryAndLargePayloadsSurvive() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (journal, _) = try openActive(cluster)
        defer { try? journal.close() }
        let binary = JournalRecord(sequence: 1, time: -5, seed: 0, tag: 255, payload: (0...255).map { UInt8($0) } + [0, 0])
        let empty = JournalRecord(sequence: 2, time: 0, seed: 1, tag: 0, payload: [])
        let large = JournalRecord(sequence: 3, time: 1, seed: 2, tag: 3, payload: [UInt8](repeating: 0xAB, count: 3 << 20))
        for r in [binary, empty, large] { try journal.append(r, wakeWriter: true) }
        try journal.sync(through: 3)
        #expect(try journal.read(from: 1, maxCount: 3) == [binary, empty, large])
    }

    @Test func snapshotsAreChunkedCheckedAndPruneTheJournal() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (journal, _) = try openActive(cluster)
        defer { try? journal.close() }
        for seq in 1...300 as ClosedRange<UInt64> { try journal.append(record(seq), wakeWriter: false) }
        journal.wakeWriter()
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try journal.writeSnapshot(JournalSnapshot(service: "kv", schemaVersion: 2, sequence: 100, data: data))
        try journal.writeSnapshot(JournalSnapshot(service: "kv", schemaVersion: 2, sequence: 200, data: data.reversed()))
        // Two kept: nothing pruned yet past the older's sequence (100).
        #expect(journal.oldestSequence == 101)
        #expect(throws: JournalError.self) { try journal.read(from: 50, maxCount: 5) }
        #expect(try journal.read(from: 101, maxCount: 1).first?.sequence == 101)
        try journal.writeSnapshot(JournalSnapshot(service: "kv", schemaVersion: 2, sequence: 300, data: [1, 2, 3]))
        #expect(journal.oldestSequence == 201)
        let newest = try #require(try journal.newestSnapshot())
        #expect(newest.sequence == 300 && newest.data == [1, 2, 3] && newest.service == "kv" && newest.schemaVersion == 2)
        // A damaged chunk: the newest is rejected (and reported), the one before it is used.
        try cluster.psql("UPDATE understudy_snapshot_chunks SET data = '\\x00'::bytea WHERE seq = 300")
        let fallback = try #require(try journal.newestSnapshot())
        #expect(fallback.sequence == 200)
        #expect(fallback.data == Array(data.reversed()))
        #expect(journal.snapshotRejections.count == 1)
    }

    @Test func aStandbyAppendsNothingAndHearsTheTail() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (active, _) = try openActive(cluster)
        defer { try? active.close() }
        let standby = try open(cluster)
        defer { try? standby.close() }
        let heard = Mutex<UInt64>(0)
        standby.onTail { seq in heard.withLock { $0 = max($0, seq) } }
        #expect(throws: JournalError.self) { try standby.append(record(1), wakeWriter: true) }
        for seq in 1...40 as ClosedRange<UInt64> { try active.append(record(seq), wakeWriter: true) }
        try active.sync(through: 40)
        let deadline = Date().addingTimeInterval(10)
        while heard.withLock({ $0 }) < 40 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(heard.withLock { $0 } == 40)
        #expect(try standby.read(from: 1, maxCount: 100).count == 40)
    }

    @Test func aTakeoverFencesTheOldActive() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (old, oldEpoch) = try openActive(cluster, holder: "old", leaseMs: 300)
        defer { try? old.close() }
        let fenced = Mutex<JournalError?>(nil)
        old.onFenced { e in fenced.withLock { $0 = e } }
        for seq in 1...10 as ClosedRange<UInt64> { try old.append(record(seq), wakeWriter: true) }
        try old.sync(through: 10)

        let new = try open(cluster)
        defer { try? new.close() }
        // Not while the lease runs.
        #expect(try new.acquireLease(holder: "new", milliseconds: 5000) == nil)
        Thread.sleep(forTimeInterval: 0.4)
        let newEpoch = try #require(try new.acquireLease(holder: "new", milliseconds: 5000))
        #expect(newEpoch == oldEpoch + 1)
        #expect(try new.activate(epoch: newEpoch) == 10)
        #expect(try old.renewLease(epoch: oldEpoch, milliseconds: 300) == false)

        // The old active's next append is refused by the database, never acknowledged.
        try old.append(record(11, "SET lost 1"), wakeWriter: true)
        #expect(throws: JournalError.self) { try old.sync(through: 11) }
        #expect(fenced.withLock { $0 }?.code == .fenced)
        #expect(old.durableSequence == 10)
        #expect(throws: JournalError.self) { try old.append(record(11), wakeWriter: true) }

        try new.append(record(11, "SET kept 1"), wakeWriter: true)
        try new.sync(through: 11)
        #expect(try new.read(from: 11, maxCount: 5).map { String(decoding: $0.payload, as: UTF8.self) } == ["SET kept 1"])
        #expect(try cluster.psql("SELECT count(*) FROM understudy_journal WHERE epoch = \(oldEpoch)").trimmingCharacters(in: .whitespacesAndNewlines) == "10")
        let lease = try #require(try new.inspectLease())
        #expect(lease.epoch == newEpoch && lease.holder == "new" && lease.remainingMilliseconds > 0)
    }

    @Test func aLostConnectionNeitherLosesNorDuplicates() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let (journal, _) = try openActive(cluster)
        defer { try? journal.close() }
        for seq in 1...200 as ClosedRange<UInt64> {
            try journal.append(record(seq), wakeWriter: true)
            if seq % 40 == 0 {
                // Cut the writer's connection from the server side, mid-stream.
                try cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'understudy journal writer'")
            }
        }
        try journal.sync(through: 200)
        let counts = try cluster.psql("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM understudy_journal").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(counts == "200|200|1|200")
    }

    @Test func oneServicePerDatabaseAndANewerSchemaIsRefused() throws {
        let cluster = try PostgresCluster.start()
        defer { cluster.destroy() }
        let journal = try open(cluster)
        try journal.claim(service: "kv")
        try journal.claim(service: "kv")
        #expect {
            try journal.claim(service: "ledger")
        } throws: { ($0 as? JournalError)?.code == .wrongService }
        try journal.close()
        try cluster.psql("UPDATE understudy_meta SET value = '99' WHERE key = 'schema_version'")
        #expect {
            _ = try open(cluster)
        } throws: { "\($0)".contains("schema version 99") }
    }

    @Test func anUnreachableServerIsAClearError() throws {
        let address = try PostgresJournalAddress(parsing: "postgres://nobody@127.0.0.1:1/none")
        #expect {
            _ = try PostgresJournal.open(address: address, configuration: PostgresJournalConfiguration(fsync: .always), logger: Self.logger)
        } throws: { error in
            (error as? JournalError)?.code == .database && "\(error)".contains("127.0.0.1:1")
        }
    }

    @Test func addressesParseAndHideTheirPassword() throws {
        let a = try PostgresJournalAddress(parsing: "postgres://alice:s%40cret@db.example:6543/jobs", environment: [:])
        #expect(a.user == "alice" && a.password == "s@cret" && a.host == "db.example" && a.port == 6543 && a.database == "jobs")
        #expect(a.description == "postgres://alice@db.example:6543/jobs")
        let b = try PostgresJournalAddress(parsing: "postgresql://bob@[::1]/d", environment: ["PGPASSWORD": "pw"])
        #expect(b.host == "::1" && b.port == 5432 && b.password == "pw")
        for bad in ["http://x@y/z", "postgres://host/db", "postgres://u@h:99999/db", "postgres://u@h:5432/", "postgres://u@h"] {
            #expect(throws: PostgresJournalAddressError.self) { _ = try PostgresJournalAddress(parsing: bad, environment: [:]) }
        }
    }
}
