import Foundation
import UnderstudyWire

/// An input that no instance may apply again, as `understudy status` and `GET /quarantine` show it.
public struct QuarantineEntry: Codable, Sendable, Equatable {
    /// The input's sequence number.
    public var sequence: UInt64
    /// Its command (upper-case name; MULTI for a transaction), or "?" when it was no longer at hand.
    public var command: String
    /// What happened when an instance executed it.
    public var reason: String
    /// The instance that died of it.
    public var instance: UInt32
    /// When it was quarantined (ISO 8601, UTC).
    public var time: String
    /// The version of the service that died of it (absent for entries rebuilt from the journal alone).
    public var version: String?

    /// Creates an entry.
    public init(sequence: UInt64, command: String, reason: String, instance: UInt32, time: String, version: String? = nil) {
        self.sequence = sequence
        self.command = command
        self.reason = reason
        self.instance = instance
        self.time = time
        self.version = version
    }
}

/// The quarantined inputs: the set every feed consults (a quarantined input is replaced by a no-op), and their
/// history in `quarantine.jsonl` in the data directory.
///
/// The journal's quarantine records are the truth (a restart rebuilds the set from them); the file keeps the
/// list readable after the journal segments that held them were removed behind a snapshot.
final class QuarantineLog {
    static let fileName = "quarantine.jsonl"
    private let path: String?
    private(set) var entries: [UInt64: QuarantineEntry] = [:]

    /// Loads the history from `directory` (nil: memory only).
    init(directory: String?) {
        path = directory.map { $0 + "/" + Self.fileName }
        guard let path, let data = FileManager.default.contents(atPath: path) else { return }
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            // A torn last line (a crash while appending) is skipped; the journal still holds the record.
            if let entry = try? decoder.decode(QuarantineEntry.self, from: Data(line)) { entries[entry.sequence] = entry }
        }
    }

    /// Whether `sequence` is quarantined.
    @inline(__always)
    func contains(_ sequence: UInt64) -> Bool {
        !entries.isEmpty && entries[sequence] != nil
    }

    /// The entries, oldest first.
    var list: [QuarantineEntry] { entries.values.sorted { $0.sequence < $1.sequence } }

    /// Adds an entry (and appends it to the file, fsynced) unless it is already known.
    @discardableResult
    func add(_ entry: QuarantineEntry) -> Bool {
        guard entries[entry.sequence] == nil else { return false }
        entries[entry.sequence] = entry
        persist(entry)
        return true
    }

    private func persist(_ entry: QuarantineEntry) {
        guard let path, var line = try? JSONEncoder().encode(entry) else { return }
        line.append(UInt8(ascii: "\n"))
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        _ = fsync(fd)
    }

    static func now() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }
}
