#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization

/// A sparse index entry: the record with `sequence` starts at `offset` of its segment file.
struct IndexEntry: Sendable {
    var sequence: UInt64
    var offset: Int
}

/// What the journal knows about one segment file.
struct SegmentInfo: Sendable {
    /// The sequence of the segment's first record (also in its file name).
    var firstSequence: UInt64
    var name: String
    var path: String
    /// Bytes of complete, written records.
    var writtenEnd: Int
    /// Sparse offsets, about one per ``JournalCore/indexInterval`` bytes, in increasing order.
    var index: [IndexEntry]

    static func fileName(firstSequence: UInt64) -> String {
        "segment-\(zeroPadded(firstSequence)).log"
    }

    static func firstSequence(fromFileName name: String) -> UInt64? {
        guard name.hasPrefix("segment-"), name.hasSuffix(".log") else { return nil }
        let digits = name.dropFirst("segment-".count).dropLast(".log".count)
        guard digits.count == 20 else { return nil }
        return UInt64(digits)
    }
}

/// The segment the writer appends to.
struct ActiveSegment: Sendable {
    var fd: Int32
    var path: String
    var size: Int
    var lastIndexedOffset: Int
}

/// A task waiting in `waitDurable`.
struct DurableWaiter {
    var id: UInt64
    var sequence: UInt64
    var continuation: CheckedContinuation<Void, any Error>
}

/// Everything shared between callers and the writer thread, guarded by one `Mutex`.
struct JournalState {
    /// The highest sequence appended (or covered by the snapshot, when that is newer).
    var lastSequence: UInt64
    /// Encoded records appended but not yet taken by the writer: `pendingFirstSequence ... lastSequence`.
    var pending: [UInt8] = []
    var pendingFirstSequence: UInt64 = 0
    /// The chunk the writer is writing now (records above `writtenSequence` in it are not yet in the file).
    var inflight: [UInt8] = []
    /// The highest sequence whose bytes are in the file (write(2) returned).
    var writtenSequence: UInt64
    /// The highest sequence fsynced.
    var syncedSequence: UInt64
    /// The highest sequence durable per the policy (fsynced for `.always`, written otherwise).
    var durableSequence: UInt64
    /// The segments in order; the last is the active one.
    var segments: [SegmentInfo]
    /// The writer is (about to be) asleep and must be signaled.
    var writerIdle = false
    var closing = false
    var closed = false
    var failure: JournalError?
    var durableWaiters: [DurableWaiter] = []
    var appendWaiters: [UInt64: CheckedContinuation<Bool, any Error>] = [:]
    var handlers: [@Sendable (UInt64) -> Void] = []
    var syncHandlers: [@Sendable (JournalSync) -> Void] = []
    /// `writeSnapshot` needs everything through this sequence fsynced (0: nothing requested).
    var syncRequestedThrough: UInt64 = 0
    var snapshotRejections: [RecoveryReport.RejectedSnapshot] = []
    var writerThread: pthread_t?
}

/// The journal's machinery; ``Journal`` is its public face (and closes it when released).
final class JournalCore: Sendable {
    static let indexInterval = 64 << 10

    let directory: String
    let configuration: JournalConfiguration
    let logger: Logger
    let report: RecoveryReport
    let state: Mutex<JournalState>
    /// Wakes the writer thread.
    let writerSignal = WakeSignal()
    /// Wakes a `writeSnapshot` waiting for an fsync.
    let syncSignal = WakeSignal()
    let waiterIDs = Atomic<UInt64>(0)
    /// Serializes snapshot writers.
    let snapshotLock = Mutex<Void>(())
    /// Serializes `close`.
    let closeLock = Mutex<Bool>(false)
    let lock: DirectoryLock

    init(
        directory: String,
        configuration: JournalConfiguration,
        logger: Logger,
        report: RecoveryReport,
        state: JournalState,
        lock: DirectoryLock
    ) {
        self.directory = directory
        self.configuration = configuration
        self.logger = logger
        self.report = report
        self.state = Mutex(state)
        self.lock = lock
    }

    // MARK: - Appending

    func append(_ record: JournalRecord, wakeWriter: Bool = true) throws(JournalError) {
        let maximumPayload = min(self.configuration.maximumPayloadSize, RecordCodec.maxPayload)
        guard record.payload.count <= maximumPayload else {
            throw JournalError.recordTooLarge(sequence: record.sequence, size: record.payload.count, maximum: maximumPayload)
        }
        var outcome: AppendOutcome = .none
        try withUnsafeTemporaryAllocation(byteCount: RecordCodec.overhead, alignment: 8) {
            (scratch: UnsafeMutableRawBufferPointer) throws(JournalError) -> Void in
            let base = scratch.baseAddress!
            RecordCodec.writeHeader(record, into: base)
            let header = UnsafeRawBufferPointer(start: base, count: RecordCodec.headerSize)
            let crc = record.payload.withUnsafeBytes { CRC32C.update(CRC32C.update(0, header), $0) }
            (base + RecordCodec.headerSize).storeBytes(of: crc.littleEndian, as: UInt32.self)
            let trailer = UnsafeRawBufferPointer(start: base + RecordCodec.headerSize, count: RecordCodec.trailerSize)
            outcome = try self.state.withLock { (state: inout JournalState) throws(JournalError) -> AppendOutcome in
                if let failure = state.failure { throw failure }
                if state.closing { throw JournalError.closed() }
                guard record.sequence == state.lastSequence &+ 1 else {
                    throw JournalError.sequenceOutOfOrder(expected: state.lastSequence &+ 1, found: record.sequence)
                }
                if state.pending.isEmpty { state.pendingFirstSequence = record.sequence }
                state.pending.append(contentsOf: header)
                state.pending.append(contentsOf: record.payload)
                state.pending.append(contentsOf: trailer)
                state.lastSequence = record.sequence
                let wake = wakeWriter && state.writerIdle
                if wake { state.writerIdle = false }
                if state.appendWaiters.isEmpty { return wake ? .wakeWriter : .none }
                let followers = Array(state.appendWaiters.values)
                state.appendWaiters.removeAll()
                return .wakeFollowers(writer: wake, followers)
            }
        }
        switch outcome {
        case .none:
            break
        case .wakeWriter:
            self.writerSignal.signal()
        case .wakeFollowers(let writer, let followers):
            if writer { self.writerSignal.signal() }
            for follower in followers { follower.resume(returning: true) }
        }
    }

    /// Wakes the writer if it sleeps while records wait in the buffer (after appends that did not wake it).
    func wakeWriter() {
        let wake = self.state.withLock { state in
            guard state.writerIdle, !state.pending.isEmpty else { return false }
            state.writerIdle = false
            return true
        }
        if wake { self.writerSignal.signal() }
    }

    private enum AppendOutcome {
        case none
        case wakeWriter
        case wakeFollowers(writer: Bool, [CheckedContinuation<Bool, any Error>])
    }

    // MARK: - Durability

    var lastSequence: UInt64 { self.state.withLock { $0.lastSequence } }
    var durableSequence: UInt64 { self.state.withLock { $0.durableSequence } }

    func onSync(_ handler: @escaping @Sendable (JournalSync) -> Void) {
        self.state.withLock { $0.syncHandlers.append(handler) }
    }

    func onDurable(_ handler: @escaping @Sendable (UInt64) -> Void) {
        self.state.withLock { $0.handlers.append(handler) }
    }

    func waitDurable(_ sequence: UInt64) async throws {
        let id = self.waiterIDs.wrappingAdd(1, ordering: .relaxed).newValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Result<Void, any Error>? = self.state.withLock { state in
                    if state.durableSequence >= sequence { return .success(()) }
                    if let failure = state.failure { return .failure(failure) }
                    if state.closed || (state.closing && state.lastSequence < sequence) {
                        return .failure(JournalError.closed())
                    }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.durableWaiters.append(DurableWaiter(id: id, sequence: sequence, continuation: continuation))
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter: DurableWaiter? = self.state.withLock { state in
                guard let index = state.durableWaiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.durableWaiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Blocks until every record through `sequence` is fsynced (used before writing a snapshot).
    func waitSynced(through sequence: UInt64) throws(JournalError) {
        let done: Bool = try self.state.withLock { (state: inout JournalState) throws(JournalError) -> Bool in
            if state.syncedSequence >= sequence { return true }
            if let failure = state.failure { throw failure }
            if state.closing || state.closed { throw JournalError.closed() }
            state.syncRequestedThrough = max(state.syncRequestedThrough, sequence)
            state.writerIdle = false
            return false
        }
        if done { return }
        self.writerSignal.signal()
        while true {
            self.syncSignal.wait(timeoutNanoseconds: 100_000_000)
            let finished = try self.state.withLock { (state: inout JournalState) throws(JournalError) -> Bool in
                if state.syncedSequence >= sequence { return true }
                if let failure = state.failure { throw failure }
                if state.closed { throw JournalError.closed() }
                return false
            }
            if finished { return }
        }
    }

    // MARK: - Closing

    func close() throws(JournalError) {
        try self.closeLock.withLock { (alreadyClosed: inout Bool) throws(JournalError) -> Void in
            if alreadyClosed { return }
            alreadyClosed = true
            let (thread, failureBefore) = self.state.withLock { state in
                state.closing = true
                state.writerIdle = false
                return (state.writerThread, state.failure)
            }
            self.writerSignal.signal()
            if let thread {
                precondition(pthread_equal(thread, pthread_self()) == 0, "Journal.close() called on its writer thread")
                pthread_join(thread, nil)
            }
            let (durableWaiters, followers, failure) = self.state.withLock { state in
                state.closed = true
                let waiters = state.durableWaiters
                state.durableWaiters = []
                let followers = Array(state.appendWaiters.values)
                state.appendWaiters = [:]
                return (waiters, followers, state.failure)
            }
            let error = failure ?? JournalError.closed()
            for waiter in durableWaiters { waiter.continuation.resume(throwing: error) }
            for follower in followers { follower.resume(returning: false) }
            self.syncSignal.signal()
            self.lock.release()
            self.logger.debug("journal closed", metadata: ["understudy.journal.directory": "\(self.directory)"])
            if failureBefore == nil, let failure { throw failure }
        }
    }
}
