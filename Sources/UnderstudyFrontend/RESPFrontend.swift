import NIOCore
import UnderstudyWire

/// The Redis-protocol front-end, chosen unless the service's greeting declares HTTP: sets up each client channel
/// (the intake throttle, ``RESPCommandDecoder`` feeding ``RESPConnectionHandler`` directly) and numbers the
/// connections (`CLIENT ID`).
///
/// Loop-bound: used only on the core event loop.
package final class RESPFrontend: ClientFrontend {
    let pipeline: any RequestIntake
    let limits: RESPLimits
    let access: AccessControl
    /// Where this supervisor process's connections begin in the journal, shared by every connection.
    let connections: ConnectionEpoch
    private var nextClientID: Int64 = 1

    /// Creates the front-end of one supervisor process.
    ///
    /// - Parameters:
    ///   - pipeline: The request path.
    ///   - limits: The protocol's limits (argument count and size, query buffer, the largest journaled input).
    ///   - access: The users (default: none required, everything allowed).
    ///   - connections: Where the process's connections begin in the journal.
    package init(pipeline: any RequestIntake, limits: RESPLimits, access: AccessControl = .open, connections: ConnectionEpoch) {
        self.pipeline = pipeline
        self.limits = limits
        self.access = access
        self.connections = connections
    }

    package func initialize(_ channel: any Channel) throws {
        nextClientID += 1
        let handler = RESPConnectionHandler(
            pipeline: pipeline, clientID: nextClientID, maximumInputBytes: limits.maximumInputBytes,
            access: access, connections: connections)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IntakeThrottleHandler(throttle: pipeline.intakeThrottle, connection: handler))
        try sync.addHandler(ByteToMessageHandler(RESPCommandDecoder(limits: limits) { [unowned handler] in handler.deliver($0) }))
        try sync.addHandler(handler)
    }

    /// RESP connections stay open until the supervisor's channels close (a client sees the connection end).
    package func shutdown() {}
}
