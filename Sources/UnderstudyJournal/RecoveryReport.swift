/// What ``Journal/open(directory:configuration:logger:)`` found and did.
public struct RecoveryReport: Sendable, CustomStringConvertible {
    /// An incomplete last record that recovery cut off.
    public struct TornTail: Sendable, Equatable {
        /// The segment file (name within the directory).
        public var file: String
        /// Where the file was cut (its new size).
        public var offset: Int
        /// How many bytes were dropped.
        public var bytesDropped: Int
        /// Why the tail was judged torn (short header, short record, checksum mismatch).
        public var reason: String
    }

    /// Records discarded because `truncateCorruption` was set.
    public struct DiscardedRange: Sendable, Equatable {
        /// The segment file where the corruption was found.
        public var file: String
        /// Where that file was cut.
        public var offset: Int
        /// The first sequence number discarded (the one expected at `offset`).
        public var firstSequence: UInt64
        /// The last sequence number that a valid record after the cut carried (`firstSequence` if none did).
        public var lastSequence: UInt64
        /// The bytes discarded, in all files.
        public var bytes: Int
        /// Later segment files deleted whole.
        public var deletedFiles: [String]
        /// What was wrong at `offset`.
        public var reason: String
    }

    /// A snapshot file that was not used.
    public struct RejectedSnapshot: Sendable, Equatable {
        /// The snapshot file (name within the directory).
        public var file: String
        /// Why it was rejected.
        public var reason: String

        /// A rejection (for journal backends outside this module).
        public init(file: String, reason: String) {
            self.file = file
            self.reason = reason
        }
    }

    /// The snapshot chosen (the newest valid one).
    public struct ChosenSnapshot: Sendable, Equatable {
        /// The snapshot file.
        public var file: String
        /// The last sequence it covers.
        public var sequence: UInt64
        /// The service it belongs to.
        public var service: String
        /// Its schema version.
        public var schemaVersion: Int
    }

    /// The journal directory.
    public var directory: String
    /// How many segment files were scanned.
    public var segmentsScanned: Int = 0
    /// How many valid records the segments hold.
    public var recordCount: Int = 0
    /// The oldest sequence still in a segment (nil when the segments hold no records).
    public var firstSequence: UInt64?
    /// The newest sequence in a segment (nil when the segments hold no records).
    public var lastRecordSequence: UInt64?
    /// The journal's `lastSequence` after recovery (the newest record, or the snapshot's sequence if newer).
    public var lastSequence: UInt64 = 0
    /// The torn tail that was cut, if any.
    public var tornTail: TornTail?
    /// What `truncateCorruption` discarded, if anything.
    public var discarded: DiscardedRange?
    /// Snapshots that failed their checksum or could not be read.
    public var rejectedSnapshots: [RejectedSnapshot] = []
    /// The snapshot to start replay from.
    public var chosenSnapshot: ChosenSnapshot?
    /// Other things worth knowing (for example records no longer replayable from any valid snapshot).
    public var warnings: [String] = []

    /// An empty report for the journal at `directory` (a directory, or a database's address).
    public init(directory: String) {
        self.directory = directory
    }

    /// A human summary.
    public var description: String {
        var lines: [String] = []
        let range: String
        if let first = self.firstSequence, let last = self.lastRecordSequence {
            range = "records \(first)...\(last) (\(self.recordCount))"
        } else {
            range = "no records"
        }
        lines.append(
            "journal \(self.directory): \(self.segmentsScanned) segment(s) scanned, \(range), "
                + "last sequence \(self.lastSequence)"
        )
        if let torn = self.tornTail {
            lines.append(
                "torn tail cut: \(torn.bytesDropped) byte(s) dropped from \(torn.file) at offset \(torn.offset) "
                    + "(\(torn.reason))"
            )
        }
        if let discarded = self.discarded {
            var line = "corruption truncated: \(discarded.file) cut at offset \(discarded.offset) (\(discarded.reason)); "
                + "discarded sequences \(discarded.firstSequence)...\(discarded.lastSequence), "
                + "\(discarded.bytes) byte(s)"
            if !discarded.deletedFiles.isEmpty {
                line += ", deleted \(discarded.deletedFiles.joined(separator: ", "))"
            }
            lines.append(line)
        }
        for rejected in self.rejectedSnapshots {
            lines.append("snapshot rejected: \(rejected.file): \(rejected.reason)")
        }
        if let chosen = self.chosenSnapshot {
            lines.append(
                "snapshot chosen: \(chosen.file) (sequence \(chosen.sequence), \(chosen.service) "
                    + "schema \(chosen.schemaVersion))"
            )
        } else {
            lines.append("no snapshot")
        }
        lines.append(contentsOf: self.warnings.map { "warning: \($0)" })
        return lines.joined(separator: "\n")
    }
}
