import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization
import UnderstudySupervisor

/// The admin API (Hummingbird) on loopback: status, discrepancies, swaps, predictions, metrics,
/// the dashboard, and the state-changing `POST /swap`, `/rollback`, `/deploy`. Every request but the dashboard's
/// page needs the bearer token (``AdminAuthMiddleware``).
package final class AdminServer: SupervisorAdmin {
    /// The core, reached only inside closures that run on its loop (``onCore(_:)``, ``onCoreFuture(_:)``).
    let core: NIOLoopBound<SupervisorCore>
    let loop: any EventLoop
    let logger: Logger
    /// The bearer token, from the data directory (made at the first start).
    let token: String
    /// What `start` learns and `stop` ends: the address served on and the server's task.
    private let running = Mutex<(address: ListenAddress?, task: Task<Void, any Error>?)>((nil, nil))

    package var boundAddress: ListenAddress? { running.withLock { $0.address } }

    /// Makes the admin API of a core, reading its token (or making one) in the data directory.
    ///
    /// - Throws: ``SupervisorError`` when the token cannot be read or written (``AdminToken``).
    /// Runs on the core's loop, like the factory that calls it.
    package init(core: SupervisorCore) throws {
        self.core = NIOLoopBound(core, eventLoop: core.loop)
        self.loop = core.loop
        self.logger = core.logger
        self.token = try AdminToken.loadOrCreate(dataDirectory: core.configuration.dataDirectory)
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    struct Message: Codable {
        var error: String?
        var message: String?
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(Message(error: message), status: status)
    }

    func authorized(_ request: Request) -> Bool {
        Self.authorized(request, token: token)
    }

    /// Whether the request carries `Authorization: Bearer TOKEN` (compared in constant time).
    static func authorized(_ request: Request, token: String) -> Bool {
        guard let header = request.headers[.authorization] else { return false }
        let expected = "Bearer \(token)"
        // Constant-time comparison.
        let a = Array(header.utf8)
        let b = Array(expected.utf8)
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    func onCore<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await loop.submit(body).get()
    }

    func onCoreFuture<T: Sendable>(_ body: @escaping @Sendable () -> EventLoopFuture<T>) async throws -> T {
        try await loop.flatSubmit(body).get()
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        let core = self.core
        router.add(middleware: AdminAuthMiddleware(token: token))
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: Dashboard.html)))
        }
        router.get("/status") { _, _ in
            Self.json(try await self.onCore { core.value.status() })
        }
        router.get("/discrepancies") { request, _ in
            let limit = request.uri.queryParameters.get("limit", as: Int.self) ?? 100
            return Self.json(try await self.onCore {
                let (total, recent) = core.value.discrepancies(limit: limit)
                return DiscrepancyList(total: total, recent: recent)
            })
        }
        router.get("/quarantine") { _, _ in
            Self.json(try await self.onCore { core.value.quarantined })
        }
        router.get("/health") { _, _ in
            let report = try await self.onCore { core.value.health() }
            return Self.json(report, status: report.healthy ? .ok : .serviceUnavailable)
        }
        router.get("/swaps") { _, _ in
            Self.json(try await self.onCore { core.value.swapHistory })
        }
        router.get("/predictions") { _, _ in
            Self.json(try await self.onCore { core.value.predictions() })
        }
        router.get("/deploys") { _, _ in
            Self.json(try await self.onCore { core.value.deployReports })
        }
        router.get("/deploys/:id") { _, context in
            guard let id = context.parameters.get("id", as: Int.self) else { return Self.error(.badRequest, "bad deploy id") }
            guard let report = try await self.onCore({ core.value.deployReport(id) }) else {
                return Self.error(.notFound, "no deploy \(id)")
            }
            return Self.json(report)
        }
        router.get("/metrics") { _, _ in
            let text = try await self.onCore { core.value.metricsText() }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
        router.post("/swap") { request, _ in
            guard self.authorized(request) else { return Self.error(.unauthorized, "missing or wrong bearer token") }
            do {
                return Self.json(try await self.onCoreFuture { core.value.swapToShadow() })
            } catch {
                return Self.error(.conflict, "\(error)")
            }
        }
        router.post("/rollback") { request, _ in
            guard self.authorized(request) else { return Self.error(.unauthorized, "missing or wrong bearer token") }
            do {
                return Self.json(try await self.onCoreFuture { core.value.rollback() })
            } catch {
                return Self.error(.conflict, "\(error)")
            }
        }
        router.post("/snapshot") { request, _ in
            guard self.authorized(request) else { return Self.error(.unauthorized, "missing or wrong bearer token") }
            do {
                let seq = try await self.onCoreFuture { core.value.takeSnapshot() }
                return Self.json(["sequence": seq])
            } catch {
                return Self.error(.conflict, "\(error)")
            }
        }
        router.post("/deploy") { request, context in
            guard self.authorized(request) else { return Self.error(.unauthorized, "missing or wrong bearer token") }
            let deploy: DeployRequest
            do {
                deploy = try await request.decode(as: DeployRequest.self, context: context)
            } catch {
                return Self.error(.badRequest, "the body must be JSON like {\"binary\": \"/path/to/new-worker\"}: \(error)")
            }
            do {
                let id = try await self.onCore { try core.value.startDeploy(deploy) }
                return Self.json(["id": id], status: .accepted)
            } catch {
                return Self.error(.conflict, "\(error)")
            }
        }
        return router
    }

    /// Binds and starts serving; completes on the core loop once the port is known.
    package func start(address: ListenAddress) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        let loop = self.loop
        var logger = self.logger
        // Hummingbird logs an error for connections cancelled at shutdown; that is expected here.
        logger.logLevel = .critical
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(address.host, port: address.port), serverName: "understudy-admin"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? address.port
                self.running.withLock { $0.address = ListenAddress(host: address.host, port: port) }
                loop.execute { promise.succeed(()) }
            },
            logger: logger)
        let task = Task {
            do {
                try await app.run()
            } catch {
                promise.fail(SupervisorError(.bindFailed, "cannot serve the admin API on \(address): \(error)"))
                throw error
            }
        }
        running.withLock { $0.task = task }
        return promise.futureResult
    }

    /// Stops serving: cancels the server's task and waits for it to end.
    package func stop() async throws {
        let task = running.withLock { $0.task }
        task?.cancel()
        _ = try? await task?.value
    }
}

/// Every admin request except the dashboard's page (`GET /`) needs `Authorization: Bearer TOKEN`: 401 otherwise,
/// and nothing is read or done. The page itself holds no data; its script asks for the token.
struct AdminAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == "/" && (request.method == .get || request.method == .head) {
            return try await next(request, context)
        }
        guard !token.isEmpty, AdminServer.authorized(request, token: token) else {
            var response = AdminServer.error(
                .unauthorized,
                "missing or wrong bearer token: send 'Authorization: Bearer TOKEN' with the token from DATA/admin.token")
            response.headers[.wwwAuthenticate] = "Bearer realm=\"understudy\""
            return response
        }
        return try await next(request, context)
    }
}

/// `GET /discrepancies`.
public struct DiscrepancyList: Codable, Sendable {
    /// All discrepancies recorded (including those no longer in memory).
    public var total: Int
    /// The most recent ones.
    public var recent: [Discrepancy]
}
