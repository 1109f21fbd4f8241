/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), table-driven with slicing-by-8.
///
/// Every journal record and snapshot carries one of these. `checksum("123456789")` is `0xE3069283`.
public enum CRC32C {
    /// Eight 256-entry tables, laid out one after another (table `k` starts at `k * 256`).
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
            }
            tables[index] = crc
        }
        for table in 1..<8 {
            for index in 0..<256 {
                let previous = tables[(table - 1) * 256 + index]
                tables[table * 256 + index] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// Computes the CRC-32C of `bytes`.
    ///
    /// - Parameter bytes: The bytes to checksum.
    /// - Returns: The checksum.
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        update(0, bytes)
    }

    /// Extends a checksum with more bytes: `update(checksum(a), b) == checksum(a + b)`.
    ///
    /// - Parameters:
    ///   - crc: The checksum of the bytes so far (`0` for none).
    ///   - bytes: The bytes that follow.
    /// - Returns: The checksum of all the bytes.
    public static func update(_ crc: UInt32, _ bytes: some Collection<UInt8>) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { update(crc, $0) }
    }

    /// Extends a checksum with the bytes in a raw buffer.
    ///
    /// - Parameters:
    ///   - crc: The checksum of the bytes so far (`0` for none).
    ///   - buffer: The bytes that follow.
    /// - Returns: The checksum of all the bytes.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard var pointer = buffer.baseAddress, buffer.count > 0 else { return crc }
        var remaining = buffer.count
        var crc = ~crc
        tables.withUnsafeBufferPointer { table in
            while remaining >= 8 {
                let word = pointer.loadUnaligned(as: UInt64.self).littleEndian ^ UInt64(crc)
                let low = UInt32(truncatingIfNeeded: word)
                let high = UInt32(truncatingIfNeeded: word >> 32)
                crc = table[7 * 256 + Int(low & 0xFF)]
                    ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)]
                    ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)]
                    ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)]
                    ^ table[Int(high >> 24)]
                pointer += 8
                remaining -= 8
            }
            while remaining > 0 {
                let byte = pointer.load(as: UInt8.self)
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
                pointer += 1
                remaining -= 1
            }
        }
        return ~crc
    }
}
