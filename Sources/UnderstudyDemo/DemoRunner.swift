import Foundation
import Logging
import ServiceLifecycle
import UnderstudyAdmin
import UnderstudyPrediction
import UnderstudyFrontend
import UnderstudySupervisor
import UnixSignals

/// `understudy demo`: a supervisor with version 1 of the key-value example in a temporary directory,
/// 100 000 keys, a built-in load generator, a live deploy of version 2 mid-load, and a report.
public struct DemoRunner: Sendable {
    /// A worker to run: a binary and its extra arguments.
    public struct Worker: Sendable {
        public var binary: String
        public var arguments: [String]
        public init(binary: String, arguments: [String] = []) {
            self.binary = binary
            self.arguments = arguments
        }
    }

    /// What to run.
    public struct Options: Sendable {
        public var v1: Worker
        public var v2: Worker
        public var keys = 100_000
        public var clients = 4
        public var baselineSeconds = 4.0
        public var afterSeconds = 3.0
        public var compareRequests = 2000
        public var keepRunning = false
        public var dataDirectory: String?
        /// The ledger version of the demo (HTTP): `keys` is then the number of accounts.
        public var http = false
        public init(v1: Worker, v2: Worker) {
            self.v1 = v1
            self.v2 = v2
        }
    }

    /// The demo's outcome.
    public struct Report: Sendable {
        public var requests = 0
        public var clientErrors = 0
        public var errorSamples: [String] = []
        public var lostOrDoubledWrites = 0
        public var countersChecked = 0
        public var replyOrderViolations = 0
        public var deployAccepted = false
        public var deployReasons: [String] = []
        public var stages: [DeployReport.Stage] = []
        public var swapPauseMillis: Double?
        public var swapSteps: [String: Int64] = [:]
        public var longestGapDuringSwapMillis: Double = 0
        public var longestGapBaselineMillis: Double = 0
        public var longestGapOverallMillis: Double = 0
        public var discrepancies = 0
        public var v2CommandWorks = false
        public var predictor: PredictionReport?
        public var dashboardURL = ""
        public var seconds = 0.0
        public var primaryVersionAfter = ""
        /// The ledger demo: the total of all balances is what the accounts were created with.
        public var moneyConserved: Bool?
        /// The ledger demo: response statuses and how often clients retried after a connection error.
        public var statuses: [Int: Int] = [:]
        public var connectionRetries = 0

        /// True when the demo showed what it promises.
        public var succeeded: Bool {
            deployAccepted && clientErrors == 0 && lostOrDoubledWrites == 0 && replyOrderViolations == 0 && v2CommandWorks
                && moneyConserved != false
        }
    }

    let options: Options
    let logger: Logger
    let say: @Sendable (String) -> Void

    /// Creates a runner that prints progress through `say`.
    public init(options: Options, logger: Logger, say: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.logger = logger
        self.say = say
    }

    /// Runs the demo and returns its report.
    public func run() async throws -> Report {
        let started = Date()
        let data = options.dataDirectory ?? (NSTemporaryDirectory() + "understudy-demo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        var configuration = SupervisorConfiguration(servicePath: options.v1.binary)
        configuration.serviceArguments = options.v1.arguments
        configuration.listen = ListenAddress(host: "127.0.0.1", port: 0)
        configuration.admin = ListenAddress(host: "127.0.0.1", port: options.keepRunning ? 6381 : 0)
        configuration.dataDirectory = data
        configuration.transfer.probationSeconds = 10
        let (readyStream, readyContinuation) = AsyncStream.makeStream(of: ReadyInfo.self)
        let supervisor = Supervisor(configuration: configuration, logger: logger, admin: { try AdminServer(core: $0) }) {
            readyContinuation.yield($0)
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: supervisor)], gracefulShutdownSignals: options.keepRunning ? [.sigint, .sigterm] : [],
                logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer {
                if options.dataDirectory == nil && !options.keepRunning { try? FileManager.default.removeItem(atPath: data) }
            }
            var iterator = readyStream.makeAsyncIterator()
            guard let ready = await iterator.next() else { throw SupervisorError(.workerFailed, "the supervisor did not start") }
            say("supervisor ready: clients on \(ready.listen), admin on \(ready.admin?.description ?? "-"), data in \(data)")
            var report = Report()
            do {
                report = options.http ? try await exerciseHTTP(ready: ready, data: data) : try await exercise(ready: ready, data: data)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            report.seconds = Date().timeIntervalSince(started)
            if options.keepRunning {
                say("--keep-running: the supervisor stays up (Ctrl-C to stop). Dashboard: \(report.dashboardURL) — it asks for the admin token, the file admin.token in the data directory (or open the URL with #token=TOKEN)")
                try await tasks.waitForAll()
            } else {
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            return report
        }
    }

    private func exercise(ready: ReadyInfo, data: String) async throws -> Report {
        var report = Report()
        let admin = AdminClient(address: ready.admin!, token: AdminToken.read(dataDirectory: data))
        report.dashboardURL = "http://\(ready.admin!)/"

        // 1. Load the keys, pipelined.
        let loadStart = Date()
        let loader = try RESPClient(host: ready.listen.host, port: ready.listen.port)
        let batch = 1000
        var loaded = 0
        while loaded < options.keys {
            let n = min(batch, options.keys - loaded)
            let replies = try loader.pipeline((0..<n).map { ["SET", "demo:key:\(loaded + $0)", "value-\(loaded + $0)-abcdefghijklmnop"] })
            if replies.contains(where: { if case .error = $0 { return true } else { return false } }) {
                throw SupervisorError(.workerFailed, "loading keys failed: \(replies.first { if case .error = $0 { return true } else { return false } }!)")
            }
            loaded += n
        }
        say(String(format: "loaded %d keys in %.1f s", loaded, Date().timeIntervalSince(loadStart)))

        // 2. Run the load generator; deploy version 2 in the middle.
        var loadConfig = LoadGenerator.Configuration(host: ready.listen.host, port: ready.listen.port)
        loadConfig.clients = options.clients
        loadConfig.prefix = "demo"
        loadConfig.keys = options.keys
        let load = LoadGenerator(configuration: loadConfig)
        load.start()
        say("load generator running: \(options.clients) clients (INCR/SET/GET); baseline for \(options.baselineSeconds) s")
        try await Task.sleep(for: .milliseconds(Int(options.baselineSeconds * 1000)))
        let deployStartMillis = load.elapsedMillis
        let deploy = try await deployVersion2(admin: admin, announce: "deploying version 2 (\(options.v2.binary)) while the load runs…") { _ = load.stop() }
        report.deployAccepted = deploy.state == "accepted"
        report.deployReasons = deploy.reasons
        report.stages = deploy.stages
        try await Task.sleep(for: .milliseconds(Int(options.afterSeconds * 1000)))
        let loadReport = load.stop()

        // 3. Check every acknowledged INCR is there exactly once.
        let checker = try RESPClient(host: ready.listen.host, port: ready.listen.port)
        for (key, acked) in loadReport.acknowledgedIncrements {
            report.countersChecked += 1
            guard case .bulk(let bytes?) = try checker.call("GET", key), let value = Int(String(decoding: bytes, as: UTF8.self)) else {
                report.lostOrDoubledWrites += acked
                continue
            }
            // Without client errors every INCR sent was acknowledged, so the value must match exactly.
            if loadReport.errors == 0 ? value != acked : value < acked { report.lostOrDoubledWrites += abs(value - acked) }
        }
        if case .integer(1) = try checker.call("COPY", "demo:key:1", "demo:copy:1") { report.v2CommandWorks = true }
        report.requests = loadReport.requests
        report.clientErrors = loadReport.errors
        report.errorSamples = loadReport.errorSamples
        report.replyOrderViolations = loadReport.replyOrderViolations
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
        report.predictor = try? admin.get("/predictions").decode(PredictionSnapshot.self).report
        return report
    }

    /// The longest gap a client saw around the swap (from just before it began to 200 ms past its pause), and
    /// in a window as long before the deploy began (the baseline), in milliseconds.
    static func gapsAroundSwap(
        _ swap: SwapRecord, loadElapsedMillis: Double, deployStartMillis: Double,
        longestGap: (_ fromMillis: Double, _ toMillis: Double) -> Double
    ) -> (duringSwap: Double, baseline: Double) {
        let loadStartEpoch = Date().timeIntervalSince1970 * 1000 - loadElapsedMillis
        let swapStart = Double(swap.startedAtMillis) - loadStartEpoch
        let window = max(200, Double(swap.pauseMicros) / 1000 + 200)
        let baselineEnd = min(deployStartMillis, swapStart - 100)
        return (longestGap(swapStart - 50, swapStart - 50 + window), longestGap(baselineEnd - window, baselineEnd))
    }

    /// The report as text.
    public static func render(_ r: Report) -> String {
        if r.moneyConserved != nil { return renderHTTP(r) }
        var lines: [String] = []
        lines.append("")
        lines.append("=== understudy demo report ===")
        lines.append("requests served by the load generator: \(r.requests)")
        lines.append("client errors: \(r.clientErrors)\(r.errorSamples.isEmpty ? "" : " (" + r.errorSamples.prefix(3).joined(separator: "; ") + ")")")
        lines.append("acknowledged INCR counters checked: \(r.countersChecked), lost or doubled writes: \(r.lostOrDoubledWrites), replies out of order: \(r.replyOrderViolations)")
        lines.append("deploy of version 2: \(r.deployAccepted ? "ACCEPTED" : "REJECTED: " + r.deployReasons.joined(separator: "; ")); primary is now version \(r.primaryVersionAfter)")
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
        lines.append("version-2-only command (COPY) after the swap: \(r.v2CommandWorks ? "works" : "FAILED")")
        if let p = r.predictor {
            let engine = p.predictors.first { $0.name == "engine" }
            let baselines = p.predictors.filter { !["engine", "reranker"].contains($0.name) }
            let best = baselines.max { $0.top1 < $1.top1 }
            if let engine, let best {
                lines.append(String(format: "predictor (next key, top-1, prequential over %d observations): engine %.3f vs best baseline %@ %.3f",
                                    p.observations, engine.top1, best.name, best.top1))
            }
        } else {
            lines.append("predictor: no report yet")
        }
        lines.append("dashboard: \(r.dashboardURL)")
        lines.append(String(format: "demo took %.1f s — %@", r.seconds, r.succeeded ? "OK" : "FAILED"))
        return lines.joined(separator: "\n")
    }
}

extension DemoRunner {
    /// Starts the deploy of version 2 through the admin API, prints each stage as it finishes, and returns the
    /// final report; when the deploy does not start, calls `beforeFailing` (stop the load) and throws.
    func deployVersion2(admin: AdminClient, announce: String, beforeFailing: () -> Void) async throws -> DeployReport {
        let request = DeployRequest(
            binary: options.v2.binary, arguments: options.v2.arguments.isEmpty ? nil : options.v2.arguments,
            compareRequests: options.compareRequests)
        let started = try admin.post("/deploy", json: try JSONEncoder().encode(request))
        guard started.status == 202, let id = try started.decode([String: Int].self)["id"] else {
            beforeFailing()
            throw SupervisorError(.rejected, "the deploy did not start: HTTP \(started.status) \(started.text)")
        }
        say(announce)
        var deploy: DeployReport
        var printed = 0
        repeat {
            try await Task.sleep(for: .milliseconds(100))
            deploy = try admin.get("/deploys/\(id)").decode(DeployReport.self)
            for (i, s) in deploy.stages.enumerated() where i >= printed && s.status != "running" {
                say(String(format: "  [%@] %@ %.3f s  %@", s.status == "passed" ? "ok  " : s.status == "skipped" ? "skip" : "FAIL",
                           s.name.padding(toLength: 12, withPad: " ", startingAt: 0), Double(s.millis) / 1000, s.detail))
                printed = i + 1
            }
        } while deploy.state == "running"
        return deploy
    }
}
