import Foundation
import Logging
import Testing
import UnderstudyJournal

@Suite("Journal recovery")
struct JournalRecoveryTests {
    /// Writes records 1...count (payload `size`) with fsync always and returns the single segment's path.
    private func makeJournal(_ directory: TemporaryDirectory, count: UInt64, size: Int = 100, segmentSize: Int = 64 << 20) throws -> String {
        let journal = try openJournal(directory, fsync: .always, segmentSize: segmentSize)
        try appendRecords(journal, 1...count, size: size)
        try journal.close()
        return directory.file(try directory.segmentFiles().last!)
    }

    /// The offset of record `sequence` in a single-segment journal of `testRecord(_, size:)` records.
    private func offset(of sequence: UInt64, size: Int = 100) -> Int { Int(sequence - 1) * (recordOverhead + size) }

    @Test("a torn tail of every length inside the last record recovers to the previous record")
    func tornTailEveryLength() async throws {
        try await withTemporaryDirectory { directory in
            let segment = try makeJournal(directory, count: 5)
            let original = try fileBytes(segment)
            let previousEnd = offset(of: 5)
            #expect(original.count == offset(of: 6))
            for length in (previousEnd + 1)..<original.count {
                try writeFileBytes(segment, Array(original[..<length]))
                let journal = try openJournal(directory, fsync: .always)
                let report = journal.recoveryReport
                #expect(journal.lastSequence == 4, "length \(length)")
                let torn = try #require(report.tornTail, "length \(length)")
                #expect(torn.bytesDropped == length - previousEnd)
                #expect(torn.offset == previousEnd)
                #expect(torn.file == "segment-00000000000000000001.log")
                #expect(report.description.contains("torn tail cut: \(length - previousEnd) byte(s) dropped"))
                #expect(try fileBytes(segment).count == previousEnd)
                #expect(try journal.read(from: 1, maxCount: 10) == (1...4).map { testRecord($0) })
                // Appending continues where the valid records end.
                try journal.append(testRecord(5))
                try journal.close()
                #expect(try fileBytes(segment) == original)
            }
        }
    }

    @Test("a checksum mismatch in the very last record, or zeros after it, is a torn tail")
    func tornTailChecksumAndZeros() async throws {
        try await withTemporaryDirectory { directory in
            let segment = try makeJournal(directory, count: 5)
            var bytes = try fileBytes(segment)
            let original = bytes
            bytes[offset(of: 5) + 50] ^= 0x10
            try writeFileBytes(segment, bytes)
            var journal = try openJournal(directory)
            #expect(journal.lastSequence == 4)
            #expect(journal.recoveryReport.tornTail?.bytesDropped == 133)
            #expect(journal.recoveryReport.tornTail?.reason.contains("checksum mismatch") == true)
            try journal.close()

            // A file extended with zeros (as after a power loss) is cut back to the last record.
            try writeFileBytes(segment, original + [UInt8](repeating: 0, count: 4096))
            journal = try openJournal(directory)
            #expect(journal.lastSequence == 5)
            #expect(journal.recoveryReport.tornTail?.bytesDropped == 4096)
            try journal.close()
            #expect(try fileBytes(segment) == original)
        }
    }

    @Test("a bit flip in a middle record is refused precisely; truncateCorruption discards from there", arguments: [
        50, // payload
        2,  // length field
        6,  // sequence field
    ])
    func bitFlipInMiddle(byteInRecord: Int) async throws {
        try await withTemporaryDirectory { directory in
            let segment = try makeJournal(directory, count: 10)
            var bytes = try fileBytes(segment)
            let corruptAt = offset(of: 5)
            bytes[corruptAt + byteInRecord] ^= 0x04
            try writeFileBytes(segment, bytes)

            let error = try #require(journalError { _ = try openJournal(directory) })
            #expect(error.code == .corruptRecord)
            #expect(error.file == "segment-00000000000000000001.log")
            #expect(error.offset == Int64(corruptAt))
            #expect(error.sequence == 5)
            #expect(error.message.contains("truncateCorruption"))
            #expect(error.message.contains("from sequence 5 on (through 10, \(bytes.count - corruptAt) bytes)"))
            #expect(try fileBytes(segment) == bytes, "a refused open must not change the file")

            let capture = LogCapture()
            let journal = try openJournal(directory, truncateCorruption: true, logger: capture.logger())
            let discarded = try #require(journal.recoveryReport.discarded)
            #expect(discarded.file == "segment-00000000000000000001.log")
            #expect(discarded.offset == corruptAt)
            #expect(discarded.firstSequence == 5)
            #expect(discarded.lastSequence == 10)
            #expect(discarded.bytes == bytes.count - corruptAt)
            #expect(journal.recoveryReport.description.contains("discarded sequences 5...10"))
            #expect(capture.entries.contains { $0.level == .error && $0.message.contains("corruption truncated") })
            #expect(journal.lastSequence == 4)
            try appendRecords(journal, 5...12)
            try journal.close()

            let reopened = try openJournal(directory)
            defer { try? reopened.close() }
            #expect(reopened.recoveryReport.discarded == nil)
            #expect(try reopened.read(from: 1, maxCount: 100) == (1...12).map { testRecord($0) })
        }
    }

    @Test("corruption at the end of a non-last segment is refused; truncateCorruption deletes later segments")
    func corruptionBeforeLaterSegments() async throws {
        try await withTemporaryDirectory { directory in
            _ = try makeJournal(directory, count: 40, size: 50, segmentSize: 1000)
            let segments = try directory.segmentFiles()
            #expect(segments.count == 4)
            // Damage the last record of the first segment (records 1...13, 83 bytes each).
            let first = directory.file(segments[0])
            var bytes = try fileBytes(first)
            bytes[bytes.count - 1] ^= 0xFF
            try writeFileBytes(first, bytes)

            let error = try #require(journalError { _ = try openJournal(directory, segmentSize: 1000) })
            #expect(error.code == .corruptRecord)
            #expect(error.file == segments[0])
            #expect(error.offset == Int64(12 * 83))
            #expect(error.sequence == 13)

            let journal = try openJournal(directory, segmentSize: 1000, truncateCorruption: true)
            let discarded = try #require(journal.recoveryReport.discarded)
            #expect(discarded.firstSequence == 13)
            #expect(discarded.lastSequence == 40)
            #expect(discarded.deletedFiles == Array(segments[1...]))
            #expect(journal.lastSequence == 12)
            #expect(try directory.segmentFiles() == [segments[0]])
            try appendRecords(journal, 13...20, size: 50)
            #expect(try journal.read(from: 1, maxCount: 100).map(\.sequence) == Array(1...20))
            try journal.close()
        }
    }

    @Test("a missing segment is a sequence gap naming the file")
    func missingSegmentIsGap() async throws {
        try await withTemporaryDirectory { directory in
            _ = try makeJournal(directory, count: 40, size: 50, segmentSize: 1000)
            let segments = try directory.segmentFiles()
            try FileManager.default.removeItem(atPath: directory.file(segments[1]))
            let error = try #require(journalError { _ = try openJournal(directory) })
            #expect(error.code == .sequenceGap)
            #expect(error.file == segments[2])
            #expect(error.offset == 0)
            #expect(error.sequence == 14)
            #expect(error.foundSequence == 27)
            let journal = try openJournal(directory, truncateCorruption: true)
            defer { try? journal.close() }
            #expect(journal.lastSequence == 13)
            #expect(journal.recoveryReport.discarded?.firstSequence == 14)
            #expect(journal.recoveryReport.discarded?.lastSequence == 40)
        }
    }
}
