import NIOCore
import UnderstudyWire

/// One client connection: answers connection-scoped commands itself, sends the rest through the
/// pipeline, and writes replies strictly in request order.
///
/// Runs on the core event loop, like the pipeline, so submitting a request is a plain call.
// Safety of @unchecked Sendable: the handler lives on its channel's event loop, which is the core
// loop; every method (including reply sinks the pipeline calls) runs there.
final class RESPConnectionHandler: ChannelInboundHandler, Flushable, @unchecked Sendable {
    typealias InboundIn = RESPInput
    typealias OutboundOut = ByteBuffer

    let pipeline: RequestPipeline
    let clientID: Int64
    /// The largest journaled input: a command or a whole MULTI/EXEC transaction (``RESPLimits/maximumInputBytes``).
    let maximumInputBytes: Int
    private var context: ChannelHandlerContext?
    private var slots = CircularBuffer<[UInt8]?>()
    private var slotBase = 0
    private var wroteSinceFlush = false
    private var closeAfterReplies = false
    private var inMulti = false
    private var multiQueue: [[[UInt8]]] = []
    /// The encoded size of the commands in `multiQueue` (``CommandCodec/encodedSize(_:)`` of each).
    private var multiQueueBytes = 0
    private var multiFailed = false
    private var name: [UInt8]?

    /// Creates the handler of one connection.
    ///
    /// - Parameters:
    ///   - pipeline: Where commands go to be journaled and applied.
    ///   - clientID: The connection's id (`CLIENT ID`).
    ///   - maximumInputBytes: The largest journaled input (default ``UnderstudyLimits/maxInputBytes``); a larger
    ///     command or MULTI queue is refused before it reaches the pipeline.
    init(pipeline: RequestPipeline, clientID: Int64, maximumInputBytes: Int = UnderstudyLimits.maxInputBytes) {
        self.pipeline = pipeline
        self.clientID = clientID
        self.maximumInputBytes = maximumInputBytes
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deliver(unwrapInboundIn(data))
    }

    /// Handles one decoded input (called directly by the decoder on the hot path).
    func deliver(_ input: RESPInput) {
        guard !closeAfterReplies else { return }
        switch input {
        case .protocolError(let message):
            reply(RESPValue.errorBytes("ERR Protocol error: \(message)"))
            closeAfterReplies = true
        case .command(let args):
            handle(args)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private static func upper(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).uppercased()
    }

    /// Whether a command name may be one the connection answers itself (QUIT, MULTI, DISCARD, EXEC, WATCH,
    /// UNWATCH, SELECT, CLIENT), judged from its length and first letter without building a string.
    private static func mayBeConnectionCommand(_ name: [UInt8]) -> Bool {
        guard let first = name.first else { return true }
        switch (name.count, first | 0x20) {
        case (4, UInt8(ascii: "q")), (5, UInt8(ascii: "m")), (7, UInt8(ascii: "d")), (4, UInt8(ascii: "e")),
            (5, UInt8(ascii: "w")), (7, UInt8(ascii: "u")), (6, UInt8(ascii: "s")), (6, UInt8(ascii: "c")):
            return true
        default:
            return false
        }
    }

    private func handle(_ args: [[UInt8]]) {
        // The hot path: data commands go straight to the pipeline.
        if !inMulti && !Self.mayBeConnectionCommand(args[0]) {
            remote(tag: InputTag.resp, payload: CommandCodec.encode(args))
            return
        }
        let command = Self.upper(args[0])
        switch command {
        case "QUIT":
            reply(RESPValue.ok)
            closeAfterReplies = true
            return
        case "MULTI":
            if inMulti {
                reply(RESPValue.errorBytes("ERR MULTI calls can not be nested"))
            } else {
                inMulti = true
                multiQueue = []
                multiQueueBytes = 0
                multiFailed = false
                reply(RESPValue.ok)
            }
            return
        case "DISCARD":
            if inMulti {
                inMulti = false
                multiQueue = []
                multiQueueBytes = 0
                reply(RESPValue.ok)
            } else {
                reply(RESPValue.errorBytes("ERR DISCARD without MULTI"))
            }
            return
        case "EXEC":
            guard inMulti else {
                reply(RESPValue.errorBytes("ERR EXEC without MULTI"))
                return
            }
            inMulti = false
            let queued = multiQueue
            multiQueue = []
            multiQueueBytes = 0
            if multiFailed {
                reply(RESPValue.errorBytes("EXECABORT Transaction discarded because of previous errors."))
            } else if queued.isEmpty {
                reply(Array("*0\r\n".utf8))
            } else {
                remote(tag: InputTag.respTransaction, payload: CommandCodec.encodeTransaction(queued))
            }
            return
        case "WATCH", "UNWATCH":
            if inMulti && command == "WATCH" {
                reply(RESPValue.errorBytes("ERR WATCH inside MULTI is not allowed"))
            } else {
                reply(RESPValue.errorBytes("ERR \(command) is not supported by this server"))
            }
            return
        case "SELECT" where !inMulti:
            guard args.count == 2 else {
                reply(RESPValue.errorBytes("ERR wrong number of arguments for 'select' command"))
                return
            }
            guard let index = Int(String(decoding: args[1], as: UTF8.self)) else {
                reply(RESPValue.errorBytes("ERR value is not an integer or out of range"))
                return
            }
            reply(index == 0 ? RESPValue.ok : RESPValue.errorBytes("ERR DB index is out of range"))
            return
        case "CLIENT" where !inMulti && args.count >= 2:
            let sub = Self.upper(args[1])
            switch sub {
            case "SETNAME" where args.count == 3:
                if args[2].contains(where: { $0 <= 32 || $0 >= 127 }) {
                    reply(RESPValue.errorBytes("ERR Client names cannot contain spaces, newlines or special characters."))
                } else {
                    name = args[2].isEmpty ? nil : args[2]
                    reply(RESPValue.ok)
                }
                return
            case "GETNAME" where args.count == 2:
                reply(RESPValue.bulk(name).encoded)
                return
            case "ID" where args.count == 2:
                reply(RESPValue.integer(clientID).encoded)
                return
            case "SETINFO", "NO-EVICT", "NO-TOUCH":
                reply(RESPValue.ok)
                return
            default:
                break
            }
        default:
            break
        }
        if inMulti {
            queue(args)
            return
        }
        remote(tag: InputTag.resp, payload: CommandCodec.encode(args))
    }

    /// Queues a command inside MULTI, unless the transaction would exceed the largest journaled input: then the
    /// queue is dropped and the transaction marked failed, so EXEC answers EXECABORT (as after any queueing error).
    private func queue(_ args: [[UInt8]]) {
        if !multiFailed {
            let bytes = multiQueueBytes + CommandCodec.encodedSize(args)
            let size = CommandCodec.encodedTransactionSize(commandCount: multiQueue.count + 1, commandBytes: bytes)
            guard size <= maximumInputBytes else {
                multiQueue = []
                multiQueueBytes = 0
                multiFailed = true
                reply(RESPValue.errorBytes("ERR MULTI queue exceeds \(maximumInputBytes) bytes; transaction discarded"))
                return
            }
            multiQueue.append(args)
            multiQueueBytes = bytes
        }
        // After a failure nothing more is kept: EXEC will only abort.
        reply(Self.queued)
    }

    private static let queued: [UInt8] = Array("+QUEUED\r\n".utf8)

    private func reply(_ bytes: [UInt8]) {
        slots.append(bytes)
        writeReady()
    }

    private func remote(tag: UInt8, payload: [UInt8]) {
        // The decoder and the MULTI queue already keep inputs within the limit; this keeps the journal's promise
        // whatever decoder limits the handler was paired with.
        guard payload.count <= maximumInputBytes else {
            reply(RESPValue.errorBytes(
                "ERR input of \(payload.count) bytes exceeds the maximum of \(maximumInputBytes) bytes; not executed"))
            return
        }
        let slot = slotBase + slots.count
        slots.append(nil)
        // A strong reference: the pipeline drops the sink once it has answered, and a closed connection's
        // handler only lives until its outstanding requests are answered (no weak-reference cost per request).
        pipeline.submit(tag: tag, payload: payload) { bytes in
            self.complete(slot, bytes)
        }
    }

    private func complete(_ slot: Int, _ bytes: [UInt8]) {
        let offset = slot - slotBase
        guard offset >= 0 && offset < slots.count else { return }
        slots[slots.index(slots.startIndex, offsetBy: offset)] = bytes
        if offset == 0 {
            writeReady()
            pipeline.clientNeedsFlush(self)
        }
    }

    /// Replies ready to go, written in one go at the next flush.
    private var outbound = ByteBuffer()

    private func writeReady() {
        while let first = slots.first, let bytes = first {
            slots.removeFirst()
            slotBase += 1
            outbound.writeBytes(bytes)
            wroteSinceFlush = true
        }
    }

    func flushNow() {
        guard let context else { return }
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.writeAndFlush(wrapOutboundOut(outbound), promise: nil)
            outbound = context.channel.allocator.buffer(capacity: 1024)
        }
        if closeAfterReplies && slots.isEmpty {
            context.close(promise: nil)
        }
    }
}
