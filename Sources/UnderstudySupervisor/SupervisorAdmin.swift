import NIOCore

/// The admin API as a supervisor core runs it: made with the core, started once the core serves its clients, and
/// stopped after the core stops. The `understudy` command attaches UnderstudyAdmin's `AdminServer`.
package protocol SupervisorAdmin: Sendable {
    /// Binds `address` and serves; the future completes on the core's loop once ``boundAddress`` is known.
    func start(address: ListenAddress) -> EventLoopFuture<Void>
    /// The address served on, once started (read on the core's loop).
    var boundAddress: ListenAddress? { get }
    /// Stops serving.
    func stop() async throws
}

/// Makes the admin API for a core. A supervisor runs one core per role (the active one, then a standby after a
/// takeover), each with its own admin API on the same address.
///
/// It runs while the core is made, on the core's loop, and only when the configuration has an admin address.
/// - Throws: When the admin API cannot be set up (its token cannot be read or written): the core is not started.
package typealias SupervisorAdminFactory = @Sendable (SupervisorCore) throws -> any SupervisorAdmin
