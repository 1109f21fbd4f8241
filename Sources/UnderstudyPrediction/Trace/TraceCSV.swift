import Foundation

/// One request of a trace file.
public struct TraceRecord: Sendable, Hashable {
    /// The timestamp (or index) column, used as milliseconds.
    public var timeMillis: Int64
    /// The operation word (get, set, read, write, access, GET, …).
    public var op: String
    /// The key.
    public var key: String
    /// The size column (-1 when unknown).
    public var size: Int64
    /// 1-based line number in the file.
    public var line: Int

    /// Whether the operation writes (set, write, put, insert, update, delete, del, incr, …).
    public var isWrite: Bool { TraceCSV.isWriteOperation(op) }
}

/// An error reading a trace.
public struct TraceError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Code: Equatable, Sendable {
        /// The file does not exist or cannot be read.
        case unreadable
        /// A data line is not `timestamp_or_index,op,key,size`.
        case malformedLine
        /// The file has no data lines.
        case empty
    }

    /// The kind of error.
    public var code: Code
    /// The file.
    public var path: String
    /// The 1-based line number, for `malformedLine`.
    public var line: Int?
    /// Details.
    public var reason: String

    public var description: String {
        switch code {
        case .unreadable: return "cannot read trace '\(path)': \(reason)"
        case .empty: return "trace '\(path)' has no requests: \(reason)"
        case .malformedLine:
            return "trace '\(path)' line \(line ?? 0): \(reason) (expected 'timestamp_or_index,op,key,size'; "
                + "use --skip-malformed to skip such lines)"
        }
    }
}

/// Parser for trace CSV files: a header line, then `timestamp_or_index,op,key,size` per line.
///
/// The header is the first line when its first column is not a number (a first line that parses
/// as data is kept as data). Blank lines are ignored. A key may contain commas: the key is every
/// column between the op and the last (size) column. The timestamp may be an integer or a decimal
/// (truncated); size is an integer and may be -1. A malformed line throws `TraceError` naming its
/// line number, unless `skipMalformed` is set, in which case it is skipped and counted.
public enum TraceCSV {
    /// The words treated as writes (compared case-insensitively).
    public static let writeOperations: Set<String> = [
        "set", "write", "put", "insert", "update", "delete", "del", "incr", "decr", "append", "hset", "lpush",
        "rpush", "sadd", "zadd", "mset", "expire", "remove", "add", "replace", "cas",
    ]

    /// Whether `op` names a write.
    public static func isWriteOperation(_ op: String) -> Bool {
        writeOperations.contains(op.lowercased())
    }

    /// Parses trace text.
    /// - Returns: the records and the number of malformed lines skipped.
    /// - Throws: `TraceError` (.malformedLine, .empty).
    public static func parse(_ text: String, path: String = "<memory>", skipMalformed: Bool = false) throws
        -> (records: [TraceRecord], skipped: Int)
    {
        var records: [TraceRecord] = []
        var skipped = 0
        var lineNumber = 0
        var sawContent = false
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            let first = fields[0].trimmingCharacters(in: .whitespaces)
            if !sawContent {
                sawContent = true
                if parseTime(first) == nil { continue }  // header
            }
            do {
                records.append(try parseLine(fields, line: lineNumber))
            } catch let reason as LineError {
                if skipMalformed { skipped += 1; continue }
                throw TraceError(code: .malformedLine, path: path, line: lineNumber, reason: reason.message)
            }
        }
        if records.isEmpty {
            throw TraceError(code: .empty, path: path, line: nil, reason: "no data lines after the header")
        }
        return (records, skipped)
    }

    /// Reads and parses a trace file.
    /// - Throws: `TraceError` (.unreadable when the file is missing or unreadable, or parse errors).
    public static func read(path: String, skipMalformed: Bool = false) throws -> (records: [TraceRecord], skipped: Int) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TraceError(code: .unreadable, path: path, line: nil, reason: "no such file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceError(code: .unreadable, path: path, line: nil, reason: "the file could not be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TraceError(code: .unreadable, path: path, line: nil, reason: "the file is not UTF-8 text")
        }
        return try parse(text, path: path, skipMalformed: skipMalformed)
    }

    private struct LineError: Error { var message: String }

    private static func parseTime(_ s: String) -> Int64? {
        if let v = Int64(s) { return v }
        if let d = Double(s), d.isFinite, abs(d) < 9e18 { return Int64(d) }
        return nil
    }

    private static func parseLine(_ fields: [Substring], line: Int) throws -> TraceRecord {
        guard fields.count >= 4 else {
            throw LineError(message: "expected 4 comma-separated columns, found \(fields.count)")
        }
        let timeText = fields[0].trimmingCharacters(in: .whitespaces)
        guard let time = parseTime(timeText) else {
            throw LineError(message: "timestamp '\(timeText)' is not a number")
        }
        let op = fields[1].trimmingCharacters(in: .whitespaces)
        guard !op.isEmpty else { throw LineError(message: "empty op") }
        let key = fields[2..<(fields.count - 1)].joined(separator: ",")
        guard !key.isEmpty else { throw LineError(message: "empty key") }
        let sizeText = fields[fields.count - 1].trimmingCharacters(in: .whitespaces)
        guard let size = Int64(sizeText) ?? (sizeText.isEmpty ? -1 : nil) else {
            throw LineError(message: "size '\(sizeText)' is not an integer")
        }
        return TraceRecord(timeMillis: time, op: op, key: key, size: size, line: line)
    }
}
