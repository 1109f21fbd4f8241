import ArgumentParser
import Foundation
import KVStore
import Ledger
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudyKit
import Logging
import ServiceLifecycle
import UnixSignals
import UnderstudyJournal
import UnderstudySupervisor
import UnderstudyJournalPostgres

@main
struct Understudy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "understudy",
        abstract: "Zero-downtime, zero-loss live updates for stateful services.",
        subcommands: [Run.self, Status.self, Swap.self, Rollback.self, Deploy.self, Demo.self, Predict.self])

    /// The flag that turns this binary into one of the embedded example workers (used by the demo).
    static let embeddedWorkerFlag = "--embedded-worker"

    static func main() async {
        let arguments = CommandLine.arguments
        if let i = arguments.firstIndex(of: embeddedWorkerFlag), i + 1 < arguments.count {
            switch arguments[i + 1] {
            case "kv-v1": WorkerRuntime.main(KVServiceV1(), arguments: arguments)
            case "kv-v2": WorkerRuntime.main(KVServiceV2(), arguments: arguments)
            case "ledger-v1": WorkerRuntime.main(LedgerServiceV1(), arguments: arguments)
            case "ledger-v2": WorkerRuntime.main(LedgerServiceV2(), arguments: arguments)
            default:
                FileHandle.standardError.write(Data("understudy: unknown embedded worker '\(arguments[i + 1])' (kv-v1, kv-v2, ledger-v1 or ledger-v2)\n".utf8))
                Foundation.exit(64)
            }
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Options shared by commands that talk to a running supervisor.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The supervisor's admin address.")
    var admin = "127.0.0.1:6381"

    @Option(name: .long, help: "The supervisor's data directory (to read the admin token; UNDERSTUDY_TOKEN wins).")
    var data = "./understudy-data"

    func client() throws -> AdminClient {
        guard let address = ListenAddress(parsing: admin) else {
            throw ValidationError("--admin must be HOST:PORT, got '\(admin)'")
        }
        return AdminClient(address: address, token: AdminToken.read(dataDirectory: data))
    }
}

func bootstrapLogging(_ level: String) -> Logger {
    let parsed = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = parsed
        return handler
    }
    return Logger(label: "understudy")
}

func parseEnvironment(_ pairs: [String]) throws -> [String: String] {
    var env: [String: String] = [:]
    for pair in pairs {
        guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
            throw ValidationError("--env takes KEY=VALUE, got '\(pair)'")
        }
        env[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
    }
    return env
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a service behind a Redis-protocol front-end, with a journal and a live shadow.")

    @Option(name: .long, help: "The worker binary built with UnderstudyKit (e.g. .build/release/kv-v1).")
    var service: String

    @Option(name: .long, help: "Client address (port 0 picks a free port; 'off' serves TLS only).")
    var listen = "127.0.0.1:6380"

    @Option(name: .long, help: "The default user's password: clients must AUTH first.")
    var requirepass: String?

    @Option(name: .long, help: "Users and their permissions, in Redis's ACL file format (user NAME on >password ~keys +@read …).")
    var aclfile: String?

    @Option(name: .long, help: "yes: refuse to listen beyond loopback while no password or ACL user is set; no: allow it.")
    var protectedMode = "yes"

    @Option(name: .long, help: "TLS client port (0 picks one), or HOST:PORT; the host defaults to --listen's.")
    var tlsPort: String?

    @Option(name: .long, help: "TLS certificate chain (PEM) for --tls-port.")
    var tlsCert: String?

    @Option(name: .long, help: "TLS private key (PEM) for --tls-port.")
    var tlsKey: String?

    @Option(name: .long, help: "CA certificates (PEM) that client certificates are verified against.")
    var tlsCaCert: String?

    @Option(name: .long, help: "Client certificates with --tls-ca-cert: yes (required, the default), optional, or no.")
    var tlsAuthClients: String?

    @Option(name: .long, help: "Data directory: journal, snapshots, admin token, discrepancy log.")
    var data = "./understudy-data"

    @Option(name: .long, help: "Admin API address (port 0 picks a free port; 'off' disables it).")
    var admin = "127.0.0.1:6381"

    @Option(name: .long, help: "Keep the journal, snapshots and lease in PostgreSQL: postgres://USER[:PASSWORD]@HOST:PORT/DATABASE (PGPASSWORD also works). Default: files under --data.")
    var journal: String?

    @Flag(name: .long, help: "Follow the supervisor that holds the PostgreSQL journal's lease; take over when its lease expires.")
    var standby = false

    @Option(name: .long, help: "PostgreSQL journals: the lease's length in milliseconds (a standby takes over this long after the active stops renewing).")
    var leaseMs = 2000

    @Option(name: .long, help: "Journal fsync policy: always, everysec or no.")
    var fsync = "everysec"

    @Flag(name: .long, help: "Run without a shadow (no hot standby: failover restarts from the journal).")
    var noShadow = false

    @Flag(name: .long, help: "Serve the admin API on a non-loopback address.")
    var allowRemoteAdmin = false

    @Flag(name: .long, help: "Do not run the prediction engine.")
    var noPrediction = false

    @Flag(name: .long, help: "Cut the journal at the first corrupt record (reporting what is discarded) instead of refusing to start.")
    var truncateCorruptJournal = false

    @Option(name: .long, parsing: .unconditionalSingleValue, help: "Extra argument for every worker (repeatable).")
    var arg: [String] = []

    @Option(name: .long, help: "Extra KEY=VALUE environment for every worker (repeatable).")
    var env: [String] = []

    @Option(name: .long, help: "Swap pause budget in milliseconds.")
    var pauseBudgetMs: Int64 = 50

    @Option(name: .long, help: "Longest a planned or deploy swap waits for a quieter moment the load forecast expects, in milliseconds (0: at once).")
    var swapDeadlineMs: Int64 = 500

    @Option(name: .long, help: "Probation window after a swap, in seconds.")
    var probationSeconds: Double = 30

    @Option(name: .long, help: "Most keys a swap may patch before aborting.")
    var residualLimit = 1000

    @Option(name: .long, help: "Take a snapshot from the shadow every N journaled inputs.")
    var snapshotEvery: UInt64 = 200_000

    @Option(name: .long, help: "Kill a primary that has not finished one input in this many milliseconds, and quarantine the input.")
    var requestDeadlineMs: Int64 = 5000

    @Option(name: .long, help: "Stop reading client sockets while the live standby lags more than this many milliseconds (0: never).")
    var maxStandbyLagMs: Int64 = 100

    @Option(name: .long, help: "HTTP services: the largest request body in bytes (413 beyond).")
    var maxBodyBytes: Int = 16 << 20

    @Option(name: .long, help: "HTTP services: the longest a client may take to send a request head, in milliseconds (408 beyond).")
    var headerTimeoutMs: Int64 = 10_000

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func run() async throws {
        let logger = bootstrapLogging(logLevel)
        guard let policy = FsyncPolicy(rawValue: fsync) else {
            throw ValidationError("--fsync must be always, everysec or no")
        }
        var configuration = SupervisorConfiguration(servicePath: absolutePath(service))
        if listen == "off" {
            configuration.plainText = false
        } else {
            guard let listenAddress = ListenAddress(parsing: listen) else {
                throw ValidationError("--listen must be HOST:PORT or off, got '\(listen)'")
            }
            configuration.listen = listenAddress
        }
        switch protectedMode {
        case "yes": configuration.protectedMode = true
        case "no": configuration.protectedMode = false
        default: throw ValidationError("--protected-mode must be yes or no")
        }
        do {
            configuration.access = try AccessControl.load(requirePass: requirepass, aclFilePath: aclfile)
        } catch {
            throw ValidationError("\(error)")
        }
        if let tlsPort {
            let address: ListenAddress
            if let port = Int(tlsPort), (0...65535).contains(port) {
                address = ListenAddress(host: configuration.listen.host, port: port)
            } else if let parsed = ListenAddress(parsing: tlsPort) {
                address = parsed
            } else {
                throw ValidationError("--tls-port must be a port or HOST:PORT, got '\(tlsPort)'")
            }
            guard let tlsCert, let tlsKey else {
                throw ValidationError("--tls-port needs --tls-cert and --tls-key (PEM files)")
            }
            var clientAuthentication: ClientTLSConfiguration.ClientAuthentication?
            if let tlsAuthClients {
                guard let parsed = ClientTLSConfiguration.ClientAuthentication(rawValue: tlsAuthClients) else {
                    throw ValidationError("--tls-auth-clients must be yes, optional or no")
                }
                clientAuthentication = parsed
            }
            configuration.tls = ClientTLSConfiguration(
                listen: address, certificatePath: absolutePath(tlsCert), keyPath: absolutePath(tlsKey),
                caCertificatePath: tlsCaCert.map(absolutePath), clientAuthentication: clientAuthentication)
        } else if tlsCert != nil || tlsKey != nil || tlsCaCert != nil || tlsAuthClients != nil {
            throw ValidationError("--tls-cert, --tls-key, --tls-ca-cert and --tls-auth-clients need --tls-port")
        }
        if admin == "off" {
            configuration.admin = nil
        } else {
            guard let adminAddress = ListenAddress(parsing: admin) else {
                throw ValidationError("--admin must be HOST:PORT or off, got '\(admin)'")
            }
            configuration.admin = adminAddress
        }
        configuration.dataDirectory = data
        if let journal {
            guard PostgresJournalAddress.looksLikeAddress(journal) else {
                throw ValidationError("--journal must be a postgres:// address (the file journal lives under --data)")
            }
            do {
                configuration.postgresJournal = try PostgresJournalAddress(parsing: journal)
            } catch {
                throw ValidationError("--journal: \(error)")
            }
        }
        configuration.standby = standby
        configuration.leaseMillis = leaseMs
        configuration.allowRemoteAdmin = allowRemoteAdmin
        configuration.prediction = !noPrediction
        configuration.truncateCorruption = truncateCorruptJournal
        configuration.serviceArguments = arg
        configuration.serviceEnvironment = try parseEnvironment(env)
        configuration.pipeline.fsync = policy
        configuration.pipeline.shadow = !noShadow
        configuration.pipeline.snapshotEveryRecords = snapshotEvery
        guard requestDeadlineMs > 0 else { throw ValidationError("--request-deadline-ms must be positive") }
        configuration.pipeline.requestDeadlineMillis = requestDeadlineMs
        guard maxStandbyLagMs >= 0 else { throw ValidationError("--max-standby-lag-ms must be 0 or more") }
        configuration.pipeline.maxStandbyLagMillis = maxStandbyLagMs
        guard maxBodyBytes >= 0, maxBodyBytes <= HTTPFrontendConfiguration.largestBodyLimit else {
            throw ValidationError("--max-body-bytes must be between 0 and \(HTTPFrontendConfiguration.largestBodyLimit)")
        }
        configuration.http.maximumBodyBytes = maxBodyBytes
        guard headerTimeoutMs > 0 else { throw ValidationError("--header-timeout-ms must be positive") }
        configuration.http.headerTimeoutMillis = headerTimeoutMs
        configuration.transfer.pauseBudgetMillis = pauseBudgetMs
        configuration.swapTiming.deadlineMillis = max(0, swapDeadlineMs)
        configuration.transfer.probationSeconds = probationSeconds
        configuration.transfer.residualLimit = residualLimit

        let supervisor = Supervisor(
            configuration: configuration, logger: logger, admin: { try AdminServer(core: $0) }
        ) { ready in
            FileHandle.standardOutput.write(Data((ready.line + "\n").utf8))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: supervisor, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            var message = "\(error)"
            if let e = error as? ServiceGroupError, let under = Mirror(reflecting: e).descendant("underlyingError") {
                message = "\(under)"
            }
            FileHandle.standardError.write(Data("understudy: \(message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what a running supervisor is doing.")
    @OptionGroup var options: AdminOptions
    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func run() async throws {
        let reply = try options.client().get("/status")
        guard reply.status == 200 else {
            FileHandle.standardError.write(Data("understudy status: HTTP \(reply.status): \(reply.text)\n".utf8))
            throw ExitCode(1)
        }
        if json {
            print(reply.text)
            return
        }
        let s = try reply.decode(SupervisorStatus.self)
        print("\(s.service) \(s.version) — listen \(s.listen)\(s.tlsListen.map { ", tls \($0)" } ?? ""), admin \(s.admin ?? "off"), fsync \(s.fsync), up \(Int(s.uptimeSeconds)) s")
        print("journal: sequence \(s.lastSequence), durable \(s.durableSequence); snapshot at \(s.snapshotSequence)\(s.snapshotInProgress ? " (one in progress)" : "")")
        if let r = s.replication {
            let lease = r.leaseHolder.map { holder in
                "lease: \(holder == r.holder ? "this supervisor" : holder), epoch \(r.leaseEpoch ?? 0), \(r.leaseRemainingMillis ?? 0) ms left of \(r.leaseMillis)"
            } ?? "lease: not read yet"
            print("mode: \(s.mode ?? "?") — journal \(r.journal); \(lease)")
            for e in r.events.suffix(5) {
                let when = Date(timeIntervalSince1970: Double(e.timeMillis) / 1000).formatted(.iso8601)
                print("  \(when) \(e.message)")
            }
        }
        if s.intakePaused { print("intake PAUSED, \(s.heldRequests) requests held") }
        print("instances:")
        for i in s.instances {
            let lag = i.lagRecords == 0 ? "in step" : "lag \(i.lagRecords) records / \(i.lagMillis) ms"
            let cmp = i.role == "primary" ? "" : String(format: ", %d compared, %d differed (window rate %.2f%%)", i.comparedReplies, i.differingReplies, i.discrepancyRate * 100)
            print("  #\(i.id) \(i.role.padding(toLength: 9, withPad: " ", startingAt: 0)) \(i.version) schema \(i.schemaVersion) pid \(i.pid) \(i.phase), applied \(i.appliedSequence), \(lag)\(cmp)")
        }
        if let p = s.probation {
            print(String(format: "probation: %.1f s left; previous primary #%d (%@) ready to take back; %d requests, %d errors", p.secondsLeft, p.previousPrimary, p.previousVersion, p.requests, p.errors))
        }
        print("swaps: \(s.swaps), discrepancies: \(s.discrepancies), worker restarts: \(s.workerRestarts)")
        if !s.givenUpRoles.isEmpty {
            print("GIVEN UP after too many restarts: \(s.givenUpRoles.joined(separator: ", "))")
        }
        if !s.quarantined.isEmpty {
            print("quarantined inputs (never applied again; request deadline \(s.requestDeadlineMillis) ms):")
            for q in s.quarantined {
                print("  seq \(q.sequence) \(q.command) on instance #\(q.instance) at \(q.time): \(q.reason)")
            }
        }
        let d = try options.client().get("/discrepancies?limit=5")
        if d.status == 200, let list = try? d.decode(DiscrepancyList.self), !list.recent.isEmpty {
            print("recent discrepancies:")
            for x in list.recent {
                print("  seq \(x.sequence) #\(x.instance) \(x.kind.rawValue) \(x.command): \(x.request) — primary \(x.primary) vs \(x.other)")
            }
        }
    }
}

func summarize(_ record: SwapRecord) -> String {
    let order = ["pause", "drain", "catch_up", "verify", "patch", "flip", "resume"]
    let steps = order.compactMap { step in record.stepMicros[step].map { String(format: "%@ %.2f", step, Double($0) / 1000) } }
        .joined(separator: ", ")
    if record.outcome.succeeded {
        let timing = record.timing.map { t in
            String(format: "; moment: %@ after %lld ms (%.0f req/s at the request, %.0f at the swap%@)",
                t.decision, t.waitedMillis, t.rateAtRequest, t.rateAtSwap,
                t.forecastRate.map { String(format: ", forecast %.0f", $0) } ?? "")
        } ?? ""
        return String(format: "%@ swap ok: #%d (%@) → #%d (%@), pause %.2f ms (%@), residual %d keys%@",
            record.reason.rawValue, record.fromInstance, record.fromVersion, record.toInstance, record.toVersion,
            Double(record.pauseMicros) / 1000, steps, record.outcome.residualKeys, timing)
    }
    return String(format: "%@ swap ABORTED after %.2f ms: %@; #%d (%@) keeps serving, nothing lost",
        record.reason.rawValue, Double(record.pauseMicros) / 1000, record.outcome.abortReason ?? "?", record.fromInstance, record.fromVersion)
}

func postSwap(_ options: AdminOptions, path: String, json: Bool, name: String) throws {
    let reply = try options.client().post(path)
    guard reply.status == 200 else {
        FileHandle.standardError.write(Data("understudy \(name): HTTP \(reply.status): \(reply.text)\n".utf8))
        throw ExitCode(1)
    }
    let record = try reply.decode(SwapRecord.self)
    print(json ? reply.text : summarize(record))
    if !record.outcome.succeeded { throw ExitCode(1) }
}

struct Swap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Swap roles with the same-version shadow (e.g. before host maintenance).")
    @OptionGroup var options: AdminOptions
    @Flag(name: .long, help: "Print the swap record as JSON.")
    var json = false
    func run() async throws { try postSwap(options, path: "/swap", json: json, name: "swap") }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Swap back to the previous primary (during probation).")
    @OptionGroup var options: AdminOptions
    @Flag(name: .long, help: "Print the swap record as JSON.")
    var json = false
    func run() async throws { try postSwap(options, path: "/rollback", json: json, name: "rollback") }
}

struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deploy a new version: it proves itself on a candidate before it is swapped in.")
    @Argument(help: "The new worker binary.")
    var binary: String
    @OptionGroup var options: AdminOptions
    @Option(name: .long, help: "A command run against a loopback listener serving a fork of the candidate ($UNDERSTUDY_TEST_PORT); exit 0 passes.")
    var testCommand: String?
    @Option(name: .long, help: "Compare this many live replies before deciding.")
    var compareRequests: Int?
    @Option(name: .long, help: "Compare live replies for this many seconds before deciding.")
    var compareSeconds: Double?
    @Flag(name: .long, help: "Validate only; do not swap.")
    var noSwap = false
    @Flag(name: .long, help: "Print the final report as JSON.")
    var json = false
    @Option(name: .long, parsing: .unconditionalSingleValue, help: "Extra argument for the candidate (repeatable).")
    var arg: [String] = []
    @Option(name: .long, help: "Extra KEY=VALUE environment for the candidate (repeatable).")
    var env: [String] = []

    func validate() throws {
        if compareRequests != nil && compareSeconds != nil {
            throw ValidationError("give either --compare-requests or --compare-seconds, not both")
        }
    }

    func run() async throws {
        let client = try options.client()
        let request = DeployRequest(
            binary: absolutePath(binary), arguments: arg.isEmpty ? nil : arg, environment: env.isEmpty ? nil : try parseEnvironment(env),
            testCommand: testCommand, compareRequests: compareRequests, compareSeconds: compareSeconds, noSwap: noSwap)
        let started = try client.post("/deploy", json: try JSONEncoder().encode(request))
        guard started.status == 202 else {
            FileHandle.standardError.write(Data("understudy deploy: HTTP \(started.status): \(started.text)\n".utf8))
            throw ExitCode(1)
        }
        let id = try started.decode([String: Int].self)["id"] ?? 0
        var printed = 0
        var lastRunning = ""
        var report: DeployReport
        while true {
            let reply = try client.get("/deploys/\(id)")
            report = try reply.decode(DeployReport.self)
            if !json {
                for (index, stage) in report.stages.enumerated() where index >= printed && stage.status != "running" {
                    let mark = stage.status == "passed" ? "ok  " : stage.status == "skipped" ? "skip" : "FAIL"
                    print("[\(mark)] \(stage.name.padding(toLength: 13, withPad: " ", startingAt: 0)) \(String(format: "%7.3f s", Double(stage.millis) / 1000))  \(stage.detail)")
                    printed = index + 1
                }
                if let running = report.stages.last, running.status == "running", running.name != lastRunning {
                    lastRunning = running.name
                    if isatty(1) != 0 { print("[ .. ] \(running.name)…") }
                }
            }
            if report.state != "running" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else if report.state == "accepted" {
            print("accepted: \(report.service ?? "?") \(report.version ?? "?") \(report.noSwap ? "validated (not swapped)" : "is primary")\(report.swap.map { "; " + summarize($0) } ?? "")")
        } else {
            print("REJECTED: " + report.reasons.joined(separator: "; "))
            for f in report.flagged {
                print("  \(f.command): candidate differed \(f.candidateDiffered)/\(f.candidateCompared), shadow (noise) \(f.noiseDiffered)/\(f.noiseCompared)")
            }
            for e in report.examples.prefix(5) {
                print("  example seq \(e.sequence): \(e.request) → primary \(e.primary), candidate \(e.other)")
            }
        }
        if report.state != "accepted" { throw ExitCode(1) }
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the whole idea end to end: kv v1 under load, a live deploy of v2, and a report.",
        discussion: """
            Uses kv-v1 and kv-v2 from beside this binary when they were built (swift build -c release), \
            otherwise the copies of them embedded in this binary.
            """)

    @Flag(name: .long, help: "Leave the supervisor running after the report (admin on 127.0.0.1:6381).")
    var keepRunning = false

    @Flag(name: .long, help: "The HTTP version: the ledger (ledger-v1 → ledger-v2) under HTTP load; --keys is then the number of accounts (default 1000).")
    var http = false

    @Option(name: .long, help: "Keys to load before the deploy (accounts to create with --http).")
    var keys: Int?

    @Option(name: .long, help: "Load generator connections.")
    var clients = 4

    @Option(name: .long, help: "The version-1 worker binary (default: beside this binary, or embedded).")
    var v1: String?

    @Option(name: .long, help: "The version-2 worker binary (default: beside this binary, or embedded).")
    var v2: String?

    @Option(name: .long, help: "Log level for the supervisor's own log (stderr).")
    var logLevel = "warning"

    func worker(_ name: String, explicit: String?) -> DemoRunner.Worker {
        if let explicit { return .init(binary: absolutePath(explicit)) }
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let beside = URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: beside) { return .init(binary: beside) }
        return .init(binary: me, arguments: [Understudy.embeddedWorkerFlag, name])
    }

    func run() async throws {
        let logger = bootstrapLogging(logLevel)
        let names = http ? ("ledger-v1", "ledger-v2") : ("kv-v1", "kv-v2")
        var options = DemoRunner.Options(v1: worker(names.0, explicit: v1), v2: worker(names.1, explicit: v2))
        options.keys = keys ?? (http ? 1000 : 100_000)
        options.clients = clients
        options.keepRunning = keepRunning
        options.http = http
        let say: @Sendable (String) -> Void = { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
        if http {
            say("understudy demo --http: ledger v1 → live deploy of ledger v2 under HTTP load (v1: \(options.v1.binary) \(options.v1.arguments.joined(separator: " ")))")
        } else {
            say("understudy demo: kv v1 → live deploy of kv v2 under load (v1: \(options.v1.binary) \(options.v1.arguments.joined(separator: " ")))")
        }
        let report = try await DemoRunner(options: options, logger: logger, say: say).run()
        say(DemoRunner.render(report))
        if !report.succeeded { throw ExitCode(1) }
    }
}
