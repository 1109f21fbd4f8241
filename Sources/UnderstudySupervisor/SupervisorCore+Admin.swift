import NIOCore
import Prometheus

/// `GET /health`: whether a primary serves and no role was given up.
package struct HealthReport: Codable, Sendable {
    /// `ok`, `degraded` (a role was given up) or `down` (no primary).
    package var status: String
    /// The primary's instance id.
    package var primary: String?
    /// Roles given up after too many restarts that no input explains.
    package var givenUpRoles: [String]
    /// Why the roles were given up.
    package var reason: String?
    /// How many inputs are quarantined.
    package var quarantined: Int

    /// True when the status is `ok` (the admin API answers 200, else 503).
    package var healthy: Bool { status == "ok" }
}

/// What the admin API (UnderstudyAdmin's `AdminServer`) reads from a core and asks of it, beside ``status()`` and
/// ``swapToShadow()``. Everything here runs on the core's loop.
extension SupervisorCore {
    /// How many discrepancies were recorded in all, and the most recent `limit` of those still in memory.
    package func discrepancies(limit: Int) -> (total: Int, recent: [Discrepancy]) {
        (comparator.totalDiscrepancies, Array(comparator.recent.suffix(max(0, limit))))
    }

    /// The inputs no instance will apply again, oldest first.
    package var quarantined: [QuarantineEntry] { pipeline.quarantine.list }

    /// Whether a primary serves and no role was given up.
    package func health() -> HealthReport {
        let p = pipeline
        return HealthReport(
            status: p.primary == nil ? "down" : (p.givenUpRoles.isEmpty ? "ok" : "degraded"),
            primary: p.primary.map { "\($0.id)" }, givenUpRoles: p.givenUpRoles, reason: p.givenUpReason,
            quarantined: p.quarantine.entries.count)
    }

    /// The swaps made so far, oldest first.
    package var swapHistory: [SwapRecord] { transfer.history }

    /// The prediction engine's latest report.
    package func predictions() -> PredictionSnapshot { prediction.snapshot() }

    /// The deploys started so far, oldest first.
    package var deployReports: [DeployReport] { deploys.reports }

    /// The deploy with this id, if there is one.
    package func deployReport(_ id: Int) -> DeployReport? { deploys.report(id) }

    /// The metrics in Prometheus's text format, the gauges refreshed first.
    package func metricsText() -> [UInt8] {
        _ = status()  // refresh gauges
        return registry.emitToBuffer()
    }

    /// `understudy rollback`: the previous primary takes over again (during probation).
    package func rollback() -> EventLoopFuture<SwapRecord> {
        transfer.rollback(automatic: false, why: "requested by an operator")
    }

    /// Takes a snapshot now; completes with its sequence number.
    package func takeSnapshot() -> EventLoopFuture<UInt64> { pipeline.takeSnapshot() }

    /// `understudy deploy`: starts a deploy.
    ///
    /// - Returns: The deploy's id (``deployReport(_:)``).
    /// - Throws: ``SupervisorError`` when this supervisor is a standby or the deploy cannot start.
    package func startDeploy(_ request: DeployRequest) throws -> Int {
        guard mode == .active else {
            throw SupervisorError(.rejected, "this supervisor is a standby: deploys are made on the active one")
        }
        return try deploys.start(request)
    }
}
