import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import UnderstudyJournal
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

    /// True for 127.0.0.0/8, ::1 and "localhost".
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
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

    /// Creates a configuration for a service binary.
    public init(servicePath: String) { self.servicePath = servicePath }
}

/// What `understudy run` prints once it serves.
public struct ReadyInfo: Sendable, Equatable {
    /// The bound client address.
    public var listen: ListenAddress
    /// The bound admin address, if any.
    public var admin: ListenAddress?
    /// The data directory.
    public var dataDirectory: String
    /// Service name and version.
    public var service: String
    /// The one ready line.
    public var line: String {
        "understudy ready: listen=\(listen) admin=\(admin.map(\.description) ?? "off") data=\(dataDirectory) service=\(service) pid=\(getpid())"
    }
}

/// The supervisor: journal, pipeline, RESP front-end and admin API, as one lifecycle `Service`.
public final class Supervisor: Service, Sendable {
    let configuration: SupervisorConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let threadPool: NIOThreadPool
    let onReady: @Sendable (ReadyInfo) -> Void

    /// Creates a supervisor; nothing starts until ``run()``.
    public init(configuration: SupervisorConfiguration, logger: Logger, onReady: @escaping @Sendable (ReadyInfo) -> Void) {
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        self.onReady = onReady
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT through the service group), then drains and snapshots.
    public func run() async throws {
        threadPool.start()
        let dataDirectory = configuration.dataDirectory
        do {
            try FileManager.default.createDirectory(atPath: dataDirectory + "/journal", withIntermediateDirectories: true)
        } catch {
            throw SupervisorError(.journal, "cannot create the data directory \(dataDirectory): \(error)")
        }
        let journal: Journal
        do {
            journal = try Journal.open(
                directory: dataDirectory + "/journal",
                configuration: JournalConfiguration(
                    fsync: configuration.pipeline.fsync, segmentSize: configuration.segmentSize,
                    truncateCorruption: configuration.truncateCorruption),
                logger: logger)
        } catch {
            throw SupervisorError(.journal, "cannot open the journal in \(dataDirectory)/journal: \(error)")
        }
        logger.info("journal opened", metadata: ["understudy.recovery": "\(journal.recoveryReport)"])
        defer { try? journal.close() }

        let loop = group.next()
        let core = try await loop.submit {
            try SupervisorCore(
                loop: loop, journal: journal, configuration: self.configuration, threadPool: self.threadPool,
                logger: self.logger)
        }.get()
        do {
            try await loop.flatSubmit { core.start() }.get()
        } catch {
            _ = try? await loop.flatSubmit { core.stop() }.get()
            try? await core.stopAdmin()
            try? await group.shutdownGracefully()
            try? await threadPool.shutdownGracefully()
            throw error
        }
        let ready = try await core.readyInfo()
        onReady(ready)
        try? await gracefulShutdown()
        logger.info("shutting down: draining, final snapshot")
        _ = try? await loop.flatSubmit { core.stop() }.get()
        try? await core.stopAdmin()
        try? await group.shutdownGracefully()
        try? await threadPool.shutdownGracefully()
    }
}
