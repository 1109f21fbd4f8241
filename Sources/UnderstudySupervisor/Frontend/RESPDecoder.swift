import NIOCore

/// Limits the RESP front-end enforces on client input (Redis's names in parentheses).
public struct RESPLimits: Sendable {
    /// The longest bulk string accepted (`proto-max-bulk-len`); default 32 MiB.
    public var maximumBulkLength: Int
    /// The most arguments one command may have; default 1 048 576 (Redis's multibulk limit).
    public var maximumArguments: Int
    /// The most unparsed bytes buffered per client (`client-query-buffer-limit`); default 64 MiB.
    public var maximumQueryBuffer: Int
    /// The longest inline command line; default 64 KiB (as redis-server).
    public var maximumInlineLength: Int

    /// Creates limits; the defaults are documented on each property.
    public init(
        maximumBulkLength: Int = 32 << 20, maximumArguments: Int = 1 << 20,
        maximumQueryBuffer: Int = 64 << 20, maximumInlineLength: Int = 64 << 10
    ) {
        self.maximumBulkLength = maximumBulkLength
        self.maximumArguments = maximumArguments
        self.maximumQueryBuffer = maximumQueryBuffer
        self.maximumInlineLength = maximumInlineLength
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
public struct RESPCommandDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPInput
    let limits: RESPLimits
    var failed = false
    /// When set, inputs go straight to it instead of down the pipeline (saves a boxing and a
    /// pipeline hop per command on the hot path).
    let sink: ((RESPInput) -> Void)?

    /// Creates a decoder.
    public init(limits: RESPLimits = RESPLimits()) {
        self.limits = limits
        self.sink = nil
    }

    init(limits: RESPLimits, sink: @escaping (RESPInput) -> Void) {
        self.limits = limits
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
        switch Self.parse(&buffer, limits: limits) {
        case .needMoreData:
            if buffer.readableBytes > limits.maximumQueryBuffer {
                return fail(context, "query buffer of \(buffer.readableBytes) bytes exceeds the limit", &buffer)
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

    /// The outcome of parsing one input from the front of a buffer.
    public enum ParseResult: Equatable {
        case needMoreData
        case skip
        case input([[UInt8]])
        case error(String)
    }

    /// Parses one input; consumes its bytes only when complete (or skipped).
    public static func parse(_ buffer: inout ByteBuffer, limits: RESPLimits) -> ParseResult {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return .needMoreData }
        if first == UInt8(ascii: "*") {
            return parseMultibulk(&buffer, limits: limits)
        }
        return parseInline(&buffer, limits: limits)
    }

    /// Reads a CRLF-terminated line starting at `index`; returns the line and the index after CRLF.
    static func line(in buffer: ByteBuffer, at index: Int, limit: Int) -> (ByteBufferView, Int)?? {
        let view = buffer.readableBytesView
        let start = index - buffer.readerIndex + view.startIndex
        guard start <= view.endIndex else { return .some(nil) }
        let searchEnd = min(view.endIndex, start + limit + 2)
        guard let lf = view[start..<searchEnd].firstIndex(of: UInt8(ascii: "\n")) else {
            return searchEnd - start >= limit + 2 ? nil : .some(nil)
        }
        var end = lf
        if end > start && view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        return .some((view[start..<end], buffer.readerIndex + (lf + 1 - view.startIndex)))
    }

    static func parseInteger(_ bytes: ByteBufferView) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 20 else { return nil }
        var negative = false
        var value = 0
        var first = true
        for b in bytes {
            if first && b == UInt8(ascii: "-") {
                negative = true
                first = false
                continue
            }
            first = false
            guard b >= 48 && b <= 57 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(b - 48))
            guard !o1 && !o2 else { return nil }
            value = s
        }
        return negative ? -value : value
    }

    static func parseMultibulk(_ buffer: inout ByteBuffer, limits: RESPLimits) -> ParseResult {
        var index = buffer.readerIndex
        guard let header = line(in: buffer, at: index, limit: limits.maximumInlineLength) else {
            return .error("too big mbulk count string")
        }
        guard let (countBytes, afterHeader) = header else { return .needMoreData }
        guard let count = parseInteger(countBytes.dropFirst()), count <= limits.maximumArguments else {
            return .error("invalid multibulk length")
        }
        index = afterHeader
        if count <= 0 {
            buffer.moveReaderIndex(to: index)
            return .skip
        }
        var args: [[UInt8]] = []
        args.reserveCapacity(count)
        for _ in 0..<count {
            guard let prefix = buffer.getInteger(at: index, as: UInt8.self) else { return .needMoreData }
            guard prefix == UInt8(ascii: "$") else {
                return .error("expected '$', got '\(Character(Unicode.Scalar(prefix)))'")
            }
            guard let bulkHeader = line(in: buffer, at: index, limit: 32) else { return .error("invalid bulk length") }
            guard let (lengthBytes, afterLength) = bulkHeader else { return .needMoreData }
            guard let length = parseInteger(lengthBytes.dropFirst()), length >= 0, length <= limits.maximumBulkLength else {
                return .error("invalid bulk length")
            }
            guard buffer.writerIndex - afterLength >= length + 2 else { return .needMoreData }
            args.append(buffer.getBytes(at: afterLength, length: length)!)
            index = afterLength + length + 2
        }
        buffer.moveReaderIndex(to: index)
        return .input(args)
    }

    static func parseInline(_ buffer: inout ByteBuffer, limits: RESPLimits) -> ParseResult {
        guard let found = line(in: buffer, at: buffer.readerIndex, limit: limits.maximumInlineLength) else {
            return .error("too big inline request")
        }
        guard let (lineBytes, next) = found else { return .needMoreData }
        guard let args = splitInline(Array(lineBytes)) else { return .error("unbalanced quotes in request") }
        buffer.moveReaderIndex(to: next)
        return args.isEmpty ? .skip : .input(args)
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
