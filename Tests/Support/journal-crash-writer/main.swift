// A child process for the journal's crash tests.
//
// Usage: journal-crash-writer DIRECTORY [SECONDS]
//
// Opens the journal in DIRECTORY with fsync `always`, continues from its last sequence, and appends records whose
// contents are derived from their sequence number (see `crashRecord(_:)`, mirrored in the tests) from several
// concurrent tasks. After each record is durable (`waitDurable`) it prints the sequence number on its own line
// to stdout, one write(2) per line. It runs until killed, or SECONDS (default 60) as a safety net.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization
import UnderstudyJournal

/// The record the crash tests expect for `sequence` (keep in step with the tests' copy).
func crashRecord(_ sequence: UInt64) -> JournalRecord {
    let length = Int(sequence % 97) + 8
    var payload = [UInt8](repeating: 0, count: length)
    var state = sequence &* 0x9E37_79B9_7F4A_7C15
    for index in payload.indices {
        state ^= state >> 29
        state &*= 0xBF58_476D_1CE4_E5B9
        payload[index] = UInt8(truncatingIfNeeded: state >> 56)
    }
    return JournalRecord(
        sequence: sequence, time: Int64(sequence) * 7, seed: sequence &* 0x2545_F491_4F6C_DD1D,
        tag: UInt8(sequence % 4), payload: payload
    )
}

func writeLine(_ text: String) {
    var line = Array((text + "\n").utf8)
    line.withUnsafeMutableBytes { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(STDOUT_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
            if written <= 0 { if errno == EINTR { continue }; exit(3) }
            offset += written
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    writeLine("usage: journal-crash-writer DIRECTORY [SECONDS]")
    exit(2)
}
let directory = arguments[1]
let seconds = arguments.count >= 3 ? Double(arguments[2]) ?? 60 : 60
var logger = Logger(label: "journal-crash-writer")
logger.logLevel = .warning

let journal: Journal
do {
    journal = try Journal.open(directory: directory, configuration: JournalConfiguration(fsync: .always), logger: logger)
} catch {
    writeLine("open failed: \(error)")
    exit(1)
}
writeLine("ready \(journal.lastSequence)")

let counter = Mutex<UInt64>(journal.lastSequence)
let deadline = ContinuousClock.now + .seconds(seconds)
let taskCount = 8
do {
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<taskCount {
            group.addTask {
                while ContinuousClock.now < deadline {
                    let sequence = try counter.withLock { last -> UInt64 in
                        let sequence = last + 1
                        try journal.append(crashRecord(sequence))
                        last = sequence
                        return sequence
                    }
                    try await journal.waitDurable(sequence)
                    writeLine("\(sequence)")
                }
            }
        }
        try await group.waitForAll()
    }
    try journal.close()
} catch {
    writeLine("failed: \(error)")
    exit(1)
}
