import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyJournalPostgres
import UnderstudyWire

/// A host and port to listen on.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    /// The host (an IP address; loopback unless the user says otherwise).
    public var host: String
    /// The port; 0 picks a free one.
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` (`[::1]:PORT` for IPv6) or a bare port.
    public init?(parsing text: String) {
        if let p = Int(text) {
            self.init(host: "127.0.0.1", port: p)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    /// True for an IPv4 address in 127.0.0.0/8, the IPv6 loopback `::1` (or an IPv4-mapped 127.x address), and
    /// the name `localhost`. The host is parsed as an address: any other name (`127.evil.example`) is not
    /// loopback.
    public var isLoopback: Bool {
        Self.isLoopback(host: host)
    }

    /// Whether `host` is a loopback address (see ``isLoopback``).
    public static func isLoopback(host: String) -> Bool {
        if host.lowercased() == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            // s_addr is in network byte order: the first octet is the lowest byte in memory.
            return withUnsafeBytes(of: &v4) { $0[0] } == 127
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        // ::ffff:127.x.y.z
        return bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }

    /// True for the wildcard addresses (`0.0.0.0`, `::`), which listen on every interface.
    public var isWildcard: Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return v4.s_addr == 0 }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, host, &v6) == 1 else { return false }
        return withUnsafeBytes(of: &v6) { $0.allSatisfy { $0 == 0 } }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything `understudy run` needs, with documented defaults.
public struct SupervisorConfiguration: Sendable {
    /// The worker binary.
    public var servicePath: String
    /// Extra arguments for every worker.
    public var serviceArguments: [String] = []
    /// Extra environment for every worker.
    public var serviceEnvironment: [String: String] = [:]
    /// The client (RESP) listener; default 127.0.0.1:6380.
    public var listen = ListenAddress(host: "127.0.0.1", port: 6380)
    /// The admin listener; default 127.0.0.1:6381; nil disables it.
    public var admin: ListenAddress? = ListenAddress(host: "127.0.0.1", port: 6381)
    /// Allow the admin API on a non-loopback address (off by default).
    public var allowRemoteAdmin = false
    /// The data directory (journal, snapshots, token, discrepancy log); default ./understudy-data.
    public var dataDirectory = "./understudy-data"
    /// Cut the journal at the first corrupt record instead of refusing to start.
    public var truncateCorruption = false
    /// Journal segment size.
    public var segmentSize = 64 << 20
    /// The request path's settings (fsync policy, windows, shadow on/off, snapshot schedule).
    public var pipeline = PipelineConfiguration()
    /// The transfer controller's settings.
    public var transfer = TransferConfiguration()
    /// RESP input limits.
    public var limits = RESPLimits()
    /// HTTP front-end limits (used when the service declares HTTP).
    public var http = HTTPFrontendConfiguration()
    /// Run the prediction engine (an advisor off the request path); default on.
    public var prediction = true
    /// When planned and deploy swaps pause intake: the quietest moment inside a short deadline.
    public var swapTiming = SwapTimingPolicy()
    /// Serve plain-text RESP on ``listen`` (false: TLS only, `--listen off`).
    public var plainText = true
    /// TLS for clients (`--tls-port`); nil: none.
    public var tls: ClientTLSConfiguration?
    /// Who may talk to the service (`--requirepass`, `--aclfile`); default: everyone, everything.
    public var access = AccessControl.open
    /// Refuse to listen beyond loopback while no authentication is required (`--protected-mode no` turns it off).
    public var protectedMode = true
    /// The journal in PostgreSQL (`--journal postgres://…`); nil: segment files under the data directory.
    public var postgresJournal: PostgresJournalAddress?
    /// Start as a standby of the supervisor holding the PostgreSQL journal's lease (`--standby`).
    public var standby = false
    /// The lease's length in milliseconds (`--lease-ms`): how long after an active supervisor stops renewing
    /// a standby takes over.
    public var leaseMillis = 2000

    /// Creates a configuration for a service binary.
    public init(servicePath: String) { self.servicePath = servicePath }

    /// Checks what can be checked before anything starts: protected mode and the admin address.
    ///
    /// - Throws: ``SupervisorError`` saying what is refused and how to fix it.
    public func validate() throws {
        if protectedMode && !access.authenticationRequired {
            let exposed = (plainText ? [listen] : []) + (tls.map { [$0.listen] } ?? [])
            if let address = exposed.first(where: { !$0.isLoopback }) {
                throw SupervisorError(.rejected, """
                    refusing to listen on \(address) without authentication (protected mode): anyone who can reach it \
                    could read and change the data. Set a password with --requirepass PASSWORD or users with \
                    --aclfile PATH, or listen on a loopback address (--listen 127.0.0.1:PORT), or pass \
                    --protected-mode no if the network is trusted
                    """)
            }
        }
        if let admin, !admin.isLoopback && !allowRemoteAdmin {
            throw SupervisorError(.bindFailed, """
                refusing to serve the admin API on \(admin), which is not a loopback address; use 127.0.0.1 or ::1, \
                pass --allow-remote-admin to serve it there anyway, or --admin off
                """)
        }
        if standby && postgresJournal == nil {
            throw SupervisorError(.rejected, "--standby needs a shared journal: --journal postgres://USER@HOST:PORT/DATABASE")
        }
        if leaseMillis < 100 {
            throw SupervisorError(.rejected, "--lease-ms must be at least 100")
        }
        if !plainText && tls == nil {
            throw SupervisorError(.rejected, "--listen off needs --tls-port: the service would have no client listener")
        }
    }
}

/// TLS for client connections.
public struct ClientTLSConfiguration: Sendable {
    /// Whether clients must present a certificate signed by the CA (`--tls-auth-clients`).
    public enum ClientAuthentication: String, Sendable {
        /// A client certificate is required and verified.
        case yes
        /// A certificate a client presents is verified; none is accepted.
        case optional
        /// Client certificates are not asked for.
        case no
    }

    /// The TLS listener (port 0 picks one).
    public var listen: ListenAddress
    /// The server's certificate chain (PEM).
    public var certificatePath: String
    /// The server's private key (PEM).
    public var keyPath: String
    /// CA certificates (PEM) that client certificates are verified against; nil: clients are not asked for one.
    public var caCertificatePath: String?
    /// Client certificate verification; default `yes` when a CA file is given.
    public var clientAuthentication: ClientAuthentication

    /// Creates a TLS configuration.
    public init(
        listen: ListenAddress, certificatePath: String, keyPath: String, caCertificatePath: String? = nil,
        clientAuthentication: ClientAuthentication? = nil
    ) {
        self.listen = listen
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.caCertificatePath = caCertificatePath
        self.clientAuthentication = clientAuthentication ?? (caCertificatePath == nil ? .no : .yes)
    }
}

/// What `understudy run` prints once it serves.
public struct ReadyInfo: Sendable, Equatable {
    /// The bound client address.
    public var listen: ListenAddress
    /// The bound admin address, if any.
    public var admin: ListenAddress?
    /// The bound TLS address, if any.
    public var tls: ListenAddress?
    /// False when only TLS is served (`--listen off`).
    public var plainText = true
    /// The data directory.
    public var dataDirectory: String
    /// Service name and version.
    public var service: String
    /// The one ready line.
    public var line: String {
        "understudy ready: listen=\(plainText ? listen.description : "off") admin=\(admin.map(\.description) ?? "off") data=\(dataDirectory) service=\(service) pid=\(getpid())"
            + (tls.map { " tls=\($0)" } ?? "")
    }
}

/// The supervisor: journal, pipeline, RESP front-end and admin API, as one lifecycle `Service`.
public final class Supervisor: Service, Sendable {
    let configuration: SupervisorConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    let onReady: @Sendable (ReadyInfo) -> Void
    let makeAdmin: SupervisorAdminFactory?

    /// Creates a supervisor; nothing starts until ``run()``.
    ///
    /// - Parameters:
    ///   - configuration: What to run, and where.
    ///   - logger: The supervisor's logger.
    ///   - admin: Makes the admin API served on the configuration's admin address (UnderstudyAdmin's
    ///     `AdminServer`); nil serves none, and the ready line says `admin=off`.
    ///   - onReady: Called once, when the supervisor first serves.
    package init(
        configuration: SupervisorConfiguration, logger: Logger, admin: SupervisorAdminFactory?,
        onReady: @escaping @Sendable (ReadyInfo) -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        self.onReady = onReady
        self.makeAdmin = admin
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT through the service group), then drains and snapshots.
    ///
    /// With a PostgreSQL journal the supervisor is active (it took the lease) or a standby (`--standby`); an
    /// active that is taken over carries on as a standby, on the same addresses.
    public func run() async throws {
        try configuration.validate()
        threadPool.start()
        let loop = group.next()
        let dataDirectory = configuration.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw SupervisorError(.journal, "cannot create the data directory \(dataDirectory): \(error)")
        }
        let journal: Journal
        var postgres: PostgresJournal?
        do {
            if let address = configuration.postgresJournal {
                let configuration = PostgresJournalConfiguration(fsync: configuration.pipeline.fsync)
                let logger = self.logger
                let opened = try await threadPool.runIfActive(eventLoop: loop) {
                    try PostgresJournal.open(address: address, configuration: configuration, logger: logger)
                }.get()
                postgres = opened
                journal = Journal(backend: opened)
            } else {
                try FileManager.default.createDirectory(atPath: dataDirectory + "/journal", withIntermediateDirectories: true)
                journal = try Journal.open(
                    directory: dataDirectory + "/journal",
                    configuration: JournalConfiguration(
                        fsync: configuration.pipeline.fsync, segmentSize: configuration.segmentSize,
                        truncateCorruption: configuration.truncateCorruption),
                    logger: logger)
            }
        } catch {
            try? await threadPool.shutdownGracefully()
            let place = configuration.postgresJournal.map(\.description) ?? "\(dataDirectory)/journal"
            throw SupervisorError(.journal, "cannot open the journal at \(place): \(error)")
        }
        logger.info("journal opened", metadata: ["understudy.recovery": "\(journal.recoveryReport)"])
        defer { try? journal.close() }

        var setup: ReplicationSetup?
        if let postgres {
            do {
                setup = try await firstRole(postgres, loop: loop)
            } catch {
                try? await threadPool.shutdownGracefully()
                throw error
            }
        }
        var configuration = self.configuration
        var announced = false
        while true {
            let round = configuration
            let roundSetup = setup
            // The core lives on its loop: this task reaches it only through the loop-bound reference, inside
            // closures that run there.
            let (core, admin, demotion) = try await loop.submit {
                let core = try SupervisorCore(
                    loop: loop, journal: journal, configuration: round, threadPool: self.threadPool, logger: self.logger,
                    replication: roundSetup, admin: self.makeAdmin)
                return (NIOLoopBound(core, eventLoop: loop), core.adminServer, core.demotion)
            }.get()
            do {
                try await loop.flatSubmit { core.value.start() }.get()
            } catch {
                _ = try? await loop.flatSubmit { core.value.stop() }.get()
                try? await admin?.stop()
                await shutDownThreads()
                throw error
            }
            let ready = try await loop.submit { core.value.readyInfo() }.get()
            if !announced {
                onReady(ready)
                announced = true
            }
            // A later round (a standby after a takeover) listens where this one does.
            configuration.listen.port = ready.listen.port
            configuration.admin = ready.admin
            if let tls = ready.tls { configuration.tls?.listen = tls }

            let takenOver = await shutdownOrTakeover(core, demotion: demotion, loop: loop)
            guard takenOver, let postgres, var next = setup else {
                logger.info("shutting down: draining, final snapshot")
                let (wasActive, epoch) = try await loop.submit {
                    (core.value.mode == .active, core.value.replication?.epoch ?? 0)
                }.get()
                _ = try? await loop.flatSubmit { core.value.stop() }.get()
                try? await admin?.stop()
                if wasActive, let postgres, epoch != 0 {
                    // Hand over at once: the standby need not wait for the lease to run out.
                    _ = try? await threadPool.runIfActive(eventLoop: loop) { try postgres.releaseLease(epoch: epoch) }.get()
                }
                await shutDownThreads()
                return
            }
            logger.notice("restarting as a standby on the same addresses (taken over, or fallen behind the journal)")
            next.events = try await loop.submit { core.value.replication?.events ?? [] }.get()
            _ = try? await loop.flatSubmit { core.value.stop() }.get()
            try? await admin?.stop()
            _ = try await threadPool.runIfActive(eventLoop: loop) { try postgres.demote() }.get()
            next.mode = .standby
            next.epoch = 0
            setup = next
        }
    }

    /// Ends the event loop and the thread pool (the supervisor is done).
    private func shutDownThreads() async {
        try? await group.shutdownGracefully()
        try? await threadPool.shutdownGracefully()
    }

    /// The role a supervisor over a PostgreSQL journal starts in: a standby when asked (`--standby`), otherwise
    /// active — the lease must be free or expired.
    private func firstRole(_ postgres: PostgresJournal, loop: any EventLoop) async throws -> ReplicationSetup {
        let holder = "\(ProcessInfo.processInfo.hostName) pid \(getpid()) \(UUID().uuidString.prefix(8))"
        let leaseMillis = configuration.leaseMillis
        if configuration.standby {
            return ReplicationSetup(journal: postgres, mode: .standby, epoch: 0, holder: holder, leaseMillis: leaseMillis)
        }
        let taken = try await threadPool.runIfActive(eventLoop: loop) { () -> (UInt64, UInt64)? in
            guard let epoch = try postgres.acquireLease(holder: holder, milliseconds: leaseMillis) else { return nil }
            return (epoch, try postgres.activate(epoch: epoch))
        }.get()
        guard let (epoch, _) = taken else {
            let lease = try? await threadPool.runIfActive(eventLoop: loop) { try postgres.inspectLease() }.get()
            throw SupervisorError(.rejected, """
                another supervisor holds the journal's lease (\(lease?.holder ?? "?"), epoch \(lease?.epoch ?? 0), \
                \(lease?.remainingMilliseconds ?? 0) ms left): start this one with --standby to follow it and take over \
                when it stops
                """)
        }
        return ReplicationSetup(journal: postgres, mode: .active, epoch: epoch, holder: holder, leaseMillis: leaseMillis)
    }

    /// Waits for graceful shutdown or, over a PostgreSQL journal, for this supervisor to be taken over.
    ///
    /// - Returns: True when it was taken over.
    private func shutdownOrTakeover(
        _ core: NIOLoopBound<SupervisorCore>, demotion: EventLoopPromise<Bool>?, loop: any EventLoop
    ) async -> Bool {
        guard let demotion else {
            try? await gracefulShutdown()
            return false
        }
        let future = demotion.futureResult
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                return false
            }
            group.addTask { (try? await future.get()) ?? false }
            let first = await group.next() ?? false
            group.cancelAll()
            // The other wait ends too: the promise is completed (false) if it was not.
            loop.execute { core.value.finishDemotionWait() }
            return first
        }
    }
}
