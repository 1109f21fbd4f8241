import NIOCore
import UnderstudyWire

/// Limits the RESP front-end enforces on client input (Redis's names in parentheses).
///
/// The defaults come from ``UnderstudyLimits``, the one set of limits the front-end, the journal and the worker
/// frames agree on; none may be raised above it (what the front-end accepts must fit a journal record and a frame).
public struct RESPLimits: Sendable {
    /// The longest bulk string accepted (`proto-max-bulk-len`); default 512 MiB.
    public var maximumBulkLength: Int
    /// The most arguments one command may have; default 1 048 576 (Redis's multibulk limit).
    public var maximumArguments: Int
    /// The most bytes held for one client's unfinished input, unparsed bytes and the arguments parsed so far
    /// (`client-query-buffer-limit`); default 1 GiB.
    public var maximumQueryBuffer: Int
    /// The longest inline command line; default 64 KiB (as redis-server).
    public var maximumInlineLength: Int
    /// The largest journaled input: a command whose encoding (``CommandCodec/encode(_:)``) would be longer is
    /// refused before it is journaled, and so is a MULTI queue whose transaction would be; default
    /// ``UnderstudyLimits/maxInputBytes`` (1 GiB minus 4 KiB).
    public var maximumInputBytes: Int

    /// Creates limits; the defaults are documented on each property.
    ///
    /// - Precondition: `maximumBulkLength`, `maximumArguments` and `maximumInputBytes` are positive and at most
    ///   their ``UnderstudyLimits`` counterparts (beyond those, a worker could not take the input).
    public init(
        maximumBulkLength: Int = UnderstudyLimits.maxBulkBytes, maximumArguments: Int = UnderstudyLimits.maxArguments,
        maximumQueryBuffer: Int = UnderstudyLimits.maxQueryBufferBytes, maximumInlineLength: Int = 64 << 10,
        maximumInputBytes: Int = UnderstudyLimits.maxInputBytes
    ) {
        precondition(
            maximumBulkLength >= 0 && maximumBulkLength <= UnderstudyLimits.maxBulkBytes,
            "maximumBulkLength must be at most UnderstudyLimits.maxBulkBytes")
        precondition(
            maximumArguments > 0 && maximumArguments <= UnderstudyLimits.maxArguments,
            "maximumArguments must be at most UnderstudyLimits.maxArguments")
        precondition(
            maximumInputBytes > 0 && maximumInputBytes <= UnderstudyLimits.maxInputBytes,
            "maximumInputBytes must be at most UnderstudyLimits.maxInputBytes")
        precondition(maximumQueryBuffer > 0 && maximumInlineLength > 0, "limits must be positive")
        self.maximumBulkLength = maximumBulkLength
        self.maximumArguments = maximumArguments
        self.maximumQueryBuffer = maximumQueryBuffer
        self.maximumInlineLength = maximumInlineLength
        self.maximumInputBytes = maximumInputBytes
    }
}

/// One decoded client input.
public enum RESPInput: Sendable, Equatable {
    /// A command with its arguments (the name is the first).
    case command([[UInt8]])
    /// Bad input: the connection answers `-ERR Protocol error: <message>` and closes.
    case protocolError(String)
}

/// Decodes RESP2 multibulk arrays and inline commands, as redis-server accepts them.
///
/// The parsing is incremental (see ``RESPRequestParser``): a request arriving in a thousand pieces costs one pass.
public struct RESPCommandDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPInput
    var parser: RESPRequestParser
    var failed = false
    /// When set, inputs go straight to it instead of down the pipeline (saves a boxing and a
    /// pipeline hop per command on the hot path).
    let sink: ((RESPInput) -> Void)?

    /// The limits enforced.
    public var limits: RESPLimits { parser.limits }

    /// Creates a decoder.
    public init(limits: RESPLimits = RESPLimits()) {
        self.parser = RESPRequestParser(limits: limits)
        self.sink = nil
    }

    init(limits: RESPLimits, sink: @escaping (RESPInput) -> Void) {
        self.parser = RESPRequestParser(limits: limits)
        self.sink = sink
    }

    private func deliver(_ context: ChannelHandlerContext, _ input: RESPInput) {
        if let sink { sink(input) } else { context.fireChannelRead(wrapInboundOut(input)) }
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard !failed else {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        switch parser.next(&buffer) {
        case .needMoreData:
            let held = buffer.readableBytes + parser.bufferedArgumentBytes
            if held > parser.limits.maximumQueryBuffer {
                return fail(context, "query buffer of \(held) bytes exceeds the limit", &buffer)
            }
            return .needMoreData
        case .skip:
            return .continue
        case .input(let args):
            deliver(context, .command(args))
            return .continue
        case .error(let message):
            return fail(context, message, &buffer)
        }
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }

    mutating func fail(_ context: ChannelHandlerContext, _ message: String, _ buffer: inout ByteBuffer) -> DecodingState {
        failed = true
        buffer.moveReaderIndex(to: buffer.writerIndex)
        deliver(context, .protocolError(message))
        return .needMoreData
    }
}

/// Parses RESP2 requests (multibulk arrays and inline commands) from a growing buffer, resuming where it stopped.
///
/// Each call consumes what it has parsed: the count line, then each argument as it completes, which the parser
/// keeps until the command is whole. Between calls it remembers how many arguments the command announced, the
/// arguments parsed so far, the length of the bulk being read and how far it has searched an unfinished line,
/// so every byte is examined once however the request is split (as the incremental decoders of swift-nio do).
/// The buffer may be compacted between calls: nothing refers to absolute indices.
public struct RESPRequestParser: Sendable {
    /// The outcome of one call to ``next(_:)``.
    public enum Result: Equatable, Sendable {
        /// The buffer holds no complete input yet; what was parsed is kept.
        case needMoreData
        /// An empty input (an empty line, or a multibulk count of zero or less) was consumed.
        case skip
        /// A complete command.
        case input([[UInt8]])
        /// A protocol error, with redis-server's wording; the parser must not be used again.
        case error(String)
    }

    /// The limits enforced.
    public let limits: RESPLimits
    /// The arguments the command being parsed announced; 0 between commands.
    private var expected = 0
    /// The arguments parsed so far.
    private var arguments: [[UInt8]] = []
    /// The length of the bulk being read, or -1 while its `$` line is not read yet.
    private var bulkLength = -1
    /// How many bytes after the reader index were already searched for the end of the current line.
    private var scanned = 0
    /// The encoded size (``CommandCodec/encode(_:)``) of the command so far, counting the bulk being read.
    private var encodedSize = 0
    /// The bytes held in ``arguments``.
    public private(set) var bufferedArgumentBytes = 0
    /// The bytes examined so far (searched for a line end, or copied out): a measure of the parser's work.
    private(set) var examinedBytes = 0

    /// Creates a parser.
    public init(limits: RESPLimits = RESPLimits()) {
        self.limits = limits
    }

    /// Parses the next input from the front of `buffer`, consuming what it parsed.
    ///
    /// - Parameter buffer: The bytes received and not yet consumed; more may be appended before the next call.
    /// - Returns: A complete input, ``Result/needMoreData``, ``Result/skip`` or a protocol error.
    public mutating func next(_ buffer: inout ByteBuffer) -> Result {
        if expected == 0 {
            guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
            guard first == UInt8(ascii: "*") else { return nextInline(&buffer) }
            let lineEnd: Int
            switch findLine(buffer, limit: limits.maximumInlineLength) {
            case .found(let end): lineEnd = end
            case .incomplete: return .needMoreData
            case .tooLong: return .error("too big mbulk count string")
            }
            guard let count = Self.integer(in: buffer, from: 1, lineEnd: lineEnd), count <= limits.maximumArguments else {
                return .error("invalid multibulk length")
            }
            buffer.moveReaderIndex(forwardBy: lineEnd + 1)
            if count <= 0 { return .skip }
            expected = count
            encodedSize = CommandCodec.varintSize(count)
            // As redis-server: a count alone does not reserve room for a million arguments.
            arguments.reserveCapacity(min(count, 1024))
        }
        while arguments.count < expected {
            if bulkLength < 0 {
                guard let prefix = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
                guard prefix == UInt8(ascii: "$") else {
                    return .error("expected '$', got '\(Character(Unicode.Scalar(prefix)))'")
                }
                let lineEnd: Int
                switch findLine(buffer, limit: 32) {
                case .found(let end): lineEnd = end
                case .incomplete: return .needMoreData
                case .tooLong: return .error("invalid bulk length")
                }
                guard let length = Self.integer(in: buffer, from: 1, lineEnd: lineEnd), length >= 0,
                    length <= limits.maximumBulkLength
                else {
                    return .error("invalid bulk length")
                }
                encodedSize += CommandCodec.varintSize(length) + length
                guard encodedSize <= limits.maximumInputBytes else {
                    return .error("command exceeds the maximum input size of \(limits.maximumInputBytes) bytes")
                }
                buffer.moveReaderIndex(forwardBy: lineEnd + 1)
                bulkLength = length
            }
            guard buffer.readableBytes >= bulkLength + 2 else { return .needMoreData }
            // The two bytes after the bulk are not checked, as in redis-server.
            arguments.append(buffer.readBytes(length: bulkLength)!)
            buffer.moveReaderIndex(forwardBy: 2)
            examinedBytes &+= bulkLength + 2
            bufferedArgumentBytes += bulkLength
            bulkLength = -1
        }
        var command: [[UInt8]] = []
        swap(&command, &arguments)
        expected = 0
        encodedSize = 0
        bufferedArgumentBytes = 0
        return .input(command)
    }

    private mutating func nextInline(_ buffer: inout ByteBuffer) -> Result {
        let lineEnd: Int
        switch findLine(buffer, limit: limits.maximumInlineLength) {
        case .found(let end): lineEnd = end
        case .incomplete: return .needMoreData
        case .tooLong: return .error("too big inline request")
        }
        let line = buffer.getBytes(at: buffer.readerIndex, length: Self.contentEnd(buffer, lineEnd: lineEnd))!
        guard let command = Self.splitInline(line) else { return .error("unbalanced quotes in request") }
        guard CommandCodec.encodedSize(command) <= limits.maximumInputBytes else {
            return .error("command exceeds the maximum input size of \(limits.maximumInputBytes) bytes")
        }
        buffer.moveReaderIndex(forwardBy: lineEnd + 1)
        return command.isEmpty ? .skip : .input(command)
    }

    private enum Line {
        /// The line's LF is this many bytes after the reader index.
        case found(Int)
        case incomplete
        case tooLong
    }

    /// Finds the LF ending the line at the reader index, searching only bytes not searched before.
    private mutating func findLine(_ buffer: ByteBuffer, limit: Int) -> Line {
        let searchEnd = min(buffer.readableBytes, limit + 2)
        let start = scanned
        if start < searchEnd {
            let found = buffer.withUnsafeReadableBytes { raw in
                raw[start..<searchEnd].firstIndex(of: UInt8(ascii: "\n"))
            }
            if let found {
                examinedBytes &+= found + 1 - start
                scanned = 0
                return .found(found)
            }
            examinedBytes &+= searchEnd - start
            scanned = searchEnd
        }
        return searchEnd >= limit + 2 ? .tooLong : .incomplete
    }

    /// The length of a line's content: up to its LF, less a CR before it.
    private static func contentEnd(_ buffer: ByteBuffer, lineEnd: Int) -> Int {
        guard lineEnd > 0, buffer.getInteger(at: buffer.readerIndex + lineEnd - 1, as: UInt8.self) == 13 else {
            return lineEnd
        }
        return lineEnd - 1
    }

    /// Parses the decimal integer in a line's content from offset `from` (after the `*` or `$`).
    static func integer(in buffer: ByteBuffer, from: Int, lineEnd: Int) -> Int? {
        let end = contentEnd(buffer, lineEnd: lineEnd)
        guard end > from, end - from <= 20 else { return nil }
        return buffer.withUnsafeReadableBytes { raw -> Int? in
            var index = from
            let negative = raw[index] == UInt8(ascii: "-")
            if negative { index += 1 }
            guard index < end else { return nil }
            var value = 0
            while index < end {
                let digit = raw[index] &- 48
                guard digit <= 9 else { return nil }
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int(digit))
                guard !o1 && !o2 else { return nil }
                value = s
                index += 1
            }
            return negative ? -value : value
        }
    }

    /// Splits an inline command line the way redis-server's `sdssplitargs` does (quotes and escapes).
    public static func splitInline(_ line: [UInt8]) -> [[UInt8]]? {
        var args: [[UInt8]] = []
        var i = 0
        let n = line.count
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 || b == 11 || b == 12 }
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 48...57: return b - 48
            case 97...102: return b - 87
            case 65...70: return b - 55
            default: return nil
            }
        }
        while true {
            while i < n && isSpace(line[i]) { i += 1 }
            if i >= n { return args }
            var current: [UInt8] = []
            var inDouble = false
            var inSingle = false
            while true {
                if inDouble {
                    guard i < n else { return nil }
                    let c = line[i]
                    if c == 92 && i + 3 < n && line[i + 1] == UInt8(ascii: "x"), let h = hex(line[i + 2]), let l = hex(line[i + 3]) {
                        current.append(h << 4 | l)
                        i += 3
                    } else if c == 92 && i + 1 < n {
                        i += 1
                        switch line[i] {
                        case UInt8(ascii: "n"): current.append(10)
                        case UInt8(ascii: "r"): current.append(13)
                        case UInt8(ascii: "t"): current.append(9)
                        case UInt8(ascii: "b"): current.append(8)
                        case UInt8(ascii: "a"): current.append(7)
                        default: current.append(line[i])
                        }
                    } else if c == 34 {
                        if i + 1 < n && !isSpace(line[i + 1]) { return nil }
                        inDouble = false
                        i += 1
                        break
                    } else {
                        current.append(c)
                    }
                } else if inSingle {
                    guard i < n else { return nil }
                    let c = line[i]
                    if c == 92 && i + 1 < n && line[i + 1] == 39 {
                        i += 1
                        current.append(39)
                    } else if c == 39 {
                        if i + 1 < n && !isSpace(line[i + 1]) { return nil }
                        inSingle = false
                        i += 1
                        break
                    } else {
                        current.append(c)
                    }
                } else {
                    if i >= n { break }
                    let c = line[i]
                    if isSpace(c) { break }
                    if c == 34 { inDouble = true } else if c == 39 { inSingle = true } else { current.append(c) }
                }
                i += 1
            }
            args.append(current)
        }
    }
}
