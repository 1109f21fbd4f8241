import NIOCore

/// Backpressure on client intake: while engaged, client sockets are not read (the kernel's buffers fill and
/// clients slow down), so a standby that falls behind catches up and failover and swap stay available.
///
/// Loop-bound: engaged, released and consulted only on the core event loop (``IntakeThrottleHandler`` runs on
/// the client channels, which live on that loop).
final class IntakeThrottle {
    /// Reads are being held.
    private(set) var engaged = false
    /// How many times intake was throttled.
    private(set) var engagements = 0
    private var held: [ObjectIdentifier: ChannelHandlerContext] = [:]

    /// Stops reading client sockets (reads already under way finish).
    func engage() {
        guard !engaged else { return }
        engaged = true
        engagements += 1
    }

    /// Reads again: every connection whose read was held reads now.
    func release() {
        guard engaged else { return }
        engaged = false
        let waiting = held
        held = [:]
        for context in waiting.values { context.read() }
    }

    fileprivate func hold(_ context: ChannelHandlerContext) { held[ObjectIdentifier(context)] = context }
    fileprivate func forget(_ context: ChannelHandlerContext) { held[ObjectIdentifier(context)] = nil }
}

/// The first handler of every client channel: holds its reads while the throttle is engaged.
final class IntakeThrottleHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let throttle: IntakeThrottle

    init(throttle: IntakeThrottle) { self.throttle = throttle }

    func read(context: ChannelHandlerContext) {
        if throttle.engaged {
            throttle.hold(context)
        } else {
            context.read()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        throttle.forget(context)
    }
}
