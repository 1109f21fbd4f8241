import Foundation
import Testing
import UnderstudyJournal

@Suite("Journal crash recovery")
struct JournalCrashTests {
    /// Runs `journal-crash-writer` on `directory`, SIGKILLs it after `delay`, and returns the sequences it acknowledged.
    private func runAndKill(_ writer: String, directory: String, delay: Duration) async throws -> (ready: UInt64?, acknowledged: [UInt64]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: writer)
        process.arguments = [directory, "30"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        try await Task.sleep(for: delay)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal, "the writer must still be running when killed")
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        var ready: UInt64?
        var acknowledged: [UInt64] = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("ready ") {
                ready = UInt64(line.dropFirst(6))
            } else if let sequence = UInt64(line) {
                acknowledged.append(sequence)
            } else {
                Issue.record("unexpected writer output: \(line)")
            }
        }
        return (ready, acknowledged)
    }

    @Test("SIGKILL at random moments never loses an acknowledged record", .timeLimit(.minutes(1)))
    func killRepeatedly() async throws {
        let writer = try #require(crashWriterPath(), "journal-crash-writer must be built beside the tests")
        try await withTemporaryDirectory("crash") { directory in
            var generator = SystemRandomNumberGenerator()
            var highestAcknowledged: UInt64 = 0
            var totalAcknowledged = 0
            var tornTails = 0
            for round in 0..<24 {
                let delay = Duration.milliseconds(Int.random(in: 40...220, using: &generator))
                let (ready, acknowledged) = try await runAndKill(writer, directory: directory.path, delay: delay)
                if let ready { #expect(ready >= highestAcknowledged, "round \(round): the writer resumed below an ack") }
                totalAcknowledged += acknowledged.count
                highestAcknowledged = max(highestAcknowledged, acknowledged.max() ?? 0)

                let journal = try openJournal(directory, fsync: .always)
                defer { try? journal.close() }
                if journal.recoveryReport.tornTail != nil { tornTails += 1 }
                #expect(journal.recoveryReport.discarded == nil)
                #expect(journal.lastSequence >= highestAcknowledged, "round \(round): acknowledged records are missing")
                // Every record present, acknowledged or not, is intact and in order.
                var next: UInt64 = 1
                while next <= journal.lastSequence {
                    let batch = try journal.read(from: next, maxCount: 4096)
                    for record in batch where record != crashRecord(record.sequence) {
                        Issue.record("round \(round): record \(record.sequence) differs from what the writer derived")
                    }
                    #expect(batch.first?.sequence == next)
                    next += UInt64(batch.count)
                    if batch.isEmpty { break }
                }
                #expect(next == journal.lastSequence + 1)
                try journal.close()
            }
            print("crash test: 24 kills, \(totalAcknowledged) acknowledged records, last \(highestAcknowledged), \(tornTails) torn tails cut")
            #expect(totalAcknowledged > 0)
        }
    }
}
