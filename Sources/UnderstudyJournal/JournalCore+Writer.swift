#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization
import UnderstudyWire

/// The writer thread: takes the buffered records, writes them to the active segment (rolling over when it is
/// full), fsyncs per the policy, and advances `durableSequence`, waking whoever waits for it.
extension JournalCore {
    /// The writer's own bookkeeping, touched only on the writer thread.
    struct WriterContext {
        var active: ActiveSegment
        var written: UInt64
        var unsynced = false
        var writesSinceSync = 0
        var lastSync: UInt64
        var spare: [UInt8] = []
        /// Records and bytes written since the last fsync (reported to sync handlers).
        var recordsSinceSync: UInt64 = 0
        var bytesSinceSync = 0
    }

    private enum Step {
        case write([UInt8], firstSequence: UInt64)
        case sync
        case idle(timeoutNanoseconds: UInt64?)
        case exit
    }

    /// How many chunks `.always` writes before it must fsync even if more records keep arriving.
    private static let maxWritesPerSync = 8

    func startWriter(active: ActiveSegment) {
        let written = self.state.withLock { $0.writtenSequence }
        let thread = startThread { [self] in
            var context = WriterContext(active: active, written: written, lastSync: monotonicNanoseconds())
            self.runWriter(&context)
            FileSystem.close(context.active.fd)
        }
        self.state.withLock { $0.writerThread = thread }
    }

    private func runWriter(_ context: inout WriterContext) {
        let policy = self.configuration.fsync
        while true {
            let now = monotonicNanoseconds()
            let sinceSync = now &- context.lastSync
            let step: Step = self.state.withLock { state in
                if state.failure != nil { return .exit }
                let mayWrite = !(policy == .always && context.unsynced
                    && context.writesSinceSync >= Self.maxWritesPerSync)
                if !state.pending.isEmpty && mayWrite {
                    var chunk = context.spare
                    swap(&chunk, &state.pending)
                    context.spare = []
                    state.inflight = chunk
                    return .write(chunk, firstSequence: state.pendingFirstSequence)
                }
                if context.unsynced {
                    if policy == .always || state.closing || state.syncRequestedThrough > state.syncedSequence
                        || (policy == .everysec && sinceSync >= 1_000_000_000) {
                        return .sync
                    }
                }
                if state.closing { return .exit }
                state.writerIdle = true
                if policy == .everysec && context.unsynced {
                    return .idle(timeoutNanoseconds: 1_000_000_000 - sinceSync)
                }
                return .idle(timeoutNanoseconds: nil)
            }
            switch step {
            case .exit:
                return
            case .idle(let timeout):
                self.writerSignal.wait(timeoutNanoseconds: timeout)
            case .write(var chunk, let firstSequence):
                do {
                    try self.writeChunk(chunk, firstSequence: firstSequence, &context)
                } catch {
                    self.fail(error, &context)
                    return
                }
                self.state.withLock { $0.inflight = [] }
                chunk.removeAll(keepingCapacity: true)
                context.spare = chunk
                context.writesSinceSync += 1
            case .sync:
                let through = context.written
                let started = monotonicNanoseconds()
                do {
                    try FileSystem.fsync(context.active.fd, path: context.active.path)
                } catch {
                    self.fail(error, &context)
                    return
                }
                context.lastSync = monotonicNanoseconds()
                self.reportSync(nanoseconds: context.lastSync &- started, &context)
                context.unsynced = false
                context.writesSinceSync = 0
                self.publishSynced(through: through, policy: policy)
            }
        }
    }

    /// Writes a chunk of encoded records, in pieces that end at segment boundaries.
    private func writeChunk(_ chunk: [UInt8], firstSequence: UInt64, _ context: inout WriterContext) throws(JournalError) {
        let segmentSize = self.configuration.segmentSize
        let policy = self.configuration.fsync
        try chunk.withBytes { (bytes: UnsafeRawBufferPointer) throws(JournalError) -> Void in
            var offset = 0
            var sequence = firstSequence
            while offset < bytes.count {
                if context.active.size >= segmentSize {
                    try self.roll(to: sequence, &context)
                }
                // Take whole records while the segment has room (a segment always takes at least one).
                let start = offset
                var size = context.active.size
                var newEntries: [IndexEntry] = []
                repeat {
                    let recordSize = RecordCodec.overhead + Int(RecordCodec.loadLength(bytes, at: offset))
                    if size - context.active.lastIndexedOffset >= Self.indexInterval {
                        newEntries.append(IndexEntry(sequence: sequence, offset: size))
                        context.active.lastIndexedOffset = size
                    }
                    offset += recordSize
                    size += recordSize
                    sequence += 1
                } while offset < bytes.count && size < segmentSize
                let piece = UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
                try FileSystem.writeAll(
                    context.active.fd, path: context.active.path, piece, limit: self.configuration.diskSpaceLimit
                )
                context.recordsSinceSync &+= sequence - 1 - context.written
                context.bytesSinceSync += offset - start
                context.active.size = size
                context.written = sequence - 1
                context.unsynced = true
                let written = context.written
                let notify: Notification? = self.state.withLock { state in
                    state.writtenSequence = written
                    let last = state.segments.count - 1
                    state.segments[last].writtenEnd = size
                    if !newEntries.isEmpty { state.segments[last].index.append(contentsOf: newEntries) }
                    guard policy != .always else { return nil }
                    return Self.advanceDurable(&state, to: written)
                }
                notify?.deliver()
            }
        }
    }

    /// Fsyncs and closes the full segment and starts `segment-<sequence>.log`.
    private func roll(to sequence: UInt64, _ context: inout WriterContext) throws(JournalError) {
        let started = monotonicNanoseconds()
        try FileSystem.fsync(context.active.fd, path: context.active.path)
        self.reportSync(nanoseconds: monotonicNanoseconds() &- started, &context)
        let syncedThrough = context.written
        let name = SegmentInfo.fileName(firstSequence: sequence)
        let path = FileSystem.join(self.directory, name)
        let fd = try FileSystem.open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND)
        FileSystem.close(context.active.fd)
        context.active = ActiveSegment(fd: fd, path: path, size: 0, lastIndexedOffset: 0)
        context.unsynced = false
        try FileSystem.fsyncDirectory(self.directory)
        self.logger.debug(
            "journal segment rolled over",
            metadata: ["understudy.journal.segment": "\(name)", "understudy.seq": "\(sequence)"]
        )
        let segment = SegmentInfo(
            firstSequence: sequence, name: name, path: path, writtenEnd: 0,
            index: [IndexEntry(sequence: sequence, offset: 0)]
        )
        let policy = self.configuration.fsync
        let notify: Notification? = self.state.withLock { state in
            state.segments.append(segment)
            return Self.advanceSynced(&state, to: syncedThrough, policy: policy)
        }
        notify?.deliver(syncSignal: self.syncSignal)
    }

    private func reportSync(nanoseconds: UInt64, _ context: inout WriterContext) {
        let event = JournalSync(
            nanoseconds: nanoseconds, records: context.recordsSinceSync, bytes: context.bytesSinceSync)
        context.recordsSinceSync = 0
        context.bytesSinceSync = 0
        let handlers = self.state.withLock { $0.syncHandlers }
        for handler in handlers { handler(event) }
    }

    private func publishSynced(through sequence: UInt64, policy: FsyncPolicy) {
        let notify = self.state.withLock { Self.advanceSynced(&$0, to: sequence, policy: policy) }
        notify?.deliver(syncSignal: self.syncSignal)
    }

    private static func advanceSynced(_ state: inout JournalState, to sequence: UInt64, policy: FsyncPolicy) -> Notification? {
        guard sequence > state.syncedSequence else { return nil }
        state.syncedSequence = sequence
        var notification = policy == .always ? advanceDurable(&state, to: sequence) : nil
        if state.syncRequestedThrough != 0 && sequence >= state.syncRequestedThrough {
            state.syncRequestedThrough = 0
            if notification == nil { notification = Notification(sequence: sequence, waiters: [], handlers: []) }
            notification!.wakeSnapshotWriter = true
        }
        return notification
    }

    /// Moves `durableSequence` forward and collects who to tell (called with the lock held).
    private static func advanceDurable(_ state: inout JournalState, to sequence: UInt64) -> Notification? {
        guard sequence > state.durableSequence else { return nil }
        state.durableSequence = sequence
        var ready: [CheckedContinuation<Void, any Error>] = []
        if !state.durableWaiters.isEmpty {
            state.durableWaiters.removeAll { waiter in
                guard waiter.sequence <= sequence else { return false }
                ready.append(waiter.continuation)
                return true
            }
        }
        if ready.isEmpty && state.handlers.isEmpty { return nil }
        return Notification(sequence: sequence, waiters: ready, handlers: state.handlers)
    }

    /// Who to tell that `sequence` became durable; delivered after the lock is released.
    struct Notification {
        var sequence: UInt64
        var waiters: [CheckedContinuation<Void, any Error>]
        var handlers: [@Sendable (UInt64) -> Void]
        var wakeSnapshotWriter = false

        func deliver(syncSignal: WakeSignal? = nil) {
            // Handlers first, so that a task resumed from waitDurable sees them already told.
            for handler in self.handlers { handler(self.sequence) }
            for waiter in self.waiters { waiter.resume() }
            if self.wakeSnapshotWriter { syncSignal?.signal() }
        }
    }

    /// Records a write or fsync failure: nothing more is acknowledged, waiters and later appends get the error.
    private func fail(_ error: JournalError, _ context: inout WriterContext) {
        // Cut a partly written record off again (best effort; recovery would cut it as a torn tail anyway).
        _ = ftruncate(context.active.fd, off_t(context.active.size))
        self.logger.error(
            "journal writer failed; appends are refused from now on",
            metadata: [
                "understudy.journal.directory": "\(self.directory)",
                "understudy.seq": "\(context.written)",
                "understudy.error": "\(error)",
            ]
        )
        let (waiters, followers) = self.state.withLock { state in
            state.failure = error
            state.pending = []
            state.inflight = []
            state.lastSequence = state.writtenSequence
            let waiters = state.durableWaiters.map(\.continuation)
            state.durableWaiters = []
            let followers = Array(state.appendWaiters.values)
            state.appendWaiters = [:]
            return (waiters, followers)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
        for follower in followers { follower.resume(throwing: error) }
        self.syncSignal.signal()
    }
}
