import Logging
import Synchronization

/// A durable, append-only journal of requests in segment files, with fsync policies, snapshots and crash recovery.
///
/// Open one per directory (the directory is locked while it is open). ``append(_:)`` only copies the record into
/// a buffer; a dedicated writer thread writes and fsyncs (group commit), and ``waitDurable(_:)`` or
/// ``onDurable(_:)`` say when records are durable per the ``FsyncPolicy``. Close it with ``close()`` (releasing
/// the last reference closes it too).
public final class Journal: Sendable {
    private let core: any JournalBackend

    /// A journal kept by `backend` (for a backend other than the file journal ``open(directory:configuration:logger:)``
    /// makes, such as a database).
    public init(backend: any JournalBackend) {
        self.core = backend
    }

    /// What keeps the records (to reach a backend's own features, such as a database journal's lease).
    public var backend: any JournalBackend { self.core }

    deinit {
        try? self.core.close()
    }

    /// Opens the journal in `directory`, creating its files if absent, takes the directory's lock and recovers.
    ///
    /// Recovery cuts a torn tail (an incomplete last record) and reports it; corruption before the tail is an
    /// error unless `configuration.truncateCorruption` is set.
    ///
    /// - Parameters:
    ///   - directory: An existing directory.
    ///   - configuration: Fsync policy, segment size, corruption handling.
    ///   - logger: Where recovery and writer events are logged.
    /// - Returns: The open journal; ``recoveryReport`` says what recovery found.
    /// - Throws: ``JournalError`` (`directoryMissing`, `notADirectory`, `directoryNotWritable`, `locked`,
    ///   `corruptRecord`, `sequenceGap`, `ioError`, ...).
    public static func open(directory: String, configuration: JournalConfiguration, logger: Logger) throws -> Journal {
        Journal(backend: try JournalCore.open(directory: directory, configuration: configuration, logger: logger))
    }

    /// What open found and did.
    public var recoveryReport: RecoveryReport { self.core.recoveryReport }

    /// Snapshots rejected (failed checksum or unreadable) since open, by recovery or ``newestSnapshot()``.
    public var snapshotRejections: [RecoveryReport.RejectedSnapshot] { self.core.snapshotRejections }

    /// The directory this journal is in (for a database journal: its address, without the password).
    public var directory: String { self.core.location }

    /// The highest sequence appended (0 if none; the snapshot's sequence when only a newer snapshot exists).
    public var lastSequence: UInt64 { self.core.lastSequence }

    /// The highest sequence durable per the policy: fsynced for `.always`, written to the file otherwise.
    public var durableSequence: UInt64 { self.core.durableSequence }

    /// Appends one record; it only copies the record into the writer's buffer and never waits for disk I/O.
    ///
    /// Thread-safe; callers must still append in sequence order.
    ///
    /// - Parameter record: The record; its sequence must be ``lastSequence`` + 1.
    /// - Throws: ``JournalError`` `recordTooLarge` (the payload exceeds the configuration's `maximumPayloadSize`;
    ///   nothing is appended), `sequenceOutOfOrder`, `closed`, or the writer's failure (`diskFull`, `ioError`).
    public func append(_ record: JournalRecord) throws {
        try self.core.append(record, wakeWriter: true)
    }

    /// Appends one record like ``append(_:)``, but leaves a sleeping writer asleep: call ``wakeWriter()`` once
    /// after a batch of these (for example once per event-loop turn), so a burst of appends costs one wake-up
    /// of the writer thread instead of one per record.
    ///
    /// - Parameter record: The record; its sequence must be ``lastSequence`` + 1.
    /// - Throws: As ``append(_:)``.
    public func appendDeferred(_ record: JournalRecord) throws {
        try self.core.append(record, wakeWriter: false)
    }

    /// Wakes the writer thread if records appended with ``appendDeferred(_:)`` are waiting. Cheap when not.
    public func wakeWriter() {
        self.core.wakeWriter()
    }

    /// Registers a handler called on the writer thread after every fsync of a segment: how long it took and
    /// how many records and bytes it made durable (the group-commit size).
    ///
    /// The handler must be quick and must not call ``close()``.
    public func onSync(_ handler: @escaping @Sendable (JournalSync) -> Void) {
        self.core.onSync(handler)
    }

    /// Registers a handler called on the writer thread each time ``durableSequence`` advances, with the new value.
    ///
    /// The handler must be quick and must not call ``close()``.
    ///
    /// - Parameter handler: Called with the new durable sequence.
    public func onDurable(_ handler: @escaping @Sendable (UInt64) -> Void) {
        self.core.onDurable(handler)
    }

    /// Suspends until `sequence` is durable per the policy.
    ///
    /// - Parameter sequence: The sequence to wait for.
    /// - Throws: The writer's failure, ``JournalError`` `closed` if the journal closes first, or
    ///   `CancellationError`.
    public func waitDurable(_ sequence: UInt64) async throws {
        try await self.core.waitDurable(sequence)
    }

    /// Blocks until every record through `sequence` is fsynced, whatever the policy (a record that must be
    /// durable before anything else happens, such as a quarantine, asks for it). Call it off the event loop.
    ///
    /// - Throws: The writer's failure, or ``JournalError`` `closed`.
    public func sync(through sequence: UInt64) throws {
        try self.core.sync(through: sequence)
    }

    /// The oldest sequence number still in the journal's segments (older ones were removed after a snapshot).
    public var oldestSequence: UInt64 {
        self.core.oldestSequence
    }

    /// Reads up to `maxCount` records from `from` on, including records appended but not yet written.
    ///
    /// - Parameters:
    ///   - from: The first sequence wanted (inclusive).
    ///   - maxCount: The most records returned.
    /// - Returns: Consecutive records from `from`; empty when `from` is past ``lastSequence``.
    /// - Throws: ``JournalError`` `sequenceUnavailable` when `from` was removed after a snapshot; `corruptRecord`
    ///   if a file was damaged after it was written.
    public func read(from: UInt64, maxCount: Int) throws -> [JournalRecord] {
        try self.core.read(from: from, maxCount: maxCount)
    }

    /// Yields every record from `from` on, waiting for new appends; finishes when the journal closes.
    ///
    /// - Parameter from: The first sequence wanted.
    /// - Returns: A stream that throws if `from` is no longer kept or the writer fails.
    public func follow(from: UInt64) -> AsyncThrowingStream<JournalRecord, any Error> {
        self.core.follow(from: from)
    }

    /// Writes a snapshot atomically (temporary file, fsync, rename, directory fsync) with a CRC32C, keeps the
    /// newest two snapshots, and removes segments whose records the older kept snapshot covers.
    ///
    /// It first waits until the records it covers are fsynced. Thread-safe; blocks on disk I/O.
    ///
    /// - Parameter snapshot: The snapshot; its sequence must not exceed ``lastSequence``.
    /// - Throws: ``JournalError`` (`sequenceOutOfOrder`, `diskFull`, `ioError`, `closed`).
    public func writeSnapshot(_ snapshot: JournalSnapshot) throws {
        try self.core.writeSnapshot(snapshot)
    }

    /// The newest snapshot that passes its checksum; newer corrupt ones are logged as errors and recorded in
    /// ``snapshotRejections``.
    ///
    /// - Returns: The snapshot, or nil when there is none.
    /// - Throws: ``JournalError`` when the directory cannot be read.
    public func newestSnapshot() throws -> JournalSnapshot? {
        try self.core.newestSnapshot()
    }

    /// Records that this journal holds the state of `service`; throws if it holds another service's.
    public func claim(service: String) throws {
        try self.core.claim(service: service)
    }

    /// Flushes and fsyncs what is buffered, stops the writer and releases the directory's lock. Idempotent.
    ///
    /// - Throws: The failure of the final write or fsync, if that is when it happened.
    public func close() throws {
        try self.core.close()
    }
}

/// One fsync of the journal's active segment, as reported to ``Journal/onSync(_:)`` handlers.
public struct JournalSync: Sendable {
    /// How long the fsync took.
    public var nanoseconds: UInt64
    /// Records it made durable (the group-commit size; 0 when only a roll-over or snapshot forced it).
    public var records: UInt64
    /// Bytes it made durable.
    public var bytes: Int

    /// A report of one durable write (for journal backends outside this module).
    public init(nanoseconds: UInt64, records: UInt64, bytes: Int) {
        self.nanoseconds = nanoseconds
        self.records = records
        self.bytes = bytes
    }
}
