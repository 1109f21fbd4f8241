import Foundation
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

// The harness of the end-to-end tests: the real binaries, started as processes, driven over real sockets.

/// Where the built binaries are: beside the test bundle (`.build/debug/understudyPackageTests.xctest`).
enum Binaries {
    static let directory: String = {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: me).deletingLastPathComponent()
        // A bundle directory (macOS-style layout): walk up until the binaries are found.
        for _ in 0..<4 where !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("understudy").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir.path
    }()

    static func path(_ name: String) -> String { directory + "/" + name }
    static var understudy: String { path("understudy") }
    static var kv1: String { path("kv-v1") }
    static var kv2: String { path("kv-v2") }
    static var testService: String { path("test-service") }

    /// `redis-cli` on PATH, if installed.
    static let redisCLI: String? = {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/redis-cli"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }()
}

/// A unique temporary directory, removed by ``remove()``.
struct TempDirectory: Sendable {
    let path: String
    init(_ label: String) throws {
        let base = FileManager.default.temporaryDirectory.path
        path = base + "/understudy-it-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs blocking work on its own thread, so the cooperative pool (two threads here) stays free.
func io<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            do { c.resume(returning: try body()) } catch { c.resume(throwing: error) }
        }
        thread.stackSize = 4 << 20
        thread.start()
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
@discardableResult
func eventually(timeout: Double = 60, every: Double = 0.05, _ condition: () async throws -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(Int(every * 1000)))
    }
    return (try? await condition()) == true
}

/// The output of a finished command.
struct CommandResult: Sendable, CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
    var description: String { "exit \(status)\n--- stdout:\n\(stdout)\n--- stderr:\n\(stderr)" }
}

/// A child process whose output goes to files (no pipe can fill up and stall it).
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let stdoutPath: String
    let stderrPath: String

    init(_ executable: String, _ arguments: [String], logDirectory: String, name: String,
         environment: [String: String] = [:]) throws {
        stdoutPath = logDirectory + "/\(name).stdout"
        stderrPath = logDirectory + "/\(name).stderr"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "UNDERSTUDY_TOKEN")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits for the exit; nil when it is still running after `timeout`.
    func waitForExit(timeout: Double) async -> Int32? {
        let ok = await eventually(timeout: timeout, every: 0.02) { !self.process.isRunning }
        return ok ? process.terminationStatus : nil
    }

    func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }
}

/// Runs a command to completion (killing it after `timeout`).
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                timeout: Double = 120) async throws -> CommandResult {
    let logs = try TempDirectory("cmd")
    defer { logs.remove() }
    let child = try ChildProcess(executable, arguments, logDirectory: logs.path, name: "cmd", environment: environment)
    guard let status = await child.waitForExit(timeout: timeout) else {
        child.signal(SIGKILL)
        _ = await child.waitForExit(timeout: 10)
        throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout) s: \(child.stdout)\(child.stderr)")
    }
    return CommandResult(status: status, stdout: child.stdout, stderr: child.stderr)
}

/// Runs the `understudy` CLI.
func understudy(_ arguments: [String], timeout: Double = 180) async throws -> CommandResult {
    try await runCommand(Binaries.understudy, arguments, timeout: timeout)
}

/// What the ready line says.
struct ReadyLine: Sendable {
    var port: Int
    var admin: ListenAddress
    var pid: Int32
    var service: String

    init?(_ line: String) {
        var fields: [String: String] = [:]
        for part in line.split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { continue }
            fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
        }
        guard let l = fields["listen"].flatMap(ListenAddress.init(parsing:)),
              let a = fields["admin"].flatMap(ListenAddress.init(parsing:)),
              let p = fields["pid"].flatMap({ Int32($0) })
        else { return nil }
        port = l.port
        admin = a
        pid = p
        service = line.range(of: "service=").map { String(line[$0.upperBound...].prefix { $0 != "=" }) } ?? ""
    }
}

/// `understudy run` as a child process.
final class SupervisorProcess: @unchecked Sendable {
    let child: ChildProcess
    let dataDirectory: String
    let ready: ReadyLine
    private let seenWorkers = Mutex<Set<Int32>>([])

    var port: Int { ready.port }
    var adminAddress: String { ready.admin.description }
    var pid: Int32 { child.pid }
    var stderr: String { child.stderr }
    var stdout: String { child.stdout }
    /// `--admin ADDR --data DIR` for the CLI.
    var cliTarget: [String] { ["--admin", adminAddress, "--data", dataDirectory] }

    var admin: AdminClient {
        AdminClient(address: ready.admin, token: AdminToken.read(dataDirectory: dataDirectory), timeout: 120)
    }

    private init(child: ChildProcess, dataDirectory: String, ready: ReadyLine) {
        self.child = child
        self.dataDirectory = dataDirectory
        self.ready = ready
    }

    /// Starts `understudy run` and waits for its ready line.
    /// - Parameters:
    ///   - service: the worker binary.
    ///   - dataDirectory: the data directory (the logs go beside it).
    ///   - arguments: more `run` flags.
    static func start(service: String = Binaries.kv1, dataDirectory: String, arguments: [String] = [],
                      name: String = "supervisor") async throws -> SupervisorProcess {
        let child = try startChild(service: service, dataDirectory: dataDirectory, arguments: arguments, name: name)
        return try await awaitReady(child, dataDirectory: dataDirectory)
    }

    /// Waits for the ready line of a supervisor started with ``startChild(service:dataDirectory:arguments:name:)``.
    static func awaitReady(_ child: ChildProcess, dataDirectory: String) async throws -> SupervisorProcess {
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            if let line = child.stdout.split(separator: "\n").first(where: { $0.hasPrefix("understudy ready:") }) {
                guard let ready = ReadyLine(String(line)) else {
                    child.signal(SIGKILL)
                    throw HarnessError("unparseable ready line: \(line)")
                }
                let s = SupervisorProcess(child: child, dataDirectory: dataDirectory, ready: ready)
                s.rememberChildren()
                return s
            }
            if !child.isRunning {
                throw HarnessError("understudy run exited with \(child.process.terminationStatus) before it was ready:\n\(child.stderr)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        child.signal(SIGKILL)
        throw HarnessError("understudy run was not ready within 90 s:\n\(child.stderr)")
    }

    /// Starts `understudy run` without waiting (for tests of startup failures).
    static func startChild(service: String, dataDirectory: String, arguments: [String] = [],
                           name: String = "supervisor") throws -> ChildProcess {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let logs = URL(fileURLWithPath: dataDirectory).deletingLastPathComponent().path
        return try ChildProcess(
            Binaries.understudy,
            ["run", "--service", service, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", dataDirectory,
             "--log-level", "notice"] + arguments,
            logDirectory: logs, name: name + "-\(UUID().uuidString.prefix(6))")
    }

    // MARK: admin views

    func status() throws -> SupervisorStatus {
        let reply = try admin.get("/status")
        guard reply.status == 200 else { throw HarnessError("GET /status: HTTP \(reply.status) \(reply.text)") }
        let s = try reply.decode(SupervisorStatus.self)
        seenWorkers.withLock { for i in s.instances where i.pid > 0 { $0.insert(i.pid) } }
        return s
    }

    func primary() throws -> InstanceStatus? { try status().instances.first { $0.role == "primary" } }

    func discrepancies() throws -> DiscrepancyList {
        try admin.get("/discrepancies?limit=1000").decode(DiscrepancyList.self)
    }

    func swaps() throws -> [SwapRecord] { try admin.get("/swaps").decode([SwapRecord].self) }

    /// Waits until a live same-version shadow exists (and the primary is live).
    func waitForLiveShadow(timeout: Double = 90) async -> Bool {
        await eventually(timeout: timeout) {
            let s = try self.status()
            guard let p = s.instances.first(where: { $0.role == "primary" }), p.phase == "live" else { return false }
            return s.instances.contains { $0.role == "shadow" && $0.phase == "live" && $0.version == p.version }
        }
    }

    /// A RESP client to the front-end.
    func client(timeoutSeconds: Int = 30) throws -> RESPClient {
        try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: timeoutSeconds)
    }

    // MARK: processes

    /// Records the supervisor's child processes (workers) so they can be killed at the end.
    func rememberChildren() {
        let kids = childPids(of: child.pid)
        seenWorkers.withLock { $0.formUnion(kids) }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`). Returns the exit status.
    @discardableResult
    func stop(timeout: Double = 60) async -> Int32? {
        rememberChildren()
        _ = try? status()
        child.signal(SIGTERM)
        let status = await child.waitForExit(timeout: timeout)
        if status == nil { child.signal(SIGKILL) }
        return status
    }

    /// SIGKILL of the supervisor itself (its workers are remembered first, for ``cleanup()``).
    func kill9() async {
        rememberChildren()
        _ = try? status()
        child.signal(SIGKILL)
        _ = await child.waitForExit(timeout: 30)
    }

    /// Kills whatever is left: the supervisor and every worker it ever had.
    func cleanup() {
        rememberChildren()
        child.signal(SIGKILL)
        for pid in seenWorkers.withLock({ $0 }) where isWorker(pid) {
            kill(pid, SIGKILL)
        }
    }
}

/// The pids whose parent is `parent`.
func childPids(of parent: Int32) -> Set<Int32> {
    var out: Set<Int32> = []
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return out }
    for e in entries {
        guard let pid = Int32(e),
              let stat = try? String(contentsOfFile: "/proc/\(e)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 1, Int32(fields[1]) == parent { out.insert(pid) }
    }
    return out
}

/// True when `pid` is alive and is an understudy worker (started with `--understudy-socket`).
func isWorker(_ pid: Int32) -> Bool {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
    return String(decoding: data, as: UTF8.self).contains("--understudy-socket")
}

/// True while `pid` exists (and is not a zombie).
func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")")
    else { return false }
    return !stat[stat.index(after: close)...].hasPrefix(" Z")
}

// MARK: load and checks

/// A running load generator.
final class Load: @unchecked Sendable {
    let generator: LoadGenerator
    init(port: Int, clients: Int = 3, counters: Int = 24, pipeline: Int = 1, prefix: String = "load") {
        var c = LoadGenerator.Configuration(host: "127.0.0.1", port: port)
        c.clients = clients
        c.counters = counters
        c.pipeline = pipeline
        c.keys = 2000
        c.prefix = prefix
        generator = LoadGenerator(configuration: c)
        generator.start()
    }

    func stop() async throws -> LoadGenerator.Report {
        let g = generator
        return try await io { g.stop() }
    }
}

/// Reads every counter the load acknowledged and compares it with the acknowledged count.
/// Returns human-readable problems: lost writes (value below acknowledged), and — when `exact` —
/// doubled writes (value above).
func counterProblems(port: Int, acknowledged: [String: Int], exact: Bool) async throws -> [String] {
    let keys = acknowledged.keys.sorted()
    let values: [RESPValue] = try await io {
        let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
        return try c.pipeline(keys.map { ["GET", $0] })
    }
    var problems: [String] = []
    for (key, reply) in zip(keys, values) {
        let acked = acknowledged[key]!
        guard case .bulk(let b?) = reply, let v = Int(String(decoding: b, as: UTF8.self)) else {
            problems.append("\(key): acknowledged \(acked) INCRs, GET returned \(reply.display)")
            continue
        }
        if v < acked { problems.append("\(key): LOST writes: acknowledged \(acked), value \(v)") }
        if exact && v > acked { problems.append("\(key): DOUBLED writes: acknowledged \(acked), value \(v)") }
    }
    return problems
}

/// The string of a bulk reply.
func text(_ v: RESPValue) -> String? {
    switch v {
    case .bulk(let b?): return String(decoding: b, as: UTF8.self)
    case .simple(let s): return s
    case .error(let s): return s
    default: return nil
    }
}
