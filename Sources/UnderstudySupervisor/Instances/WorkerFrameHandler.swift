import NIOCore
import UnderstudyWire

/// Decodes length-prefixed worker frames from a channel into ``WireMessage``s.
///
/// Messages go straight to the instance (no trip down the channel pipeline), and `applied` frames —
/// one per request per instance — are parsed directly from the buffer.
struct WorkerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = WireMessage
    let maximumFrameSize: Int
    unowned let instance: WorkerInstance

    init(instance: WorkerInstance, maximumFrameSize: Int = FrameCodec.defaultMaximumFrameSize) {
        self.instance = instance
        self.maximumFrameSize = maximumFrameSize
    }

    private static func readVarint(_ buffer: inout ByteBuffer) throws -> Int {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard shift < 64, let byte: UInt8 = buffer.readInteger() else {
                throw FrameError.malformed(type: 4, reason: "bad varint")
            }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        guard result <= UInt64(buffer.readableBytes) else { throw FrameError.malformed(type: 4, reason: "length beyond frame") }
        return Int(result)
    }

    private static func readList(_ buffer: inout ByteBuffer) throws -> [[UInt8]] {
        let count = try readVarint(&buffer)
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let n = try readVarint(&buffer)
            out.append(buffer.readBytes(length: n)!)
        }
        return out
    }

    /// Parses an `applied` body (see WireMessage+Coding) without intermediate copies.
    private static func parseApplied(_ body: inout ByteBuffer) throws -> ApplyResult {
        guard let sequence = body.readInteger(endianness: .little, as: UInt64.self) else {
            throw FrameError.malformed(type: 4, reason: "short applied frame")
        }
        let n = try readVarint(&body)
        let response = body.readBytes(length: n)!
        let touched = try readList(&body)
        let written = try readList(&body)
        var result = ApplyResult(sequence: sequence, response: response, touched: touched, written: written)
        if body.readableBytes > 0 {
            // The optional tail: the pending flag and replies to earlier inputs (deferred replies).
            guard let flag: UInt8 = body.readInteger(), flag <= 1 else {
                throw FrameError.malformed(type: 4, reason: "bad pending flag")
            }
            result.pending = flag == 1
            let count = try readVarint(&body)
            result.deferredReplies.reserveCapacity(count)
            for _ in 0..<count {
                guard let seq = body.readInteger(endianness: .little, as: UInt64.self) else {
                    throw FrameError.malformed(type: 4, reason: "short deferred reply")
                }
                let n = try readVarint(&body)
                result.deferredReplies.append(DeferredReply(sequence: seq, response: body.readBytes(length: n)!))
            }
        }
        guard body.readableBytes == 0 else { throw FrameError.malformed(type: 4, reason: "trailing bytes") }
        return result
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else {
            return .needMoreData
        }
        let frameLength = Int(length)
        guard frameLength >= 1 else { throw FrameError.malformed(type: 0, reason: "empty frame") }
        guard frameLength <= maximumFrameSize else {
            throw FrameError.frameTooLarge(length: frameLength, maximum: maximumFrameSize)
        }
        guard buffer.readableBytes >= 4 + frameLength else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let type: UInt8 = buffer.readInteger()!
        if type == 4 {
            var body = buffer.readSlice(length: frameLength - 1)!
            instance.received(.applied(try Self.parseApplied(&body)))
            return .continue
        }
        let body = buffer.readBytes(length: frameLength - 1)!
        instance.received(try FrameCodec.decode(type: type, body: body))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Hands a worker channel's messages and lifecycle to its ``WorkerInstance`` (on the same event loop).
final class WorkerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = WireMessage
    let instance: WorkerInstance

    init(instance: WorkerInstance) { self.instance = instance }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        instance.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        instance.connectionClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        instance.connectionFailed(error)
        context.close(promise: nil)
    }
}
