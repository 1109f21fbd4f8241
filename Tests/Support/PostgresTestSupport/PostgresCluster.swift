import Foundation

/// A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, a server on a free loopback
/// port, stopped and removed by ``destroy()``. Run as root, the server runs as the `postgres` user (PostgreSQL
/// refuses root).
public final class PostgresCluster: @unchecked Sendable {
    // Safety of @unchecked Sendable: the properties are set in `init` and never changed; the methods only start
    // processes.

    /// Why PostgreSQL cannot be used here, or nil when it can.
    public static let unavailableReason: String? = {
        guard binDirectory != nil else {
            return "PostgreSQL's server programs (initdb, pg_ctl) are not installed; `.ci/run` installs Debian's postgresql"
        }
        if getuid() == 0 && !userExists("postgres") {
            return "running as root and there is no 'postgres' user to run the server as"
        }
        return nil
    }()

    /// The directory with initdb, pg_ctl, postgres and pg_basebackup.
    public static let binDirectory: String? = {
        let fm = FileManager.default
        var candidates: [String] = []
        if let versions = try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql") {
            for v in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) { candidates.append("/usr/lib/postgresql/\(v)/bin") }
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") { candidates.append(String(dir)) }
        return candidates.first { fm.isExecutableFile(atPath: $0 + "/pg_ctl") && fm.isExecutableFile(atPath: $0 + "/initdb") && fm.isExecutableFile(atPath: $0 + "/postgres") }
    }()

    /// The cluster's directory (data in `data`, the socket and the log beside it).
    public let root: String
    public let dataDirectory: String
    public let port: Int
    public let user = "understudy"
    public let database = "understudy"

    /// `postgres://understudy@127.0.0.1:PORT/understudy`.
    public var url: String { "postgres://\(user)@127.0.0.1:\(port)/\(database)" }

    private init(root: String, dataDirectory: String, port: Int) {
        self.root = root
        self.dataDirectory = dataDirectory
        self.port = port
    }

    /// Creates and starts a cluster (trust authentication on loopback; `fsync` on, as in production).
    ///
    /// - Parameter settings: Extra `postgresql.conf` lines.
    public static func start(settings: [String] = []) throws -> PostgresCluster {
        guard let bin = binDirectory else { throw PostgresClusterError("PostgreSQL is not installed") }
        let root = NSTemporaryDirectory() + "understudy-pg-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try handOver(root)
        let data = root + "/data"
        try run(bin + "/initdb", ["-D", data, "-U", "understudy", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
        let cluster = PostgresCluster(root: root, dataDirectory: data, port: try freePort())
        try cluster.configure(settings: settings)
        try cluster.startServer()
        try cluster.createDatabase()
        return cluster
    }

    /// A streaming replica of this cluster made with `pg_basebackup`, started; with `synchronous` the primary
    /// waits for it on every commit (`synchronous_standby_names`).
    public func startStandby(synchronous: Bool) throws -> PostgresCluster {
        guard let bin = Self.binDirectory else { throw PostgresClusterError("PostgreSQL is not installed") }
        let root = NSTemporaryDirectory() + "understudy-pg-standby-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try Self.handOver(root)
        let data = root + "/data"
        try Self.run(bin + "/pg_basebackup", ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        let standby = PostgresCluster(root: root, dataDirectory: data, port: try Self.freePort())
        try standby.configure(settings: [])
        // After pg_basebackup -R's own line in postgresql.auto.conf (which wins over postgresql.conf): named, so
        // the primary can wait for it.
        try standby.appendSettings(
            ["primary_conninfo = 'host=127.0.0.1 port=\(port) user=\(user) application_name=understudy_standby'"],
            file: "postgresql.auto.conf")
        try standby.startServer()
        if synchronous {
            try appendSettings(["synchronous_standby_names = 'understudy_standby'"])
            try Self.run(bin + "/pg_ctl", ["-D", dataDirectory, "reload"], capture: false)
            // Wait until the primary sees the standby as synchronous.
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let out = try psql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'understudy_standby'")
                if out.contains("sync") && !out.contains("async") { return standby }
                Thread.sleep(forTimeInterval: 0.1)
            }
            throw PostgresClusterError("the standby did not become synchronous within 30 s")
        }
        return standby
    }

    /// `pg_ctl promote`: the standby becomes a primary.
    public func promote() throws {
        guard let bin = Self.binDirectory else { return }
        try Self.run(bin + "/pg_ctl", ["-D", dataDirectory, "-w", "promote"], capture: false)
    }

    /// Stops the server: `immediate` is a crash (no checkpoint), `fast` a clean stop.
    public func stop(mode: String = "immediate") throws {
        guard let bin = Self.binDirectory else { return }
        try Self.run(bin + "/pg_ctl", ["-D", dataDirectory, "-m", mode, "-w", "stop"], capture: false)
    }

    /// Starts the server again after ``stop(mode:)``.
    public func restart() throws {
        try startServer()
    }

    /// Runs SQL with psql and returns its unaligned output.
    @discardableResult
    public func psql(_ sql: String) throws -> String {
        let psql = FileManager.default.isExecutableFile(atPath: (Self.binDirectory ?? "") + "/psql") ? Self.binDirectory! + "/psql" : "/usr/bin/psql"
        return try Self.run(psql, ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], asServerUser: false)
    }

    /// Stops the server (immediately) and removes the directory.
    public func destroy() {
        try? stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    // MARK: internals

    private func configure(settings: [String]) throws {
        try appendSettings([
            "listen_addresses = '127.0.0.1'", "port = \(port)", "unix_socket_directories = '\(root)'",
            "fsync = on", "max_connections = 50", "shared_buffers = 32MB", "max_wal_senders = 5", "wal_level = replica",
            "logging_collector = off",
        ] + settings)
    }

    private func appendSettings(_ lines: [String], file: String = "postgresql.conf") throws {
        let path = dataDirectory + "/" + file
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(("\n" + lines.joined(separator: "\n") + "\n").utf8))
        try handle.close()
    }

    private func startServer() throws {
        guard let bin = Self.binDirectory else { return }
        try Self.run(bin + "/pg_ctl", ["-D", dataDirectory, "-l", root + "/server.log", "-w", "-t", "60", "start"], capture: false)
    }

    private func createDatabase() throws {
        let psql = FileManager.default.isExecutableFile(atPath: (Self.binDirectory ?? "") + "/psql") ? Self.binDirectory! + "/psql" : "/usr/bin/psql"
        try Self.run(psql, ["-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", "postgres", "-c", "CREATE DATABASE \(database)"], asServerUser: false)
    }

    private static func userExists(_ name: String) -> Bool { getpwnam(name) != nil }

    /// Gives the directory to the server's user when running as root.
    private static func handOver(_ path: String) throws {
        guard getuid() == 0, let pw = getpwnam("postgres") else { return }
        guard chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
            throw PostgresClusterError("cannot hand \(path) to the postgres user: errno \(errno)")
        }
    }

    /// Runs a program to its end (as the server's user when root), its output going to a file: a server it
    /// starts in the background keeps inherited descriptors, so no pipe is used (its end would never come).
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], asServerUser: Bool = true, capture: Bool = true) throws -> String {
        let argv = (asServerUser && getuid() == 0) ? ["/usr/sbin/runuser", "-u", "postgres", "--", tool] + arguments : [tool] + arguments
        let logPath = NSTemporaryDirectory() + "understudy-pg-run-\(UUID().uuidString)"
        defer { unlink(logPath) }
        let fd = open(logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw PostgresClusterError("cannot create \(logPath)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        posix_spawn_file_actions_addclose(&actions, fd)
        var cArgs = argv.map { strdup($0) } + [nil]
        defer { for a in cArgs { free(a) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
        close(fd)
        guard spawned == 0 else { throw PostgresClusterError("cannot start \(argv[0]): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            throw PostgresClusterError("\((tool as NSString).lastPathComponent) \(arguments.joined(separator: " ")) failed (status \(status)): \(text)")
        }
        return text
    }

    /// A port nothing listens on (bound and released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw PostgresClusterError("cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A failure to set up the test cluster.
public struct PostgresClusterError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
