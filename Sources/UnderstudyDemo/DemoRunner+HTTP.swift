import Foundation
import UnderstudyAdmin
import UnderstudySupervisor
import UnderstudyWire

/// `understudy demo --http`: the ledger under HTTP load, a live deploy of ledger-v2, and a report.
extension DemoRunner {
    static let initialBalance: Int64 = 1_000_000

    func exerciseHTTP(ready: ReadyInfo, data: String) async throws -> Report {
        var report = Report()
        let admin = AdminClient(address: ready.admin!, token: AdminToken.read(dataDirectory: data))
        report.dashboardURL = "http://\(ready.admin!)/"

        // 1. Create the accounts, pipelined.
        let loadStart = Date()
        let accounts = (0..<max(2, options.keys)).map { "acct\($0)" }
        let loader = try HTTPClient(host: ready.listen.host, port: ready.listen.port)
        for batch in stride(from: 0, to: accounts.count, by: 500) {
            let ids = accounts[batch..<min(accounts.count, batch + 500)]
            var out: [UInt8] = []
            for id in ids {
                let body: JSONValue = ["id": .string(id), "balance": .int(Self.initialBalance)]
                out += HTTPClient.encode("POST", "/accounts", headers: [("content-type", "application/json")], body: body.encoded)
            }
            try loader.sendRaw(out)
            for id in ids {
                let r = try loader.readResponse()
                guard r.status == 201 else { throw SupervisorError(.workerFailed, "creating account \(id) failed: \(r.status) \(r.text)") }
            }
        }
        say(String(format: "created %d accounts of %lld in %.1f s", accounts.count, Self.initialBalance, Date().timeIntervalSince(loadStart)))

        // 2. Transfers and reads; deploy version 2 in the middle.
        var loadConfig = HTTPLoadGenerator.Configuration(host: ready.listen.host, port: ready.listen.port)
        loadConfig.clients = options.clients
        loadConfig.accounts = accounts
        let load = HTTPLoadGenerator(configuration: loadConfig)
        load.start()
        say("load running: \(options.clients) HTTP clients (idempotent POST /transfers, GET /accounts/{id}); baseline for \(options.baselineSeconds) s")
        try await Task.sleep(for: .milliseconds(Int(options.baselineSeconds * 1000)))
        let deployStartMillis = load.elapsedMillis
        let deploy = try await deployVersion2(admin: admin, announce: "deploying ledger version 2 (\(options.v2.binary)) while the load runs…") { _ = load.stop() }
        report.deployAccepted = deploy.state == "accepted"
        report.deployReasons = deploy.reasons
        report.stages = deploy.stages
        try await Task.sleep(for: .milliseconds(Int(options.afterSeconds * 1000)))
        let loadReport = load.stop()

        // 3. Money conserved; every acknowledged transfer in the history of both its accounts exactly once (v2).
        let checker = try HTTPClient(host: ready.listen.host, port: ready.listen.port)
        var total: Int64 = 0
        var histories: [String: [String: Int]] = [:]
        var historyWorks = true
        for account in accounts {
            let balance = try checker.request("GET", "/accounts/\(account)")
            total += balance.json?["balance"]?.intValue ?? 0
            let h = try checker.request("GET", "/accounts/\(account)/transfers")
            if h.status != 200 { historyWorks = false }
            for item in h.json?["transfers"]?.arrayValue ?? [] {
                if let tid = item["id"]?.stringValue { histories[account, default: [:]][tid, default: 0] += 1 }
            }
        }
        report.v2CommandWorks = historyWorks
        report.moneyConserved = total == Int64(accounts.count) * Self.initialBalance
        for (tid, t) in loadReport.transfers {
            report.countersChecked += 1
            if histories[t.from]?[tid] != 1 || histories[t.to]?[tid] != 1 { report.lostOrDoubledWrites += 1 }
        }
        report.requests = loadReport.requests
        report.clientErrors = loadReport.errors
        report.errorSamples = loadReport.errorSamples
        report.statuses = loadReport.statuses
        report.connectionRetries = loadReport.connectionRetries
        report.longestGapOverallMillis = loadReport.longestGapMillis
        if let swap = deploy.swap {
            report.swapPauseMillis = Double(swap.pauseMicros) / 1000
            report.swapSteps = swap.stepMicros
            (report.longestGapDuringSwapMillis, report.longestGapBaselineMillis) = Self.gapsAroundSwap(
                swap, loadElapsedMillis: load.elapsedMillis, deployStartMillis: deployStartMillis,
                longestGap: loadReport.longestGap(fromMillis:toMillis:))
        }
        let status = try admin.get("/status").decode(SupervisorStatus.self)
        report.primaryVersionAfter = status.version
        report.discrepancies = status.discrepancies
        return report
    }

    /// The ledger demo's report as text.
    static func renderHTTP(_ r: Report) -> String {
        var lines: [String] = []
        lines.append("")
        lines.append("=== understudy demo --http report (ledger) ===")
        let statuses = r.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
        lines.append("requests served: \(r.requests) (statuses \(statuses)); connection retries: \(r.connectionRetries)")
        lines.append("errors (5xx or no response): \(r.clientErrors)\(r.errorSamples.isEmpty ? "" : " (" + r.errorSamples.prefix(3).joined(separator: "; ") + ")")")
        lines.append("money conserved: \(r.moneyConserved == true ? "yes" : "NO")")
        lines.append("acknowledged transfers checked: \(r.countersChecked), not reflected exactly once: \(r.lostOrDoubledWrites)")
        lines.append("deploy of ledger version 2: \(r.deployAccepted ? "ACCEPTED" : "REJECTED: " + r.deployReasons.joined(separator: "; ")); primary is now version \(r.primaryVersionAfter)")
        for s in r.stages {
            lines.append("  " + s.name.padding(toLength: 12, withPad: " ", startingAt: 0) + " " + s.status.padding(toLength: 7, withPad: " ", startingAt: 0)
                + String(format: " %8.3f s  ", Double(s.millis) / 1000) + s.detail)
        }
        if let pause = r.swapPauseMillis {
            let steps = ["drain", "catch_up", "verify", "flip", "resume"].compactMap { k in r.swapSteps[k].map { String(format: "%@ %.3f", k, Double($0) / 1000) } }
            lines.append(String(format: "swap pause (intake held): %.3f ms  (%@ ms)", pause, steps.joined(separator: ", ")))
        }
        lines.append(String(format: "longest client gap around the swap: %.1f ms; in an equal window before the deploy: %.1f ms; whole run: %.1f ms",
                            r.longestGapDuringSwapMillis, r.longestGapBaselineMillis, r.longestGapOverallMillis))
        lines.append("discrepancies recorded: \(r.discrepancies)")
        lines.append("version-2-only endpoint (GET /accounts/{id}/transfers) after the swap: \(r.v2CommandWorks ? "works" : "FAILED")")
        lines.append("dashboard: \(r.dashboardURL)")
        lines.append(String(format: "demo took %.1f s — %@", r.seconds, r.succeeded ? "OK" : "FAILED"))
        return lines.joined(separator: "\n")
    }
}
