import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import UnderstudyJournal

extension PostgresJournal {
    /// Stores a snapshot in chunks, in one transaction that also checks the lease (a supervisor that was taken over
    /// writes no snapshot); keeps the newest two and removes the records the older one covers.
    public func writeSnapshot(_ snapshot: JournalSnapshot) throws {
        guard snapshot.sequence <= lastSequence else {
            throw JournalError(.sequenceOutOfOrder, "snapshot at \(snapshot.sequence) is ahead of the journal (\(lastSequence))", sequence: snapshot.sequence)
        }
        try sync(through: snapshot.sequence)
        let epoch = self.epoch
        guard epoch != 0 else { throw JournalError(.fenced, "a standby writes no snapshots") }
        let crc = CRC32C.checksum(snapshot.data)
        let chunkSize = configuration.snapshotChunkBytes
        let chunks = max(1, (snapshot.data.count + chunkSize - 1) / chunkSize)
        let seq = Int64(snapshot.sequence)
        let olderKept: Int64? = try snapshotSession.with { c in
            let logger = self.logger
            _ = try PostgresSession.run(c, "BEGIN", logger: logger, limit: .seconds(120))
            do {
                let lease = try PostgresSession.run(c, "SELECT epoch FROM understudy_lease WHERE id = 1 AND epoch = \(Int64(epoch)) FOR SHARE", logger: logger, limit: .seconds(120)).rows
                guard !lease.isEmpty else {
                    throw JournalError(.fenced, "another supervisor took the journal over (epoch \(epoch) is no longer current); snapshot not written")
                }
                _ = try PostgresSession.run(c, "DELETE FROM understudy_snapshot_chunks WHERE seq = \(seq)", logger: logger, limit: .seconds(120))
                _ = try PostgresSession.run(c, "DELETE FROM understudy_snapshot_index WHERE seq = \(seq)", logger: logger, limit: .seconds(120))
                for i in 0..<chunks {
                    let start = i * chunkSize
                    let end = min(snapshot.data.count, start + chunkSize)
                    let data = ByteBuffer(bytes: snapshot.data[start..<end])
                    _ = try PostgresSession.run(c, "INSERT INTO understudy_snapshot_chunks (seq, chunk, data) VALUES (\(seq), \(Int32(i)), \(data))", logger: logger, limit: .seconds(120))
                }
                _ = try PostgresSession.run(c, """
                    INSERT INTO understudy_snapshot_index (seq, service, schema_version, size, crc, chunks, epoch)
                    VALUES (\(seq), \(snapshot.service), \(Int32(snapshot.schemaVersion)), \(Int64(snapshot.data.count)), \(Int64(crc)), \(Int32(chunks)), \(Int64(epoch)))
                    """, logger: logger, limit: .seconds(120))
                let kept = try PostgresSession.run(c, "SELECT seq FROM understudy_snapshot_index ORDER BY seq DESC OFFSET 1 LIMIT 1", logger: logger, limit: .seconds(120)).rows
                var older: Int64?
                if let row = kept.first {
                    let o = try row.decode(Int64.self)
                    older = o
                    _ = try PostgresSession.run(c, "DELETE FROM understudy_snapshot_chunks WHERE seq < \(o)", logger: logger, limit: .seconds(120))
                    _ = try PostgresSession.run(c, "DELETE FROM understudy_snapshot_index WHERE seq < \(o)", logger: logger, limit: .seconds(120))
                    _ = try PostgresSession.run(c, "DELETE FROM understudy_journal WHERE seq <= \(o)", logger: logger, limit: .seconds(120))
                }
                _ = try PostgresSession.run(c, "COMMIT", logger: logger, limit: .seconds(120))
                return older
            } catch {
                _ = try? PostgresSession.run(c, "ROLLBACK", logger: logger, limit: .seconds(120))
                if let e = error as? JournalError { throw e }
                throw JournalError(.database, "cannot write the snapshot at \(seq): \(PostgresSession.describe(error))")
            }
        }
        if let olderKept {
            state.withLock { $0.oldestSequence = max($0.oldestSequence, UInt64(olderKept) + 1) }
        }
    }

    /// The newest snapshot whose chunks are all there and pass the checksum; a damaged one is logged, recorded in
    /// ``snapshotRejections`` and passed over for the one before it.
    public func newestSnapshot() throws -> JournalSnapshot? {
        do {
            let index = try snapshotSession.query("""
                SELECT seq, service, schema_version, size, crc, chunks FROM understudy_snapshot_index ORDER BY seq DESC
                """).rows
            for row in index {
                let (seq, service, schema, size, crc, chunks) = try row.decode((Int64, String, Int32, Int64, Int64, Int32).self)
                let parts = try snapshotSession.query("SELECT chunk, data FROM understudy_snapshot_chunks WHERE seq = \(seq) ORDER BY chunk").rows
                var data: [UInt8] = []
                data.reserveCapacity(Int(size))
                var expected: Int32 = 0
                var complete = true
                for part in parts {
                    let (chunk, bytes) = try part.decode((Int32, ByteBuffer).self)
                    if chunk != expected { complete = false; break }
                    data += bytes.readableBytesView
                    expected += 1
                }
                let reason: String?
                if !complete || expected != chunks {
                    reason = "chunks missing (\(expected) of \(chunks))"
                } else if data.count != Int(size) {
                    reason = "size \(data.count), expected \(size)"
                } else if Int64(CRC32C.checksum(data)) != crc {
                    reason = "checksum mismatch"
                } else {
                    reason = nil
                }
                if let reason {
                    logger.error("snapshot at \(seq) in the database is damaged; trying an older one", metadata: ["understudy.reason": "\(reason)"])
                    state.withLock { $0.snapshotRejections.append(RecoveryReport.RejectedSnapshot(file: "\(address)#snapshot-\(seq)", reason: reason)) }
                    continue
                }
                return JournalSnapshot(service: service, schemaVersion: Int(schema), sequence: UInt64(seq), data: data)
            }
            return nil
        } catch let e as JournalError {
            throw e
        } catch {
            throw JournalError(.database, "cannot read snapshots: \(PostgresSession.describe(error))")
        }
    }
}
