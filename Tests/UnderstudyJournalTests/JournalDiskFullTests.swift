import Foundation
import Logging
import Testing
@_spi(Testing) import UnderstudyJournal

@Suite("Journal on a full disk")
struct JournalDiskFullTests {
    /// Appends and waits until the writer fails; returns the sequences acknowledged (durable) before that.
    private func fillUntilFailure(_ journal: Journal, payload: Int = 100) async throws -> (acknowledged: [UInt64], error: JournalError) {
        var acknowledged: [UInt64] = []
        var sequence: UInt64 = journal.lastSequence
        while true {
            do {
                sequence += 1
                try journal.append(testRecord(sequence, size: payload))
                try await journal.waitDurable(sequence)
                acknowledged.append(sequence)
            } catch let error as JournalError {
                return (acknowledged, error)
            }
        }
    }

    @Test("ENOSPC from the writer (simulated) fails waiters and appends and loses nothing acknowledged",
          arguments: FsyncPolicy.allCases)
    func simulatedDiskFull(policy: FsyncPolicy) async throws {
        try await withTemporaryDirectory { directory in
            var configuration = JournalConfiguration(fsync: policy, segmentSize: 4096)
            configuration.diskSpaceLimit = DiskSpaceLimit(bytes: 20_000)
            let capture = LogCapture()
            let journal = try Journal.open(directory: directory.path, configuration: configuration, logger: capture.logger())
            let (acknowledged, error) = try await fillUntilFailure(journal)
            #expect(error.code == .diskFull)
            #expect(error.errorNumber == ENOSPC)
            #expect(error.message.contains("disk full"))
            #expect(acknowledged.count >= 100 && acknowledged.count < 160)
            #expect(journalError { try journal.append(testRecord(journal.lastSequence + 1)) }?.code == .diskFull)
            #expect(capture.entries.contains { $0.level == .error })
            try journal.close()

            let reopened = try openJournal(directory, segmentSize: 4096)
            defer { try? reopened.close() }
            let records = try reopened.read(from: 1, maxCount: 1000)
            #expect(records.count >= acknowledged.count)
            #expect(Array(records.prefix(acknowledged.count)) == acknowledged.map { testRecord($0) })
        }
    }

    @Test("a real full tmpfs gives diskFull (root only)")
    func realTmpfs() async throws {
        try await withTemporaryDirectory { directory in
            let target = directory.file("small")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
            guard geteuid() == 0, mount("tmpfs", target, "tmpfs", 0, "size=256k") == 0 else {
                try Test.cancel("needs root and permission to mount a tmpfs")
            }
            defer { umount2(target, Int32(MNT_DETACH)) }
            let journal = try Journal.open(
                directory: target, configuration: JournalConfiguration(fsync: .always, segmentSize: 64 << 10),
                logger: quietLogger
            )
            let (acknowledged, error) = try await fillUntilFailure(journal, payload: 1000)
            #expect(error.code == .diskFull)
            #expect(acknowledged.count > 100)
            try? journal.close()
            // Free space, then every acknowledged record is still there.
            let segments = try FileManager.default.contentsOfDirectory(atPath: target).filter { $0.hasPrefix("segment-") }
            #expect(!segments.isEmpty)
            let reopened = try Journal.open(directory: target, configuration: JournalConfiguration(), logger: quietLogger)
            defer { try? reopened.close() }
            let records = try reopened.read(from: 1, maxCount: 10_000)
            #expect(Array(records.prefix(acknowledged.count)) == acknowledged.map { testRecord($0, size: 1000) })
        }
    }
}
