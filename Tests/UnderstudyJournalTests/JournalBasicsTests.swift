import Foundation
import Synchronization
import Testing
import UnderstudyJournal

@Suite("Journal appending and reading")
struct JournalBasicsTests {
    @Test("append, read back before and after the writer, reopen", arguments: FsyncPolicy.allCases)
    func appendReadReopen(policy: FsyncPolicy) async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: policy)
            #expect(journal.lastSequence == 0)
            try appendRecords(journal, 1...500)
            #expect(journal.lastSequence == 500)
            // Readable at once, whether or not the writer has written it yet.
            #expect(try journal.read(from: 1, maxCount: 1000) == (1...500).map { testRecord($0) })
            try await journal.waitDurable(500)
            #expect(journal.durableSequence == 500)
            #expect(try journal.read(from: 250, maxCount: 3) == (250...252).map { testRecord($0) })
            #expect(try journal.read(from: 501, maxCount: 10).isEmpty)
            try journal.close()
            try journal.close()  // idempotent

            let reopened = try openJournal(directory, fsync: policy)
            defer { try? reopened.close() }
            #expect(reopened.lastSequence == 500)
            #expect(reopened.recoveryReport.recordCount == 500)
            #expect(reopened.recoveryReport.tornTail == nil)
            #expect(try reopened.read(from: 1, maxCount: 1000) == (1...500).map { testRecord($0) })
            try reopened.append(testRecord(501))
            #expect(try reopened.read(from: 500, maxCount: 10).map(\.sequence) == [500, 501])
        }
    }

    @Test("out-of-order sequence numbers are refused")
    func outOfOrder() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory)
            defer { try? journal.close() }
            try journal.append(testRecord(1))
            let skipped = journalError { try journal.append(testRecord(3)) }
            #expect(skipped?.code == .sequenceOutOfOrder)
            #expect(skipped?.sequence == 2)
            #expect(skipped?.foundSequence == 3)
            #expect(journalError { try journal.append(testRecord(1)) }?.code == .sequenceOutOfOrder)
            try journal.append(testRecord(2))
            #expect(journal.lastSequence == 2)
        }
    }

    @Test("appends after close fail with closed; waiters too")
    func closed() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: .always)
            try appendRecords(journal, 1...3)
            try journal.close()
            #expect(journalError { try journal.append(testRecord(4)) }?.code == .closed)
            try await journal.waitDurable(3)  // flushed by close
            await #expect(throws: JournalError.self) { try await journal.waitDurable(4) }
        }
    }

    @Test("segments roll over at the configured size and reads cross them")
    func rollOver() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: .no, segmentSize: 1000)
            try appendRecords(journal, 1...200, size: 50)
            try await journal.waitDurable(200)
            let all = (1...200).map { testRecord($0, size: 50) }
            #expect(try journal.read(from: 1, maxCount: 1000) == all)
            #expect(try journal.read(from: 77, maxCount: 40) == Array(all[76..<116]))
            try journal.close()

            let segments = try directory.segmentFiles()
            // 83-byte records, a segment takes records while it is under 1000 bytes: 13 records per segment.
            #expect(segments.count == 16)
            #expect(segments.first == "segment-00000000000000000001.log")
            #expect(segments[1] == "segment-00000000000000000014.log")
            for name in segments.dropLast() {
                let size = try fileBytes(directory.file(name)).count
                #expect(size >= 1000 && size < 1000 + 83)
            }

            let reopened = try openJournal(directory, fsync: .no, segmentSize: 1000)
            defer { try? reopened.close() }
            #expect(reopened.recoveryReport.segmentsScanned == 16)
            #expect(try reopened.read(from: 1, maxCount: 1000) == all)
            #expect(try reopened.read(from: 190, maxCount: 1000) == Array(all[189...]))
            try appendRecords(reopened, 201...260, size: 50)
            #expect(try reopened.read(from: 195, maxCount: 1000).map(\.sequence) == Array(195...260))
        }
    }

    @Test("reads deep into large segments use the sparse index")
    func sparseIndex() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: .no, segmentSize: 1 << 20)
            try appendRecords(journal, 1...30_000)
            try await journal.waitDurable(30_000)
            for start: UInt64 in [1, 999, 12_345, 20_000, 29_999] {
                #expect(try journal.read(from: start, maxCount: 3).map(\.sequence) == Array(start..<min(start + 3, 30_001)))
            }
            try journal.close()
            let reopened = try openJournal(directory, fsync: .no, segmentSize: 1 << 20)
            defer { try? reopened.close() }
            #expect(try reopened.read(from: 17_777, maxCount: 2) == [testRecord(17_777), testRecord(17_778)])
            #expect(try reopened.read(from: 1, maxCount: 30_000).count == 30_000)
        }
    }

    @Test("follow yields existing records, then new appends, and ends on close")
    func follow() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, segmentSize: 2000)
            try appendRecords(journal, 1...10)
            let received = try await withThrowingTaskGroup(of: [UInt64].self) { group in
                group.addTask {
                    var sequences: [UInt64] = []
                    for try await record in journal.follow(from: 5) {
                        #expect(record == testRecord(record.sequence))
                        sequences.append(record.sequence)
                    }
                    return sequences
                }
                for sequence: UInt64 in 11...60 {
                    try journal.append(testRecord(sequence))
                    if sequence % 10 == 0 { try await Task.sleep(for: .milliseconds(5)) }
                }
                try await Task.sleep(for: .milliseconds(50))
                try journal.close()
                return try await group.next()!
            }
            #expect(received == Array(5...60))
        }
    }

    @Test("onDurable reports each advance; waitDurable resumes for every policy", arguments: FsyncPolicy.allCases)
    func durability(policy: FsyncPolicy) async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: policy)
            let seen = Recorder<UInt64>()
            journal.onDurable { sequence in seen.append(sequence) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                let counter = SequenceCounter()
                for _ in 0..<16 {
                    group.addTask {
                        for _ in 0..<50 {
                            let sequence = try counter.appendNext(to: journal) { testRecord($0) }
                            try await journal.waitDurable(sequence)
                            #expect(journal.durableSequence >= sequence)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(journal.durableSequence == 800)
            let values = seen.values
            #expect(values.last == 800)
            #expect(values == values.sorted())
            try journal.close()
        }
    }
}

@Suite("Journal deferred wake-ups and fsync reports")
struct JournalDeferredTests {
    @Test("deferred appends become durable after one wakeWriter, and every fsync reports its group", arguments: [FsyncPolicy.always, .everysec])
    func deferredAppends(policy: FsyncPolicy) async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: policy)
            let syncs = Recorder<JournalSync>()
            journal.onSync { syncs.append($0) }
            // Five bursts, each woken once (as the supervisor does once per event-loop turn).
            var next: UInt64 = 1
            for burst in 1...5 {
                for _ in 0..<(burst * 40) {
                    try journal.appendDeferred(testRecord(next))
                    next += 1
                }
                journal.wakeWriter()
                try await journal.waitDurable(next - 1)
                #expect(journal.durableSequence >= next - 1)
            }
            #expect(try journal.read(from: 1, maxCount: 1000) == (1..<next).map { testRecord($0) })
            try journal.close()  // close fsyncs what is left
            let reports = syncs.values
            #expect(!reports.isEmpty)
            // The fsync reports account for every record exactly once, with their bytes.
            #expect(reports.reduce(0) { $0 + $1.records } == next - 1)
            #expect(reports.reduce(0) { $0 + $1.bytes } == Int(next - 1) * (recordOverhead + 100))
            if policy == .always {
                // Group commit: fewer fsyncs than records.
                #expect(reports.count < Int(next - 1))
            }
        }
    }

    @Test("records appended without a wake-up are still written by close, and a reopen finds them")
    func deferredThenClose() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, fsync: .no)
            for sequence in UInt64(1)...25 { try journal.appendDeferred(testRecord(sequence)) }
            try journal.close()
            let reopened = try openJournal(directory)
            #expect(reopened.lastSequence == 25)
            #expect(try reopened.read(from: 1, maxCount: 100) == (1...25).map { testRecord($0) })
            try reopened.close()
        }
    }
}

@Suite("Journal followers")
struct JournalFollowerTests {
    @Test("cancelling a follower ends its stream without closing the journal")
    func cancelFollower() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory)
            defer { try? journal.close() }
            try appendRecords(journal, 1...3)
            let task = Task {
                var count = 0
                for try await _ in journal.follow(from: 1) { count += 1 }
                return count
            }
            try await Task.sleep(for: .milliseconds(50))
            task.cancel()
            #expect(try await task.value == 3)
            try journal.append(testRecord(4))
            #expect(journal.lastSequence == 4)
        }
    }

    @Test("following from a removed sequence throws sequenceUnavailable")
    func followRemoved() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try openJournal(directory, segmentSize: 500)
            defer { try? journal.close() }
            try appendRecords(journal, 1...50)
            try journal.writeSnapshot(JournalSnapshot(service: "s", schemaVersion: 1, sequence: 20, data: []))
            try journal.writeSnapshot(JournalSnapshot(service: "s", schemaVersion: 1, sequence: 40, data: []))
            var iterator = journal.follow(from: 1).makeAsyncIterator()
            await #expect(throws: JournalError.self) { _ = try await iterator.next() }
        }
    }
}
