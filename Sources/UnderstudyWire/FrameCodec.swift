/// Errors reading frames: each is a typed value, never a crash.
public enum FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The length prefix announces more than the maximum frame size.
    case frameTooLarge(length: Int, maximum: Int)
    /// The frame type byte is not one this build knows.
    case unknownFrameType(UInt8)
    /// The frame's body does not decode as its type says.
    case malformed(type: UInt8, reason: String)
    /// The stream ended in the middle of a frame.
    case truncated(missing: Int)

    public var description: String {
        switch self {
        case let .frameTooLarge(length, maximum):
            return "frame of \(length) bytes exceeds the maximum of \(maximum) bytes"
        case let .unknownFrameType(t):
            return "unknown frame type \(t)"
        case let .malformed(type, reason):
            return "malformed frame of type \(type): \(reason)"
        case let .truncated(missing):
            return "stream ended inside a frame (\(missing) bytes missing)"
        }
    }

    /// The wire error code that reports this error to the peer.
    public var wireCode: WireErrorCode {
        switch self {
        case .frameTooLarge: return .frameTooLarge
        case .unknownFrameType: return .unknownFrameType
        case .malformed, .truncated: return .malformedFrame
        }
    }
}

/// Frame layout: `UInt32` little-endian length of what follows, one type byte, then the body.
public enum FrameCodec {
    /// The default maximum frame size (type byte plus body), in both directions: ``UnderstudyLimits/maxFrameBytes``
    /// (1 GiB), so a frame carries any input the journal accepts (``UnderstudyLimits/maxInputBytes``) and a
    /// reply of the same size.
    public static let defaultMaximumFrameSize = UnderstudyLimits.maxFrameBytes
    /// The bytes before the type byte.
    public static let lengthPrefixSize = 4

    /// Encodes a message as one complete frame.
    public static func encode(_ message: WireMessage) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        encode(message, into: &w)
        return w.bytes
    }

    /// Appends one complete frame for `message` to `writer`.
    public static func encode(_ message: WireMessage, into writer: inout ByteWriter) {
        let start = writer.bytes.count
        writer.write(UInt32(0))  // patched below
        writer.write(message.frameType)
        message.encodeBody(into: &writer)
        let length = UInt32(writer.bytes.count - start - lengthPrefixSize)
        withUnsafeBytes(of: length.littleEndian) { raw in
            for i in 0..<4 { writer.bytes[start + i] = raw[i] }
        }
    }

    /// Decodes one frame's type and body (without the length prefix).
    public static func decode(type: UInt8, body: [UInt8], from: Int = 0, to: Int? = nil) throws(FrameError) -> WireMessage {
        var r = ByteReader(body, from: from, to: to)
        do {
            let m = try WireMessage.decodeBody(type: type, reader: &r)
            guard r.isAtEnd else { throw FrameError.malformed(type: type, reason: "\(r.remaining) trailing bytes") }
            return m
        } catch let e as FrameError {
            throw e
        } catch let e as DecodingError {
            throw FrameError.malformed(type: type, reason: e.context)
        } catch {
            throw FrameError.malformed(type: type, reason: "\(error)")
        }
    }
}

/// Accumulates bytes from a stream and yields complete messages.
///
/// Feed it whatever `read(2)` returned; call ``next()`` until it returns nil. An oversized
/// length prefix is reported as soon as the prefix arrives, before any body is buffered.
public struct FrameDecoder: Sendable {
    /// The maximum frame size accepted.
    public let maximumFrameSize: Int
    var buffer: [UInt8] = []
    var readIndex = 0

    /// Creates a decoder that accepts frames up to ``FrameCodec/defaultMaximumFrameSize``.
    // Not a default argument: those are compiled into each caller, so a caller built before the limit
    // changed would keep the old one.
    public init() {
        self.maximumFrameSize = FrameCodec.defaultMaximumFrameSize
    }

    /// Creates a decoder.
    /// - Parameter maximumFrameSize: The largest frame accepted (type byte plus body).
    public init(maximumFrameSize: Int) {
        self.maximumFrameSize = maximumFrameSize
    }

    /// Bytes buffered but not yet decoded.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Appends bytes read from the stream.
    public mutating func append(_ bytes: some Collection<UInt8>) {
        compactIfNeeded()
        buffer.append(contentsOf: bytes)
    }

    /// Appends bytes from a raw buffer.
    public mutating func append(buffer raw: UnsafeRawBufferPointer) {
        compactIfNeeded()
        buffer.append(contentsOf: raw)
    }

    mutating func compactIfNeeded() {
        if readIndex > 0 && (readIndex == buffer.count || readIndex > 1 << 16) {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }

    /// Returns the next complete message, nil if more bytes are needed, or throws on a bad frame.
    ///
    /// After a malformed or unknown frame the decoder has skipped that frame, so the caller may
    /// report the error and continue; after `frameTooLarge` the stream cannot be resynchronised.
    public mutating func next() throws(FrameError) -> WireMessage? {
        let available = buffer.count - readIndex
        guard available >= FrameCodec.lengthPrefixSize else { return nil }
        var length = 0
        for i in 0..<4 { length |= Int(buffer[readIndex + i]) << (8 * i) }
        guard length >= 1 else {
            readIndex += FrameCodec.lengthPrefixSize
            throw FrameError.malformed(type: 0, reason: "empty frame")
        }
        guard length <= maximumFrameSize else {
            throw FrameError.frameTooLarge(length: length, maximum: maximumFrameSize)
        }
        guard available >= FrameCodec.lengthPrefixSize + length else { return nil }
        let type = buffer[readIndex + 4]
        let bodyStart = readIndex + 5
        let bodyEnd = readIndex + 4 + length
        readIndex = bodyEnd
        return try FrameCodec.decode(type: type, body: buffer, from: bodyStart, to: bodyEnd)
    }

    /// Call at end of stream: throws `truncated` if a partial frame is buffered.
    public func finish() throws(FrameError) {
        let available = buffer.count - readIndex
        guard available > 0 else { return }
        if available < 4 { throw FrameError.truncated(missing: 4 - available) }
        var length = 0
        for i in 0..<4 { length |= Int(buffer[readIndex + i]) << (8 * i) }
        throw FrameError.truncated(missing: length + 4 - available)
    }
}

/// Encodes Redis-style argument lists as journal payloads.
public enum CommandCodec {
    /// Encodes one command's arguments.
    public static func encode(_ arguments: [[UInt8]]) -> [UInt8] {
        var w = ByteWriter(capacity: 16 + arguments.reduce(0) { $0 + $1.count + 2 })
        encode(arguments, into: &w)
        return w.bytes
    }

    /// Appends one command's arguments.
    public static func encode(_ arguments: [[UInt8]], into w: inout ByteWriter) {
        w.writeVarint(UInt64(arguments.count))
        for a in arguments { w.writeBytes(a) }
    }

    /// Decodes one command's arguments.
    public static func decode(_ payload: [UInt8]) throws(DecodingError) -> [[UInt8]] {
        var r = ByteReader(payload)
        let args = try decode(from: &r)
        guard r.isAtEnd else { throw DecodingError("trailing bytes after command") }
        return args
    }

    /// Reads one command's arguments.
    public static func decode(from r: inout ByteReader) throws(DecodingError) -> [[UInt8]] {
        let n = try r.readCount(limit: min(UnderstudyLimits.maxArguments, r.remaining))
        var args: [[UInt8]] = []
        args.reserveCapacity(n)
        for _ in 0..<n { args.append(try r.readBytes()) }
        return args
    }

    /// Encodes a transaction (a list of commands).
    public static func encodeTransaction(_ commands: [[[UInt8]]]) -> [UInt8] {
        var w = ByteWriter()
        w.writeVarint(UInt64(commands.count))
        for c in commands { encode(c, into: &w) }
        return w.bytes
    }

    /// Decodes a transaction.
    public static func decodeTransaction(_ payload: [UInt8]) throws(DecodingError) -> [[[UInt8]]] {
        var r = ByteReader(payload)
        // A transaction has no command limit of its own (it is bounded by ``UnderstudyLimits/maxInputBytes``);
        // every command takes at least one byte.
        let n = try r.readCount(limit: r.remaining)
        var out: [[[UInt8]]] = []
        for _ in 0..<n { out.append(try decode(from: &r)) }
        guard r.isAtEnd else { throw DecodingError("trailing bytes after transaction") }
        return out
    }
}
