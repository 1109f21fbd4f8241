import NIOCore

/// A client connection as the intake throttle sees it.
package protocol ThrottledConnection: AnyObject {
    /// Requests this connection sent that are not answered yet.
    var unansweredRequests: Int { get }
}

/// Backpressure on client intake: while engaged, client sockets are not read (the kernel's buffers fill and
/// clients slow down), so a standby that falls behind catches up and failover and swap stay available.
///
/// Two levels, so that a bulk loader slows down before anyone else does:
/// - ``Level/pipelinesHeld``: a connection with an unanswered request is not read until it is answered — every
///   client is held to one read's worth of requests in flight. A client that waits for each reply (an interactive
///   one, a probe) is not slowed at all; a pipelining loader advances one read at a time.
/// - ``Level/closed``: no client socket is read.
///
/// Loop-bound: changed and consulted only on the core event loop (``IntakeThrottleHandler`` runs on the client
/// channels, which live on that loop).
package final class IntakeThrottle {
    package enum Level: Int, Comparable, Sendable {
        case open, pipelinesHeld, closed
        package static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    /// How much intake is held now.
    package private(set) var level = Level.open
    /// Reads are being held (at either level).
    package var engaged: Bool { level != .open }
    /// How many times intake was throttled (moved from open to a held level).
    package private(set) var engagements = 0
    private var held: [ObjectIdentifier: (context: ChannelHandlerContext, connection: any ThrottledConnection)] = [:]

    package init() {}

    /// Holds reads at `newLevel`; reads held for a reason that no longer applies resume.
    package func set(_ newLevel: Level) {
        guard newLevel != level else { return }
        if level == .open { engagements += 1 }
        let lowered = newLevel < level
        level = newLevel
        guard lowered, !held.isEmpty else { return }
        for (id, entry) in held where admits(entry.connection) {
            held[id] = nil
            entry.context.read()
        }
    }

    /// Whether a connection may be read at the current level.
    func admits(_ connection: any ThrottledConnection) -> Bool {
        switch level {
        case .open: return true
        case .pipelinesHeld: return connection.unansweredRequests == 0
        case .closed: return false
        }
    }

    /// A connection's requests are all answered: if its read was held for them alone, it reads now.
    func answered(_ connection: any ThrottledConnection) {
        guard level == .pipelinesHeld, let entry = held.removeValue(forKey: ObjectIdentifier(connection)) else { return }
        entry.context.read()
    }

    /// How many connections wait to be read.
    var heldConnections: Int { held.count }

    fileprivate func hold(_ context: ChannelHandlerContext, _ connection: any ThrottledConnection) {
        held[ObjectIdentifier(connection)] = (context, connection)
    }
    fileprivate func forget(_ connection: any ThrottledConnection) { held[ObjectIdentifier(connection)] = nil }
}

/// The first handler of every client channel: holds its reads while the throttle says so.
final class IntakeThrottleHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let throttle: IntakeThrottle
    private let connection: any ThrottledConnection

    init(throttle: IntakeThrottle, connection: any ThrottledConnection) {
        self.throttle = throttle
        self.connection = connection
    }

    func read(context: ChannelHandlerContext) {
        if throttle.admits(connection) {
            context.read()
        } else {
            throttle.hold(context, connection)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        throttle.forget(connection)
    }
}
