#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import Synchronization

/// Snapshots: atomic, checksummed files; the newest two are kept, and segments only the older one covers are removed.
extension JournalCore {
    /// How many snapshots are kept.
    static let snapshotsKept = 2

    func writeSnapshot(_ snapshot: JournalSnapshot) throws(JournalError) {
        try self.snapshotLock.withLock { (_: inout Void) throws(JournalError) -> Void in
            let last = try self.state.withLock { (state: inout JournalState) throws(JournalError) -> UInt64 in
                if let failure = state.failure { throw failure }
                if state.closing || state.closed { throw JournalError.closed() }
                return state.lastSequence
            }
            guard snapshot.sequence <= last else {
                throw JournalError(
                    code: .sequenceOutOfOrder,
                    message: "snapshot covers sequence \(snapshot.sequence) but the journal's last sequence is "
                        + "\(last); take snapshots only of journaled state",
                    sequence: last, foundSequence: snapshot.sequence
                )
            }
            // A snapshot must never cover records that a crash could still lose.
            try self.waitSynced(through: snapshot.sequence)

            let name = SnapshotCodec.fileName(sequence: snapshot.sequence)
            let path = FileSystem.join(self.directory, name)
            let temporary = path + ".tmp"
            let bytes = SnapshotCodec.encode(snapshot)
            let fd = try FileSystem.open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
            do throws(JournalError) {
                try bytes.withBytes { (buffer) throws(JournalError) in
                    try FileSystem.writeAll(fd, path: temporary, buffer)
                }
                try FileSystem.fsync(fd, path: temporary)
                FileSystem.close(fd)
            } catch {
                FileSystem.close(fd)
                try? FileSystem.unlink(temporary)
                throw error
            }
            try FileSystem.rename(temporary, path)
            try FileSystem.fsyncDirectory(self.directory)
            self.logger.info(
                "journal snapshot written",
                metadata: [
                    "understudy.journal.snapshot": "\(name)",
                    "understudy.seq": "\(snapshot.sequence)",
                    "understudy.journal.bytes": "\(bytes.count)",
                ]
            )
            try self.pruneAfterSnapshot()
        }
    }

    /// Deletes snapshots beyond the newest two, then the segments whose records the older kept one covers.
    private func pruneAfterSnapshot() throws(JournalError) {
        let snapshots = try FileSystem.listDirectory(self.directory)
            .compactMap { name in SnapshotCodec.sequence(fromFileName: name).map { (name, $0) } }
            .sorted { $0.1 > $1.1 }
        for (name, _) in snapshots.dropFirst(Self.snapshotsKept) {
            try FileSystem.unlink(FileSystem.join(self.directory, name))
        }
        guard snapshots.count >= Self.snapshotsKept else { return }
        let covered = snapshots[Self.snapshotsKept - 1].1
        let removed: [SegmentInfo] = self.state.withLock { state in
            var count = 0
            // Never the active (last) segment; a segment is covered when the next one starts at or below covered+1.
            while count < state.segments.count - 1 && state.segments[count + 1].firstSequence - 1 <= covered {
                count += 1
            }
            let removed = Array(state.segments.prefix(count))
            state.segments.removeFirst(count)
            return removed
        }
        guard !removed.isEmpty else { return }
        for segment in removed { try FileSystem.unlink(segment.path) }
        try FileSystem.fsyncDirectory(self.directory)
        self.logger.debug(
            "journal segments removed after snapshot",
            metadata: [
                "understudy.journal.segments": "\(removed.map(\.name).joined(separator: ","))",
                "understudy.seq": "\(covered)",
            ]
        )
    }

    func newestSnapshot() throws(JournalError) -> JournalSnapshot? {
        var rejected: [RecoveryReport.RejectedSnapshot] = []
        let found = try Self.newestValidSnapshot(directory: self.directory, rejected: &rejected, logger: self.logger)
        if !rejected.isEmpty {
            self.state.withLock { state in
                for rejection in rejected where !state.snapshotRejections.contains(rejection) {
                    state.snapshotRejections.append(rejection)
                }
            }
        }
        return found?.1
    }

    var snapshotRejections: [RecoveryReport.RejectedSnapshot] {
        self.state.withLock { $0.snapshotRejections }
    }
}
