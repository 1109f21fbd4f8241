#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from the journal: what happened, where, and what to do about it.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    /// The kind of error.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case corruptRecord, sequenceGap, directoryMissing, notADirectory, directoryNotWritable, locked
            case diskFull, ioError, sequenceOutOfOrder, closed, sequenceUnavailable, corruptSnapshot, recordTooLarge
            case fenced, database, wrongService
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A record before the tail fails its checksum or has an impossible length.
        public static let corruptRecord = Code(.corruptRecord)
        /// A valid record carries a sequence number other than the next expected one.
        public static let sequenceGap = Code(.sequenceGap)
        /// The journal directory does not exist.
        public static let directoryMissing = Code(.directoryMissing)
        /// The journal path exists but is not a directory (or a component of it is not).
        public static let notADirectory = Code(.notADirectory)
        /// Files cannot be created or written in the journal directory.
        public static let directoryNotWritable = Code(.directoryNotWritable)
        /// Another process (or another open journal) holds the directory's lock.
        public static let locked = Code(.locked)
        /// A write or fsync failed for lack of space.
        public static let diskFull = Code(.diskFull)
        /// Another system call failed.
        public static let ioError = Code(.ioError)
        /// An appended record's sequence number is not `lastSequence + 1`, or a snapshot is ahead of the journal.
        public static let sequenceOutOfOrder = Code(.sequenceOutOfOrder)
        /// The journal is closed.
        public static let closed = Code(.closed)
        /// Records asked for were removed after a snapshot.
        public static let sequenceUnavailable = Code(.sequenceUnavailable)
        /// A snapshot file failed its checksum or could not be parsed.
        public static let corruptSnapshot = Code(.corruptSnapshot)
        /// An appended record's payload is larger than the journal accepts; nothing was appended.
        public static let recordTooLarge = Code(.recordTooLarge)

        /// Another supervisor took the journal over (a newer lease epoch): this one may append nothing more.
        public static let fenced = Code(.fenced)
        /// A database journal's server refused or failed an operation, or could not be reached.
        public static let database = Code(.database)
        /// The journal holds the state of another service.
        public static let wrongService = Code(.wrongService)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// The kind of error.
    public let code: Code
    /// The file concerned, if any.
    public let file: String?
    /// The byte offset in `file`, if any.
    public let offset: Int64?
    /// The sequence number concerned (for a corrupt record: the one expected at `offset`).
    public let sequence: UInt64?
    /// For a gap or an out-of-order append: the sequence number found.
    public let foundSequence: UInt64?
    /// For `locked`: the pid written in the lock file by its holder.
    public let pid: Int32?
    /// For `ioError`/`diskFull`: the errno.
    public let errorNumber: Int32?
    /// For `ioError`/`diskFull`: the operation that failed (`write`, `fsync`, ...).
    public let operation: String?
    /// The full human-readable message: what, where, and what to do.
    public let message: String

    /// An error with a code and a message (for journal backends outside this module).
    public init(_ code: Code, _ message: String, sequence: UInt64? = nil) {
        self.init(code: code, message: message, sequence: sequence)
    }

    init(
        code: Code,
        message: String,
        file: String? = nil,
        offset: Int64? = nil,
        sequence: UInt64? = nil,
        foundSequence: UInt64? = nil,
        pid: Int32? = nil,
        errorNumber: Int32? = nil,
        operation: String? = nil
    ) {
        self.code = code
        self.message = message
        self.file = file
        self.offset = offset
        self.sequence = sequence
        self.foundSequence = foundSequence
        self.pid = pid
        self.errorNumber = errorNumber
        self.operation = operation
    }

    /// The code and the message.
    public var description: String { "JournalError.\(self.code): \(self.message)" }

    static func corruptRecord(file: String, offset: Int, sequence: UInt64, reason: String, discardHint: String) -> Self {
        Self(
            code: .corruptRecord,
            message: "corrupt record in \(file) at offset \(offset) (expected sequence \(sequence)): \(reason); "
                + "valid records follow, so this is not a torn tail. \(discardHint)",
            file: file, offset: Int64(offset), sequence: sequence
        )
    }

    static func sequenceGap(file: String, offset: Int, expected: UInt64, found: UInt64, discardHint: String) -> Self {
        Self(
            code: .sequenceGap,
            message: "sequence gap in \(file) at offset \(offset): expected sequence \(expected), found \(found). "
                + discardHint,
            file: file, offset: Int64(offset), sequence: expected, foundSequence: found
        )
    }

    static func directoryMissing(_ path: String) -> Self {
        Self(
            code: .directoryMissing,
            message: "journal directory \(path) does not exist; create it (the journal creates its files, "
                + "not the directory) or fix the path",
            file: path
        )
    }

    static func notADirectory(_ path: String) -> Self {
        Self(
            code: .notADirectory,
            message: "journal path \(path) is not a directory (it or one of its parents is a file); "
                + "point the journal at a directory",
            file: path
        )
    }

    static func directoryNotWritable(_ path: String, errno code: Int32) -> Self {
        Self(
            code: .directoryNotWritable,
            message: "journal directory \(path) is not writable (\(errnoDescription(code))); "
                + "fix its permissions or mount, or choose another directory",
            file: path, errorNumber: code
        )
    }

    static func locked(_ path: String, pid: Int32?) -> Self {
        let holder = pid.map { "process \($0)" } ?? "another process"
        return Self(
            code: .locked,
            message: "journal directory \(path) is locked by \(holder) (LOCK file held); "
                + "stop that process or close its journal first, or use another directory",
            file: path, pid: pid
        )
    }

    static func io(_ operation: String, path: String, errno code: Int32) -> Self {
        if code == ENOSPC || code == EDQUOT {
            return Self(
                code: .diskFull,
                message: "disk full: \(operation) on \(path) failed (\(errnoDescription(code))); records not yet "
                    + "acknowledged were not journaled; free space and reopen the journal",
                file: path, errorNumber: code, operation: operation
            )
        }
        return Self(
            code: .ioError,
            message: "\(operation) on \(path) failed: \(errnoDescription(code))",
            file: path, errorNumber: code, operation: operation
        )
    }

    static func sequenceOutOfOrder(expected: UInt64, found: UInt64) -> Self {
        Self(
            code: .sequenceOutOfOrder,
            message: "record sequence \(found) is out of order: the next sequence must be \(expected)",
            sequence: expected, foundSequence: found
        )
    }

    static func closed() -> Self {
        Self(code: .closed, message: "the journal is closed; open it again to use it")
    }

    static func sequenceUnavailable(requested: UInt64, oldest: UInt64) -> Self {
        Self(
            code: .sequenceUnavailable,
            message: "records from sequence \(requested) are no longer kept (the oldest kept is \(oldest), older "
                + "ones were removed after a snapshot); start from the newest snapshot instead",
            sequence: requested, foundSequence: oldest
        )
    }

    static func recordTooLarge(sequence: UInt64, size: Int, maximum: Int) -> Self {
        Self(
            code: .recordTooLarge,
            message: "record \(sequence) has a payload of \(size) bytes, more than the journal's maximum of \(maximum) "
                + "bytes; it was not appended (the journal is unchanged). Refuse inputs this large before journaling them",
            sequence: sequence
        )
    }

    static func corruptSnapshot(file: String, reason: String) -> Self {
        Self(code: .corruptSnapshot, message: "snapshot \(file) is unusable: \(reason)", file: file)
    }
}

func errnoDescription(_ code: Int32) -> String {
    "\(String(cString: strerror(code))) (errno \(code))"
}
