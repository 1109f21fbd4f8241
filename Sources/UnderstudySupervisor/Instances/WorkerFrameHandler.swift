import NIOCore
import UnderstudyWire

/// Decodes length-prefixed worker frames from a channel into ``WireMessage``s.
struct WorkerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = WireMessage
    let maximumFrameSize: Int

    init(maximumFrameSize: Int = FrameCodec.defaultMaximumFrameSize) {
        self.maximumFrameSize = maximumFrameSize
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
        let body = buffer.readBytes(length: frameLength - 1)!
        context.fireChannelRead(wrapInboundOut(try FrameCodec.decode(type: type, body: body)))
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

    func channelReadComplete(context: ChannelHandlerContext) {
        instance.readComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        instance.connectionClosed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        instance.connectionFailed(error)
        context.close(promise: nil)
    }
}
