import Testing
import UnderstudyWire

@testable import UnderstudyJournal

@Suite("Journal record size limit")
struct JournalLimitsTests {
    @Test("the limit is the one the front-end and the worker frames use")
    func sharedLimit() {
        #expect(JournalConfiguration().maximumPayloadSize == UnderstudyLimits.maxInputBytes)
        #expect(RecordCodec.maxPayload == UnderstudyLimits.maxInputBytes)
        // A record of the largest input, header and checksum included, still has a UInt32 length and fits 1 GiB.
        #expect(RecordCodec.encodedSize(payloadCount: UnderstudyLimits.maxInputBytes) <= 1 << 30)
    }

    @Test("a payload over the limit is a thrown recordTooLarge that leaves the journal as it was")
    func tooLarge() async throws {
        try await withTemporaryDirectory { directory in
            let journal = try Journal.open(
                directory: directory.path, configuration: JournalConfiguration(maximumPayloadSize: 1000),
                logger: quietLogger)
            try journal.append(JournalRecord(sequence: 1, time: 1, seed: 1, tag: 1, payload: Array(repeating: 1, count: 1000)))
            let error = journalError {
                try journal.append(JournalRecord(sequence: 2, time: 2, seed: 2, tag: 1, payload: Array(repeating: 2, count: 1001)))
            }
            #expect(error?.code == .recordTooLarge)
            #expect(error?.sequence == 2)
            #expect(error?.message.contains("1001 bytes") == true)
            #expect(error?.message.contains("maximum of 1000 bytes") == true)
            #expect(journal.lastSequence == 1)
            // The journal is not failed: the same sequence number is appended next, and everything reads back.
            try journal.append(JournalRecord(sequence: 2, time: 2, seed: 2, tag: 1, payload: [2]))
            try journal.close()
            let reopened = try Journal.open(directory: directory.path, configuration: JournalConfiguration(), logger: quietLogger)
            defer { try? reopened.close() }
            #expect(try reopened.read(from: 1, maxCount: 10).map(\.payload.count) == [1000, 1])
        }
    }
}
