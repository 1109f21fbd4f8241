#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// Opening a journal directory: checks, the lock, snapshot selection and the segment scan that finds the last
/// valid record, cuts a torn tail, and refuses (or, if asked, truncates) corruption before the tail.
extension JournalCore {
    static func open(directory: String, configuration: JournalConfiguration, logger: Logger) throws(JournalError) -> JournalCore {
        try checkDirectory(directory)
        let lock = try DirectoryLock.acquire(directory)
        do throws(JournalError) {
            var report = RecoveryReport(directory: directory)
            let snapshot = try chooseSnapshot(directory: directory, report: &report, logger: logger)
            var scan = try scanSegments(
                directory: directory, configuration: configuration, snapshotSequence: snapshot?.sequence,
                report: &report, logger: logger
            )
            try finishRecovery(
                directory: directory, snapshotSequence: snapshot?.sequence, scan: &scan, report: &report, logger: logger
            )
            let last = scan.segments[scan.segments.count - 1]
            let fd = try FileSystem.open(last.path, O_WRONLY | O_APPEND)
            let active = ActiveSegment(
                fd: fd, path: last.path, size: last.writtenEnd,
                lastIndexedOffset: last.index.last?.offset ?? 0
            )
            let state = JournalState(
                lastSequence: scan.lastSequence,
                writtenSequence: scan.lastSequence,
                syncedSequence: scan.lastSequence,
                durableSequence: scan.lastSequence,
                segments: scan.segments,
                snapshotRejections: report.rejectedSnapshots
            )
            report.lastSequence = scan.lastSequence
            let core = JournalCore(
                directory: directory, configuration: configuration, logger: logger, report: report,
                state: state, lock: lock
            )
            logger.info(
                "journal opened",
                metadata: [
                    "understudy.journal.directory": "\(directory)",
                    "understudy.seq": "\(scan.lastSequence)",
                    "understudy.journal.fsync": "\(configuration.fsync.rawValue)",
                ]
            )
            core.startWriter(active: active)
            return core
        } catch {
            lock.release()
            throw error
        }
    }

    // MARK: - Directory and lock

    private static func checkDirectory(_ directory: String) throws(JournalError) {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            switch errno {
            case ENOENT: throw JournalError.directoryMissing(directory)
            case ENOTDIR: throw JournalError.notADirectory(directory)
            case let code: throw JournalError.io("stat", path: directory, errno: code)
            }
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else { throw JournalError.notADirectory(directory) }
    }

    // MARK: - Snapshots

    /// Picks the newest snapshot that passes its checksum; newer ones that fail are reported loudly.
    static func chooseSnapshot(
        directory: String, report: inout RecoveryReport, logger: Logger
    ) throws(JournalError) -> JournalSnapshot? {
        for name in try FileSystem.listDirectory(directory) where name.hasSuffix(".tmp") {
            try FileSystem.unlink(FileSystem.join(directory, name))
        }
        var rejected: [RecoveryReport.RejectedSnapshot] = []
        let chosen = try newestValidSnapshot(directory: directory, rejected: &rejected, logger: logger)
        report.rejectedSnapshots = rejected
        if let (name, snapshot) = chosen {
            report.chosenSnapshot = RecoveryReport.ChosenSnapshot(
                file: name, sequence: snapshot.sequence, service: snapshot.service,
                schemaVersion: snapshot.schemaVersion
            )
            return snapshot
        }
        return nil
    }

    static func newestValidSnapshot(
        directory: String, rejected: inout [RecoveryReport.RejectedSnapshot], logger: Logger
    ) throws(JournalError) -> (String, JournalSnapshot)? {
        let names = try FileSystem.listDirectory(directory)
            .compactMap { name in SnapshotCodec.sequence(fromFileName: name).map { (name, $0) } }
            .sorted { $0.1 > $1.1 }
        for (name, sequence) in names {
            let path = FileSystem.join(directory, name)
            let bytes: [UInt8]
            do throws(JournalError) {
                bytes = try FileSystem.readWholeFile(path)
            } catch {
                if error.errorNumber == ENOENT { continue }  // removed by a concurrent snapshot
                throw error
            }
            var reason: String
            switch SnapshotCodec.decode(bytes) {
            case .success(let snapshot) where snapshot.sequence == sequence:
                return (name, snapshot)
            case .success(let snapshot):
                reason = "its sequence \(snapshot.sequence) does not match its file name"
            case .failure(let error):
                reason = error.description
            }
            reason += "; falling back to an older snapshot"
            logger.error(
                "journal snapshot rejected",
                metadata: [
                    "understudy.journal.snapshot": "\(name)",
                    "understudy.journal.reason": "\(reason)",
                ]
            )
            rejected.append(RecoveryReport.RejectedSnapshot(file: name, reason: reason))
        }
        return nil
    }

    // MARK: - Segments

    struct SegmentScan {
        var segments: [SegmentInfo] = []
        /// The sequence the next record must have.
        var next: UInt64 = 1
        var lastSequence: UInt64 { self.next - 1 }
    }

    private static func listSegments(_ directory: String) throws(JournalError) -> [(name: String, first: UInt64)] {
        try FileSystem.listDirectory(directory)
            .compactMap { name in SegmentInfo.firstSequence(fromFileName: name).map { (name, $0) } }
            .sorted { $0.first < $1.first }
    }

    private static func scanSegments(
        directory: String,
        configuration: JournalConfiguration,
        snapshotSequence: UInt64?,
        report: inout RecoveryReport,
        logger: Logger
    ) throws(JournalError) -> SegmentScan {
        let files = try listSegments(directory)
        var scan = SegmentScan()
        scan.next = files.first?.first ?? 1
        for (position, file) in files.enumerated() {
            let path = FileSystem.join(directory, file.name)
            let isLast = position == files.count - 1
            report.segmentsScanned += 1
            if file.first != scan.next {
                if file.first > scan.next, let snapshotSequence, snapshotSequence >= file.first - 1 {
                    report.warnings.append(
                        "sequences \(scan.next)...\(file.first - 1) are missing before \(file.name); "
                            + "the snapshot at \(snapshotSequence) covers them"
                    )
                    scan.next = file.first
                } else {
                    let later = files[position...].map { FileSystem.join(directory, $0.name) }
                    let extent = discardExtent(offset: 0, in: UnsafeRawBufferPointer(start: nil, count: 0), laterFiles: later, from: scan.next)
                    let hint = truncateHint(from: scan.next, extent: extent)
                    guard configuration.truncateCorruption else {
                        throw JournalError.sequenceGap(
                            file: file.name, offset: 0, expected: scan.next, found: file.first, discardHint: hint
                        )
                    }
                    try discard(
                        directory: directory, file: file.name, offset: 0, from: scan.next, extent: extent,
                        deleting: files[position...].map(\.name), cutFile: nil,
                        reason: "segment starts at sequence \(file.first), expected \(scan.next)",
                        report: &report, logger: logger
                    )
                    break
                }
            }
            let bytes = try FileSystem.readWholeFile(path)
            var segment = SegmentInfo(
                firstSequence: file.first, name: file.name, path: path, writtenEnd: 0,
                index: [IndexEntry(sequence: file.first, offset: 0)]
            )
            let outcome = bytes.withUnsafeBytes { scanRecords($0, segment: &segment, next: &scan.next, report: &report) }
            switch outcome {
            case .complete:
                scan.segments.append(segment)
                continue
            case .damaged(let offset, let reason, let foundSequence):
                let laterValid = bytes.withUnsafeBytes {
                    RecordCodec.findValidRecords($0, after: offset, minimumSequence: scan.next)
                }
                if isLast && laterValid == nil && foundSequence == nil {
                    try FileSystem.truncate(path: path, to: offset)
                    let torn = RecoveryReport.TornTail(
                        file: file.name, offset: offset, bytesDropped: bytes.count - offset, reason: reason
                    )
                    report.tornTail = torn
                    logger.warning(
                        "journal torn tail cut",
                        metadata: [
                            "understudy.journal.segment": "\(file.name)",
                            "understudy.journal.offset": "\(offset)",
                            "understudy.journal.bytesDropped": "\(torn.bytesDropped)",
                            "understudy.seq": "\(scan.next - 1)",
                        ]
                    )
                    segment.writtenEnd = offset
                    scan.segments.append(segment)
                    continue
                }
                let later = files[(position + 1)...].map { FileSystem.join(directory, $0.name) }
                var extent = bytes.withUnsafeBytes {
                    discardExtent(offset: offset, in: $0, laterFiles: later, from: scan.next)
                }
                if let foundSequence { extent.last = max(extent.last, foundSequence) }
                let hint = truncateHint(from: scan.next, extent: extent)
                guard configuration.truncateCorruption else {
                    if let foundSequence {
                        throw JournalError.sequenceGap(
                            file: file.name, offset: offset, expected: scan.next, found: foundSequence,
                            discardHint: hint
                        )
                    }
                    throw JournalError.corruptRecord(
                        file: file.name, offset: offset, sequence: scan.next, reason: reason, discardHint: hint
                    )
                }
                try discard(
                    directory: directory, file: file.name, offset: offset, from: scan.next, extent: extent,
                    deleting: files[(position + 1)...].map(\.name), cutFile: path, reason: reason,
                    report: &report, logger: logger
                )
                segment.writtenEnd = offset
                scan.segments.append(segment)
            }
            break
        }
        return scan
    }

    private enum RecordScanOutcome {
        case complete
        /// The record at `offset` is damaged (or, with `foundSequence`, valid but out of sequence).
        case damaged(offset: Int, reason: String, foundSequence: UInt64?)
    }

    /// Walks the records of one segment, building its sparse index.
    private static func scanRecords(
        _ bytes: UnsafeRawBufferPointer,
        segment: inout SegmentInfo,
        next: inout UInt64,
        report: inout RecoveryReport
    ) -> RecordScanOutcome {
        var offset = 0
        var lastIndexed = 0
        while offset < bytes.count {
            switch RecordCodec.parse(bytes, at: offset) {
            case .record(let sequence, let size):
                guard sequence == next else {
                    return .damaged(
                        offset: offset, reason: "valid record with sequence \(sequence), expected \(next)",
                        foundSequence: sequence
                    )
                }
                if offset - lastIndexed >= indexInterval {
                    segment.index.append(IndexEntry(sequence: sequence, offset: offset))
                    lastIndexed = offset
                }
                if report.firstSequence == nil { report.firstSequence = sequence }
                report.lastRecordSequence = sequence
                report.recordCount += 1
                offset += size
                next += 1
                segment.writtenEnd = offset
            case .short(let needed, let available):
                let what = available < RecordCodec.headerSize ? "short header" : "short record"
                return .damaged(
                    offset: offset, reason: "\(what): \(available) of \(needed) bytes present", foundSequence: nil
                )
            case .badLength(let length):
                return .damaged(offset: offset, reason: "impossible length field \(length)", foundSequence: nil)
            case .checksumMismatch(let sequence, _):
                return .damaged(
                    offset: offset, reason: "checksum mismatch (header says sequence \(sequence))", foundSequence: nil
                )
            }
        }
        return .complete
    }

    struct DiscardExtent {
        var last: UInt64
        var bytes: Int
    }

    /// How much cutting at `offset` (of `bytes`) and deleting `laterFiles` would discard.
    private static func discardExtent(
        offset: Int, in bytes: UnsafeRawBufferPointer, laterFiles: [String], from sequence: UInt64
    ) -> DiscardExtent {
        var extent = DiscardExtent(last: sequence, bytes: max(0, bytes.count - offset))
        if let found = RecordCodec.findValidRecords(bytes, after: offset, minimumSequence: sequence) {
            extent.last = max(extent.last, found.lastSequence)
        }
        for path in laterFiles {
            guard let contents = try? FileSystem.readWholeFile(path) else { continue }
            extent.bytes += contents.count
            let name = path.split(separator: "/").last.map(String.init) ?? path
            let first = max(sequence, SegmentInfo.firstSequence(fromFileName: name) ?? sequence)
            let found = contents.withUnsafeBytes {
                RecordCodec.findValidRecords($0, after: -1, minimumSequence: first)
            }
            if let found { extent.last = max(extent.last, found.lastSequence) }
        }
        return extent
    }

    private static func truncateHint(from sequence: UInt64, extent: DiscardExtent) -> String {
        "Reopen with truncateCorruption to discard records from sequence \(sequence) on "
            + "(through \(extent.last), \(extent.bytes) bytes), or restore the file from a replica."
    }

    private static func discard(
        directory: String, file: String, offset: Int, from sequence: UInt64, extent: DiscardExtent,
        deleting names: [String], cutFile: String?, reason: String,
        report: inout RecoveryReport, logger: Logger
    ) throws(JournalError) {
        if let cutFile { try FileSystem.truncate(path: cutFile, to: offset) }
        for name in names { try FileSystem.unlink(FileSystem.join(directory, name)) }
        try FileSystem.fsyncDirectory(directory)
        let discarded = RecoveryReport.DiscardedRange(
            file: file, offset: offset, firstSequence: sequence, lastSequence: extent.last, bytes: extent.bytes,
            deletedFiles: names, reason: reason
        )
        report.discarded = discarded
        logger.error(
            "journal corruption truncated (truncateCorruption)",
            metadata: [
                "understudy.journal.segment": "\(file)",
                "understudy.journal.offset": "\(offset)",
                "understudy.journal.discarded": "\(sequence)...\(extent.last)",
                "understudy.journal.bytes": "\(extent.bytes)",
                "understudy.journal.reason": "\(reason)",
            ]
        )
    }

    /// Makes sure there is an active segment that the next append fits, and checks what replay can rely on.
    private static func finishRecovery(
        directory: String, snapshotSequence: UInt64?, scan: inout SegmentScan,
        report: inout RecoveryReport, logger: Logger
    ) throws(JournalError) {
        let snapshot = snapshotSequence ?? 0
        var needsNewSegment = scan.segments.isEmpty
        if snapshot > scan.lastSequence {
            // The snapshot is ahead of the records (for example a snapshot-only directory): continue after it,
            // in a new segment (an empty last segment would start at a sequence the snapshot covers).
            if let last = scan.segments.last, last.writtenEnd == 0 {
                try FileSystem.unlink(last.path)
                scan.segments.removeLast()
            }
            if report.lastRecordSequence != nil {
                report.warnings.append(
                    "the snapshot at sequence \(snapshot) is ahead of the last record \(scan.lastSequence); "
                        + "appends continue from \(snapshot + 1)"
                )
            }
            scan.next = snapshot + 1
            needsNewSegment = true
        }
        if needsNewSegment {
            let name = SegmentInfo.fileName(firstSequence: scan.next)
            let path = FileSystem.join(directory, name)
            let fd = try FileSystem.open(path, O_WRONLY | O_CREAT)
            FileSystem.close(fd)
            try FileSystem.fsyncDirectory(directory)
            scan.segments.append(SegmentInfo(
                firstSequence: scan.next, name: name, path: path, writtenEnd: 0,
                index: [IndexEntry(sequence: scan.next, offset: 0)]
            ))
        }
        let oldest = scan.segments.first!.firstSequence
        if oldest > 1 && snapshot < oldest - 1 {
            let warning = "records 1...\(oldest - 1) are no longer in the journal and no valid snapshot covers "
                + "them (newest valid snapshot: \(snapshotSequence.map(String.init) ?? "none")); replay from the "
                + "journal alone cannot rebuild the state"
            report.warnings.append(warning)
            logger.error("journal not replayable from the start", metadata: ["understudy.journal.reason": "\(warning)"])
        }
    }
}
