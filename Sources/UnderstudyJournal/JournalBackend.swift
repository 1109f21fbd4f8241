import Synchronization

/// Where a ``Journal`` keeps its records: segment files in a directory (the embedded default), or a database
/// (see the PostgreSQL backend). ``Journal`` is the one face the supervisor uses; a backend implements it.
///
/// Every requirement has the meaning documented on the ``Journal`` method of the same name. Appends are made in
/// sequence order by one caller at a time; everything else is thread-safe.
public protocol JournalBackend: AnyObject, Sendable {
    /// What opening found and did.
    var recoveryReport: RecoveryReport { get }
    /// Snapshots rejected since open.
    var snapshotRejections: [RecoveryReport.RejectedSnapshot] { get }
    /// Where the journal is, for messages: a directory, or a database address without its password.
    var location: String { get }
    /// The highest sequence appended.
    var lastSequence: UInt64 { get }
    /// The highest sequence durable per the policy.
    var durableSequence: UInt64 { get }
    /// The oldest sequence number still kept.
    var oldestSequence: UInt64 { get }
    /// Appends one record (copies it; never waits for I/O). `wakeWriter: false` defers the writer's wake-up to
    /// ``wakeWriter()``.
    func append(_ record: JournalRecord, wakeWriter: Bool) throws
    /// Wakes the writer if records wait.
    func wakeWriter()
    /// Registers a handler called after every durable write (fsync, or commit).
    func onSync(_ handler: @escaping @Sendable (JournalSync) -> Void)
    /// Registers a handler called each time ``durableSequence`` advances.
    func onDurable(_ handler: @escaping @Sendable (UInt64) -> Void)
    /// Suspends until `sequence` is durable per the policy.
    func waitDurable(_ sequence: UInt64) async throws
    /// Blocks until every record through `sequence` is as durable as the backend can make it, whatever the policy.
    func sync(through sequence: UInt64) throws
    /// Reads up to `maxCount` consecutive records from `from` on, including appended but not yet durable ones.
    func read(from: UInt64, maxCount: Int) throws -> [JournalRecord]
    /// Yields every record from `from` on, waiting for new ones; finishes when the journal closes.
    func follow(from: UInt64) -> AsyncThrowingStream<JournalRecord, any Error>
    /// Writes a snapshot atomically and prunes what the kept snapshots cover.
    func writeSnapshot(_ snapshot: JournalSnapshot) throws
    /// The newest valid snapshot, if any.
    func newestSnapshot() throws -> JournalSnapshot?
    /// Records that this journal holds the state of `service`; a journal already holding another service's state
    /// refuses (two services must never share one journal). Backends that check elsewhere may accept anything.
    func claim(service: String) throws
    /// Flushes what is buffered and closes. Idempotent.
    func close() throws
}

extension JournalBackend {
    public func claim(service: String) throws {}
}

extension JournalCore: JournalBackend {
    var recoveryReport: RecoveryReport { self.report }
    var location: String { self.directory }
    var oldestSequence: UInt64 {
        self.state.withLock { $0.segments.first?.firstSequence ?? ($0.lastSequence + 1) }
    }
    func sync(through sequence: UInt64) throws {
        try self.waitSynced(through: sequence)
    }
}
