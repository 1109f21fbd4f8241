import Synchronization
import UnderstudyWire

/// When the journal's writer calls `fsync`, like Redis's `appendfsync`.
public enum FsyncPolicy: String, Sendable, CaseIterable {
    /// After every batch of writes, before anything in it is acknowledged (group commit).
    case always
    /// At most once a second; records count as durable once written to the file.
    case everysec
    /// Never, except when a segment rolls over, before a snapshot and on close; the OS decides.
    case no
}

/// How a ``Journal`` writes and recovers.
public struct JournalConfiguration: Sendable {
    /// When the writer fsyncs. Default `.everysec`.
    public var fsync: FsyncPolicy
    /// The size in bytes after which the writer starts a new segment file. Default 64 MiB.
    public var segmentSize: Int
    /// On open, cut the journal at the first corrupt record (deleting what follows) and report it, instead of
    /// refusing to open. Default `false`: corruption before the tail is an error.
    public var truncateCorruption: Bool
    /// The largest record payload ``Journal/append(_:)`` accepts; a larger one is refused with
    /// ``JournalError/Code-swift.struct/recordTooLarge``. Default and upper bound ``UnderstudyLimits/maxInputBytes``
    /// (what recovery accepts as a plausible record length).
    public var maximumPayloadSize: Int

    /// A simulated disk size, for tests of a full disk (see ``DiskSpaceLimit``).
    @_spi(Testing) public var diskSpaceLimit: DiskSpaceLimit?

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - fsync: When the writer fsyncs (default `.everysec`).
    ///   - segmentSize: Roll-over size of a segment file in bytes (default 64 MiB).
    ///   - truncateCorruption: Cut at the first corrupt record on open instead of failing (default `false`).
    ///   - maximumPayloadSize: The largest payload an append accepts, at most ``UnderstudyLimits/maxInputBytes``
    ///     (the default).
    public init(
        fsync: FsyncPolicy = .everysec, segmentSize: Int = 64 << 20, truncateCorruption: Bool = false,
        maximumPayloadSize: Int = UnderstudyLimits.maxInputBytes
    ) {
        precondition(segmentSize > 0, "segmentSize must be positive")
        precondition(
            maximumPayloadSize >= 0 && maximumPayloadSize <= UnderstudyLimits.maxInputBytes,
            "maximumPayloadSize must be between 0 and UnderstudyLimits.maxInputBytes")
        self.fsync = fsync
        self.segmentSize = segmentSize
        self.truncateCorruption = truncateCorruption
        self.maximumPayloadSize = maximumPayloadSize
        self.diskSpaceLimit = nil
    }
}

/// A test seam: segment writes succeed until `bytes` have been written in all, then the write is cut short and
/// fails with `ENOSPC`, as on a full disk.
@_spi(Testing) public final class DiskSpaceLimit: Sendable {
    private let remaining: Mutex<Int>

    /// Creates a limit of `bytes` more bytes.
    public init(bytes: Int) {
        self.remaining = Mutex(bytes)
    }

    /// Allows more bytes to be written (frees space).
    public func add(_ bytes: Int) {
        self.remaining.withLock { $0 += bytes }
    }

    /// How many of `count` bytes may be written now (takes them from the budget).
    func take(_ count: Int) -> Int {
        self.remaining.withLock { remaining in
            let allowed = min(remaining, count)
            remaining -= allowed
            return allowed
        }
    }
}
