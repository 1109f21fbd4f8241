#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// Reading records back: from the segment files for what is written, from the writer's buffers for the rest.
extension JournalCore {
    /// A consistent view of where each record is, taken under the lock.
    private struct ReadView {
        var segments: [SegmentInfo]
        var written: UInt64
        var inflight: [UInt8]
        var pending: [UInt8]
        var last: UInt64
    }

    func read(from: UInt64, maxCount: Int) throws(JournalError) -> [JournalRecord] {
        let from = max(from, 1)
        guard maxCount > 0 else { return [] }
        let view = try self.state.withLock { (state: inout JournalState) throws(JournalError) -> ReadView? in
            if from > state.lastSequence { return nil }
            let oldest = state.segments.first?.firstSequence ?? 1
            if from < oldest { throw JournalError.sequenceUnavailable(requested: from, oldest: oldest) }
            return ReadView(
                segments: state.segments, written: state.writtenSequence, inflight: state.inflight,
                pending: state.pending, last: state.lastSequence
            )
        }
        guard let view else { return [] }
        var records: [JournalRecord] = []
        records.reserveCapacity(min(maxCount, Int(clamping: view.last - from + 1)))
        var next = from
        if next <= view.written {
            var position = view.segments.lastIndex(where: { $0.firstSequence <= next }) ?? 0
            while position < view.segments.count && records.count < maxCount && next <= view.written {
                try self.readSegment(
                    view.segments[position], from: &next, through: view.written, maxCount: maxCount, into: &records
                )
                position += 1
            }
        }
        for buffer in [view.inflight, view.pending] where records.count < maxCount {
            buffer.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count && records.count < maxCount {
                    let sequence = RecordCodec.loadSequence(bytes, at: offset)
                    let size = RecordCodec.overhead + Int(RecordCodec.loadLength(bytes, at: offset))
                    if sequence == next && sequence > view.written {
                        records.append(RecordCodec.decode(bytes, at: offset))
                        next += 1
                    }
                    offset += size
                }
            }
        }
        return records
    }

    /// Reads records `next...through` of one segment file (up to `maxCount` in `records` in all).
    private func readSegment(
        _ segment: SegmentInfo, from next: inout UInt64, through: UInt64, maxCount: Int,
        into records: inout [JournalRecord]
    ) throws(JournalError) {
        guard segment.writtenEnd > 0 else { return }
        let fd: Int32
        do throws(JournalError) {
            fd = try FileSystem.open(segment.path, O_RDONLY)
        } catch {
            if error.errorNumber == ENOENT {
                // Removed by a snapshot since the view was taken.
                throw JournalError.sequenceUnavailable(requested: next, oldest: self.state.withLock {
                    $0.segments.first?.firstSequence ?? next
                })
            }
            throw error
        }
        defer { FileSystem.close(fd) }
        let start = segment.index.last(where: { $0.sequence <= next }) ?? IndexEntry(
            sequence: segment.firstSequence, offset: 0
        )
        var offset = start.offset
        var sequence = start.sequence
        var chunkSize = 1 << 20
        while offset < segment.writtenEnd && records.count < maxCount && next <= through {
            let count = min(chunkSize, segment.writtenEnd - offset)
            let chunk = try FileSystem.read(fd, path: segment.path, offset: offset, count: count)
            let consumed = try chunk.withBytes { (bytes) throws(JournalError) -> Int in
                var position = 0
                while position < bytes.count && records.count < maxCount && next <= through {
                    switch RecordCodec.parse(bytes, at: position) {
                    case .record(let found, let size):
                        guard found == sequence else {
                            throw JournalError.sequenceGap(
                                file: segment.name, offset: offset + position, expected: sequence, found: found,
                                discardHint: "The file changed under the journal; reopen it to recover."
                            )
                        }
                        if found == next {
                            records.append(RecordCodec.decode(bytes, at: position))
                            next += 1
                        }
                        sequence += 1
                        position += size
                    case .short(let needed, _):
                        guard position > 0 || offset + needed <= segment.writtenEnd else {
                            throw JournalError.corruptRecord(
                                file: segment.name, offset: offset, sequence: sequence, reason: "short record",
                                discardHint: "The file changed under the journal; reopen it to recover."
                            )
                        }
                        if position == 0 { chunkSize = max(chunkSize, needed) }
                        return position
                    case .badLength, .checksumMismatch:
                        throw JournalError.corruptRecord(
                            file: segment.name, offset: offset + position, sequence: sequence,
                            reason: "checksum mismatch on read",
                            discardHint: "The file was damaged after it was written; reopen the journal to recover."
                        )
                    }
                }
                return position
            }
            if consumed == 0 && count == segment.writtenEnd - offset && chunkSize <= count { break }
            offset += consumed
        }
    }

    // MARK: - Following

    func follow(from: UInt64) -> AsyncThrowingStream<JournalRecord, any Error> {
        let cursor = FollowCursor(next: max(from, 1))
        return AsyncThrowingStream(unfolding: { [self] in try await self.nextFollowed(cursor) })
    }

    private func nextFollowed(_ cursor: FollowCursor) async throws -> JournalRecord? {
        while true {
            if let record = cursor.pop() { return record }
            let next = cursor.next
            let batch = try self.read(from: next, maxCount: 4096)
            if !batch.isEmpty {
                cursor.fill(batch)
                continue
            }
            do {
                guard try await self.waitForAppend(after: next - 1) else { return nil }
            } catch is CancellationError {
                return nil
            }
        }
    }

    /// Waits until a record after `sequence` is appended; false when the journal closes first.
    private func waitForAppend(after sequence: UInt64) async throws -> Bool {
        let id = self.waiterIDs.wrappingAdd(1, ordering: .relaxed).newValue
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
                let immediate: Result<Bool, any Error>? = self.state.withLock { state in
                    if state.lastSequence > sequence { return .success(true) }
                    if let failure = state.failure { return .failure(failure) }
                    if state.closing || state.closed { return .success(false) }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.appendWaiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.appendWaiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }
}

/// Where a `follow` stream is: the next sequence and the records read ahead.
final class FollowCursor: Sendable {
    private struct Position {
        var next: UInt64
        var buffer: [JournalRecord] = []
        var index = 0
    }

    private let position: Mutex<Position>

    init(next: UInt64) {
        self.position = Mutex(Position(next: next))
    }

    var next: UInt64 { self.position.withLock { $0.next } }

    func pop() -> JournalRecord? {
        self.position.withLock { position in
            guard position.index < position.buffer.count else { return nil }
            defer { position.index += 1 }
            return position.buffer[position.index]
        }
    }

    func fill(_ records: [JournalRecord]) {
        self.position.withLock { position in
            position.buffer = records
            position.index = 0
            position.next = records.last!.sequence + 1
        }
    }
}
