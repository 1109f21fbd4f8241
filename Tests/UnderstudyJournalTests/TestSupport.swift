import Foundation
import Logging
import Synchronization
import Testing
import UnderstudyJournal

/// A unique, empty temporary directory, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(_ name: String = "journal") throws {
        var template = Array("/tmp/understudy-\(name)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let result else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        self.path = String(cString: result)
    }

    func file(_ name: String) -> String { self.path + "/" + name }

    func remove() { try? FileManager.default.removeItem(atPath: self.path) }

    func segmentFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: self.path).filter { $0.hasPrefix("segment-") }.sorted()
    }

    func snapshotFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: self.path).filter { $0.hasPrefix("snapshot-") }.sorted()
    }
}

/// Runs `body` with a fresh temporary directory that is removed afterwards.
func withTemporaryDirectory<T>(_ name: String = "journal", _ body: (TemporaryDirectory) async throws -> T) async throws -> T {
    let directory = try TemporaryDirectory(name)
    defer { directory.remove() }
    return try await body(directory)
}

/// Log messages captured by `CapturingLogHandler`.
final class LogCapture: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: String
    }

    private let storage = Mutex<[Entry]>([])

    var entries: [Entry] { self.storage.withLock { $0 } }

    func append(_ entry: Entry) { self.storage.withLock { $0.append(entry) } }

    func logger(level: Logger.Level = .debug) -> Logger {
        var logger = Logger(label: "journal-test") { _ in CapturingLogHandler(capture: self) }
        logger.logLevel = level
        return logger
    }
}

struct CapturingLogHandler: LogHandler {
    let capture: LogCapture
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let metadata = (event.metadata ?? [:]).map { "\($0)=\($1)" }.sorted().joined(separator: " ")
        self.capture.append(.init(level: event.level, message: "\(event.message)", metadata: metadata))
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "journal-test") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}()

/// A deterministic record for `sequence` with a payload of `size` bytes.
func testRecord(_ sequence: UInt64, size: Int = 100) -> JournalRecord {
    var payload = [UInt8](repeating: 0, count: size)
    for index in payload.indices { payload[index] = UInt8(truncatingIfNeeded: Int(sequence) &* 31 &+ index) }
    return JournalRecord(
        sequence: sequence, time: 1_700_000_000_000 + Int64(sequence), seed: sequence &* 0x9E37_79B9,
        tag: UInt8(sequence % 3), payload: payload
    )
}

/// The record `journal-crash-writer` appends for `sequence` (a copy of its `crashRecord`).
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

/// Opens a journal in `directory`.
func openJournal(
    _ directory: TemporaryDirectory,
    fsync: FsyncPolicy = .everysec,
    segmentSize: Int = 64 << 20,
    truncateCorruption: Bool = false,
    logger: Logger = quietLogger
) throws -> Journal {
    try Journal.open(
        directory: directory.path,
        configuration: JournalConfiguration(fsync: fsync, segmentSize: segmentSize, truncateCorruption: truncateCorruption),
        logger: logger
    )
}

/// Appends `range` of `testRecord`s.
func appendRecords(_ journal: Journal, _ range: ClosedRange<UInt64>, size: Int = 100) throws {
    for sequence in range { try journal.append(testRecord(sequence, size: size)) }
}

/// Catches a `JournalError` thrown by `body`.
func journalError(_ body: () throws -> Void) -> JournalError? {
    do {
        try body()
        return nil
    } catch let error as JournalError {
        return error
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

/// The path of the `journal-crash-writer` executable built beside the test bundle.
func crashWriterPath() -> String? {
    var candidates: [String] = []
    if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        var directory = (executable as NSString).deletingLastPathComponent
        // Inside an .xctest bundle directory (Darwin layout) the binary sits a few levels down.
        for _ in 0..<4 {
            candidates.append(directory + "/journal-crash-writer")
            directory = (directory as NSString).deletingLastPathComponent
        }
    }
    candidates.append(FileManager.default.currentDirectoryPath + "/.build/debug/journal-crash-writer")
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
}

func fileBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeFileBytes(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// The encoded size of `record`.
func encodedSize(_ record: JournalRecord) -> Int { recordOverhead + record.payload.count }

/// Header (length 4, sequence 8, time 8, seed 8, tag 1) plus the CRC32C trailer (4).
let recordOverhead = 33

/// A shared sequence counter for concurrent appenders (a `Mutex` is not copyable, so closures share this box).
final class SequenceCounter: Sendable {
    private let last: Mutex<UInt64>

    init(_ last: UInt64 = 0) { self.last = Mutex(last) }

    /// Appends the record for the next sequence (made by `make`) and returns its sequence.
    func appendNext(to journal: Journal, _ make: (UInt64) -> JournalRecord) throws -> UInt64 {
        try self.last.withLock { last in
            try journal.append(make(last + 1))
            last += 1
            return last
        }
    }
}

/// Collects values from any thread.
final class Recorder<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])
    func append(_ value: Value) { self.storage.withLock { $0.append(value) } }
    var values: [Value] { self.storage.withLock { $0 } }
}
