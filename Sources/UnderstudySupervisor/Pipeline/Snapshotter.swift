import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import UnderstudyJournal
import UnderstudyWire

/// When a scheduled snapshot is due — a pure decision, so the schedule is testable without workers.
///
/// Snapshots never thrash: at most one in flight, spaced by time and by inputs, and never while a standby is
/// catching up (its lag would make every snapshot stale at birth, and the snapshot would compete with the
/// catch-up for the same worker).
struct SnapshotSchedule: Sendable, Equatable {
    /// A snapshot after this many inputs…
    var everyRecords: UInt64
    /// …or after this long when anything changed, whichever comes first.
    var interval: TimeAmount
    /// Never two scheduled snapshots closer together than this.
    var minimumSpacing: TimeAmount

    /// What the decision looks at.
    struct Situation: Sendable, Equatable {
        var now: NIODeadline
        /// The last sequence number assigned.
        var head: UInt64
        /// The sequence the last written snapshot covers.
        var lastSnapshotSequence: UInt64
        /// The head when the last scheduled snapshot was asked for.
        var lastRequestSequence: UInt64
        /// When the last snapshot was written.
        var lastSnapshotAt: NIODeadline
        /// A snapshot is being taken.
        var inProgress: Bool
        /// The snapshot source exists and is live.
        var sourceLive: Bool
        /// Some standby is restoring or catching up.
        var standbyCatchingUp: Bool
    }

    /// Whether to take a snapshot now.
    func isDue(_ s: Situation) -> Bool {
        guard !s.inProgress, s.sourceLive, !s.standbyCatchingUp, s.now - s.lastSnapshotAt >= minimumSpacing else { return false }
        let byRecords = s.head - min(s.head, max(s.lastSnapshotSequence, s.lastRequestSequence)) >= everyRecords
        let byTime = s.now - s.lastSnapshotAt >= interval && s.head > s.lastSnapshotSequence
        return byRecords || byTime
    }
}

/// Takes snapshots from a standby (the primary never pauses for one), writes them to the journal's directory,
/// and streams snapshots into new instances.
///
/// Loop-bound: every method runs on the core event loop (hashing, cutting and writing run on the thread pool).
final class Snapshotter {
    let loop: any EventLoop
    let journal: Journal
    let threadPool: NIOThreadPool
    let metrics: SupervisorMetrics
    let logger: Logger
    let schedule: SnapshotSchedule

    /// A snapshot is being taken.
    private(set) var inProgress = false
    /// The sequence number the last written snapshot covers.
    private(set) var lastSequence: UInt64 = 0
    /// When the last snapshot was written (or the supervisor started).
    private(set) var lastAt: NIODeadline = .now()
    /// The head when the last scheduled snapshot was asked for.
    private var lastRequestSequence: UInt64 = 0

    init(loop: any EventLoop, journal: Journal, threadPool: NIOThreadPool, metrics: SupervisorMetrics, logger: Logger, schedule: SnapshotSchedule) {
        self.loop = loop
        self.journal = journal
        self.threadPool = threadPool
        self.metrics = metrics
        self.logger = logger
        self.schedule = schedule
    }

    /// Takes a scheduled snapshot from `source` if the schedule says it is due.
    func takeIfDue(head: UInt64, source: WorkerInstance?, standbyCatchingUp: Bool) {
        let situation = SnapshotSchedule.Situation(
            now: .now(), head: head, lastSnapshotSequence: lastSequence, lastRequestSequence: lastRequestSequence,
            lastSnapshotAt: lastAt, inProgress: inProgress, sourceLive: source?.isLive ?? false,
            standbyCatchingUp: standbyCatchingUp)
        guard let source, schedule.isDue(situation) else { return }
        lastRequestSequence = head
        take(from: source)
    }

    /// Takes a snapshot from `source` and writes it; completes with the sequence it covers.
    @discardableResult
    func take(from source: WorkerInstance?) -> EventLoopFuture<UInt64> {
        guard !inProgress else { return loop.makeFailedFuture(SupervisorError(.busy, "a snapshot is already in progress")) }
        guard let source, source.isLive, let hello = source.hello else {
            return loop.makeFailedFuture(SupervisorError(.busy, "no live shadow to snapshot from yet"))
        }
        inProgress = true
        let journal = self.journal
        let (loop, threadPool) = (self.loop, self.threadPool)
        let started = NIODeadline.now()
        let sourceID = source.id
        // Loop-bound: the completion runs on the loop, checked by NIO's isolated future API (no Sendable escape).
        return source.request(.snapshotRequest(streamID: UInt32.random(in: 1...UInt32.max))).flatMap { reply -> EventLoopFuture<UInt64> in
            guard case .snapshotChunk(let chunk) = reply else {
                return loop.makeFailedFuture(SupervisorError(.workerFailed, "unexpected snapshot reply"))
            }
            let snapshot = JournalSnapshot(
                service: hello.service, schemaVersion: Int(chunk.schemaVersion), sequence: chunk.sequence, data: chunk.data)
            return threadPool.runIfActive(eventLoop: loop) {
                // The worker's checksum of the whole stream, checked off the loop before anything is written.
                let checksum = StableHasher.hash(chunk.data)
                guard checksum == chunk.checksum else {
                    throw SupervisorError(
                        .workerFailed,
                        "the snapshot from instance \(sourceID) failed its checksum (\(chunk.data.count) bytes); nothing was written")
                }
                try journal.writeSnapshot(snapshot)
                return chunk.sequence
            }
        }.assumeIsolated().always { result in
            self.inProgress = false
            switch result {
            case .success(let seq):
                self.lastSequence = seq
                self.lastAt = .now()
                self.metrics.snapshotSeconds.recordNanoseconds(Int64((NIODeadline.now() - started).nanoseconds))
                self.logger.info("snapshot written", metadata: ["understudy.seq": "\(seq)"])
            case .failure(let error):
                self.logger.error("snapshot failed: \(error)")
            }
        }.nonisolated()
    }

    /// Streams snapshot bytes into an instance; completes with the sequence the state now covers.
    func restore(_ data: [UInt8], sequence: UInt64, schemaVersion: UInt32, into instance: WorkerInstance) -> EventLoopFuture<UInt64> {
        // Hashing and cutting a large snapshot takes milliseconds: done on the thread pool, never on the loop
        // that serves clients (a new shadow is restored while the primary serves).
        threadPool.runIfActive(eventLoop: loop) { Self.chunks(data, sequence: sequence, schemaVersion: schemaVersion) }
            .assumeIsolated()
            .flatMap { chunks in
                for chunk in chunks.dropLast() { instance.send(.snapshotChunk(chunk)) }
                return instance.request(.snapshotChunk(chunks.last!))
            }
            .flatMapThrowing { reply in
                guard case .restored(let seq, _) = reply else {
                    throw SupervisorError(.workerFailed, "worker answered a restore with \(reply.frameType)")
                }
                return seq
            }
            .nonisolated()
    }

    /// A snapshot cut into chunks of `chunkSize` (1 MiB); the last carries the checksum of the whole, and an empty
    /// snapshot is one empty final chunk.
    static func chunks(_ data: [UInt8], sequence: UInt64, schemaVersion: UInt32, chunkSize: Int = 1 << 20) -> [SnapshotChunk] {
        let checksum = StableHasher.hash(data)
        let streamID = UInt32.random(in: 1...UInt32.max)
        var start = 0
        var chunks: [SnapshotChunk] = []
        repeat {
            let end = min(data.count, start + chunkSize)
            chunks.append(SnapshotChunk(
                streamID: streamID, sequence: sequence, schemaVersion: schemaVersion, data: Array(data[start..<end]),
                isFinal: end == data.count, checksum: end == data.count ? checksum : 0))
            start = end
        } while start < data.count
        return chunks
    }
}
