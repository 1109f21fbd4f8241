import Foundation
import Logging
import Testing
import UnderstudyJournal

@Suite("Journal snapshots")
struct JournalSnapshotTests {
    /// A tiny deterministic state machine: a running hash and a count of the records applied.
    struct Counter: Equatable {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var count: UInt64 = 0

        mutating func apply(_ record: JournalRecord) {
            for byte in record.payload + [record.tag] {
                self.hash = (self.hash ^ UInt64(byte)) &* 0x100_0000_01B3
            }
            self.hash ^= record.seed &+ UInt64(bitPattern: record.time)
            self.count += 1
        }

        var bytes: [UInt8] { withUnsafeBytes(of: (self.hash, self.count)) { Array($0) } }

        init() {}

        init(bytes: [UInt8]) {
            let (hash, count) = bytes.withUnsafeBytes { $0.loadUnaligned(as: (UInt64, UInt64).self) }
            self.hash = hash
            self.count = count
        }
    }

    private func replay(_ journal: Journal, onto state: inout Counter, from: UInt64) throws {
        var next = from
        while true {
            let batch = try journal.read(from: next, maxCount: 64)
            guard let last = batch.last else { return }
            for record in batch { state.apply(record) }
            next = last.sequence + 1
        }
    }

    private func snapshot(of records: ArraySlice<JournalRecord>) -> JournalSnapshot {
        var state = Counter()
        for record in records { state.apply(record) }
        return JournalSnapshot(service: "counter", schemaVersion: 1, sequence: records.last?.sequence ?? 0, data: state.bytes)
    }

    @Test("snapshot + truncation + replay equals replaying the full log; a corrupt newest snapshot falls back")
    func snapshotTruncationReplay() async throws {
        try await withTemporaryDirectory { directory in
            let records = (1...600).map { testRecord(UInt64($0), size: 40) }
            var full = Counter()
            for record in records { full.apply(record) }

            let journal = try openJournal(directory, fsync: .no, segmentSize: 2000)
            for record in records[..<300] { try journal.append(record) }
            try journal.writeSnapshot(snapshot(of: records[..<100]))
            #expect(try directory.segmentFiles().first == "segment-00000000000000000001.log", "one snapshot removes nothing")
            try journal.writeSnapshot(snapshot(of: records[..<250]))
            for record in records[300...] { try journal.append(record) }
            try journal.writeSnapshot(snapshot(of: records[..<400]))
            // Kept: 400 and 250; segments wholly at or below 250 are gone, 100's snapshot too.
            #expect(try directory.snapshotFiles() == [
                "snapshot-00000000000000000250.snap", "snapshot-00000000000000000400.snap",
            ])
            let oldest = try #require(try journal.read(from: 251, maxCount: 1).first?.sequence)
            #expect(oldest == 251)
            let firstSegment = try #require(try directory.segmentFiles().first)
            let firstKept = UInt64(firstSegment.dropFirst(8).prefix(20))!
            #expect(firstKept > 200 && firstKept <= 251)
            let unavailable = journalError { _ = try journal.read(from: 1, maxCount: 1) }
            #expect(unavailable?.code == .sequenceUnavailable)

            // Replaying from the newest snapshot gives the same state as the full log.
            let newest = try #require(try journal.newestSnapshot())
            #expect(newest.sequence == 400)
            var state = Counter(bytes: newest.data)
            try replay(journal, onto: &state, from: newest.sequence + 1)
            #expect(state == full)
            #expect(try journal.read(from: 401, maxCount: 1000) == Array(records[400...]))
            try journal.close()

            // Corrupt the newest snapshot: recovery rejects it loudly and falls back to the older one.
            let newestPath = directory.file("snapshot-00000000000000000400.snap")
            var bytes = try fileBytes(newestPath)
            bytes[bytes.count / 2] ^= 0x01
            try writeFileBytes(newestPath, bytes)
            let capture = LogCapture()
            let reopened = try openJournal(directory, fsync: .no, segmentSize: 2000, logger: capture.logger())
            defer { try? reopened.close() }
            let report = reopened.recoveryReport
            #expect(report.rejectedSnapshots.map(\.file) == ["snapshot-00000000000000000400.snap"])
            #expect(report.rejectedSnapshots.first?.reason.contains("checksum mismatch") == true)
            #expect(report.chosenSnapshot?.sequence == 250)
            #expect(report.description.contains("snapshot rejected: snapshot-00000000000000000400.snap"))
            #expect(capture.entries.contains { $0.level == .error && $0.metadata.contains("snapshot-00000000000000000400.snap") })
            #expect(reopened.lastSequence == 600)

            let fallback = try #require(try reopened.newestSnapshot())
            #expect(fallback.sequence == 250)
            #expect(fallback.service == "counter")
            #expect(reopened.snapshotRejections.count == 1)
            var fallbackState = Counter(bytes: fallback.data)
            try replay(reopened, onto: &fallbackState, from: fallback.sequence + 1)
            #expect(fallbackState == full)
        }
    }

    @Test("a snapshot may not run ahead of the journal; a snapshot-only directory continues after it")
    func snapshotSequenceRules() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory)
            try appendRecords(journal, 1...5)
            let ahead = journalError {
                try journal.writeSnapshot(JournalSnapshot(service: "s", schemaVersion: 1, sequence: 6, data: []))
            }
            #expect(ahead?.code == .sequenceOutOfOrder)
            try journal.writeSnapshot(JournalSnapshot(service: "s", schemaVersion: 3, sequence: 5, data: [1, 2, 3]))
            #expect(journal.durableSequence >= 5)
            try journal.close()

            // Only the snapshot is left (the segments were lost): the journal continues after it.
            for name in try directory.segmentFiles() { try FileManager.default.removeItem(atPath: directory.file(name)) }
            let reopened = try openJournal(directory)
            defer { try? reopened.close() }
            #expect(reopened.lastSequence == 5)
            #expect(reopened.recoveryReport.chosenSnapshot?.schemaVersion == 3)
            #expect(try reopened.newestSnapshot()?.data == [1, 2, 3])
            try reopened.append(testRecord(6))
            #expect(try reopened.read(from: 6, maxCount: 5) == [testRecord(6)])
        }
    }
}
