/// A checkpoint of a service's state, covering every record up to and including `sequence`.
public struct JournalSnapshot: Sendable, Equatable {
    /// The service the state belongs to.
    public var service: String
    /// The service's state schema version.
    public var schemaVersion: Int
    /// The last sequence number the snapshot covers (0 = the initial state).
    public var sequence: UInt64
    /// The serialized state.
    public var data: [UInt8]

    /// Creates a snapshot.
    ///
    /// - Parameters:
    ///   - service: The service the state belongs to.
    ///   - schemaVersion: The state's schema version.
    ///   - sequence: The last sequence number covered (0 = initial state).
    ///   - data: The serialized state.
    public init(service: String, schemaVersion: Int, sequence: UInt64, data: [UInt8]) {
        self.service = service
        self.schemaVersion = schemaVersion
        self.sequence = sequence
        self.data = data
    }
}

/// The snapshot file layout, little-endian:
///
/// ```
/// "USNP" magic, u32 format version (1), i64 schema version, u64 sequence,
/// u32 service length, service UTF-8, u64 data length, data, u32 CRC32C of everything before it
/// ```
enum SnapshotCodec {
    static let magic: [UInt8] = Array("USNP".utf8)
    static let formatVersion: UInt32 = 1

    static func fileName(sequence: UInt64) -> String {
        "snapshot-\(zeroPadded(sequence)).snap"
    }

    /// The sequence in a snapshot file name, or nil if it is not one.
    static func sequence(fromFileName name: String) -> UInt64? {
        guard name.hasPrefix("snapshot-"), name.hasSuffix(".snap") else { return nil }
        let digits = name.dropFirst("snapshot-".count).dropLast(".snap".count)
        guard digits.count == 20 else { return nil }
        return UInt64(digits)
    }

    static func encode(_ snapshot: JournalSnapshot) -> [UInt8] {
        var bytes: [UInt8] = []
        let service = Array(snapshot.service.utf8)
        bytes.reserveCapacity(40 + service.count + snapshot.data.count)
        bytes += magic
        appendInteger(formatVersion, to: &bytes)
        appendInteger(Int64(snapshot.schemaVersion), to: &bytes)
        appendInteger(snapshot.sequence, to: &bytes)
        appendInteger(UInt32(service.count), to: &bytes)
        bytes += service
        appendInteger(UInt64(snapshot.data.count), to: &bytes)
        bytes += snapshot.data
        appendInteger(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// Decodes and verifies a snapshot file's bytes; the error string says what is wrong.
    static func decode(_ bytes: [UInt8]) -> Result<JournalSnapshot, SnapshotDecodingError> {
        bytes.withUnsafeBytes { raw in
            guard raw.count >= 4 + 4 + 8 + 8 + 4 + 8 + 4 else {
                return .failure(SnapshotDecodingError("file too short (\(raw.count) bytes)"))
            }
            guard Array(raw[0..<4]) == magic else { return .failure(SnapshotDecodingError("bad magic")) }
            let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self))
            let computed = CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 4)]))
            guard stored == computed else {
                return .failure(SnapshotDecodingError(
                    "checksum mismatch (stored \(hex(stored)), computed \(hex(computed)))"
                ))
            }
            let version = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            guard version == formatVersion else {
                return .failure(SnapshotDecodingError("unknown snapshot format version \(version)"))
            }
            let schema = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: Int64.self))
            let sequence = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            let serviceLength = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt32.self)))
            var offset = 28
            guard serviceLength <= raw.count - offset - 12 else {
                return .failure(SnapshotDecodingError("service name length out of range"))
            }
            let service = String(decoding: raw[offset..<(offset + serviceLength)], as: UTF8.self)
            offset += serviceLength
            let dataLength = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
            guard dataLength == UInt64(raw.count - offset - 4) else {
                return .failure(SnapshotDecodingError("data length \(dataLength) does not match the file size"))
            }
            let data = Array(raw[offset..<(raw.count - 4)])
            return .success(JournalSnapshot(
                service: service, schemaVersion: Int(schema), sequence: sequence, data: data
            ))
        }
    }

    private static func appendInteger<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

struct SnapshotDecodingError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}

func zeroPadded(_ value: UInt64) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
}
