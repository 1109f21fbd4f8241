import NIOCore
import UnderstudyWire

/// Decodes length-prefixed worker frames from a channel into ``WireMessage``s.
///
/// Messages go straight to the instance (no trip down the channel pipeline), and `applied` frames —
/// one per request per instance — are decoded in place from the buffer (``FrameCodec/decodeAppliedBody(_:)``).
struct WorkerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = WireMessage
    let maximumFrameSize: Int
    unowned let instance: WorkerInstance

    init(instance: WorkerInstance, maximumFrameSize: Int = FrameCodec.defaultMaximumFrameSize) {
        self.instance = instance
        self.maximumFrameSize = maximumFrameSize
    }

    /// Reads the complete `applied` frame at the buffer's reader index in place: the body is decoded where it lies,
    /// each reply and key copied out once. The caller has checked the length: at least 1, and all of it readable.
    /// - Throws: ``FrameError/malformed(type:reason:)`` for a body that does not decode.
    static func readApplied(_ buffer: inout ByteBuffer, frameLength: Int) throws -> ApplyResult {
        // The body starts past the length prefix and the type byte.
        let result = try buffer.withUnsafeReadableBytes { raw in
            try FrameCodec.decodeAppliedBody(UnsafeRawBufferPointer(rebasing: raw[5..<(4 + frameLength)]))
        }
        buffer.moveReaderIndex(forwardBy: 4 + frameLength)
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
        let type: UInt8 = buffer.getInteger(at: buffer.readerIndex + 4)!
        if type == FrameCodec.appliedFrameType {
            instance.received(.applied(try Self.readApplied(&buffer, frameLength: frameLength)))
            return .continue
        }
        buffer.moveReaderIndex(forwardBy: 5)
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
