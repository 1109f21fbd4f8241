#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import UnderstudyWire

/// Limits and timeouts of the HTTP/1.1 front-end.
public struct HTTPFrontendConfiguration: Sendable {
    /// The largest request body (`--max-body-bytes`, default 16 MiB): a larger one gets 413 and the connection is
    /// closed.
    public var maximumBodyBytes: Int
    /// The largest request head, request line and header fields together (default 32 KiB): a larger one gets 431.
    public var maximumHeaderBytes: Int
    /// The most header fields in one request (default 100): more get 431.
    public var maximumHeaderCount: Int
    /// How long a client may take to send a complete request head once it has started one (default 10 s): past it
    /// the request gets 408 and the connection is closed (slow senders cannot hold connections open).
    public var headerTimeout: TimeAmount
    /// ``headerTimeout`` in milliseconds.
    public var headerTimeoutMillis: Int64 {
        get { headerTimeout.nanoseconds / 1_000_000 }
        set { headerTimeout = .milliseconds(newValue) }
    }
    /// The largest ``maximumBodyBytes`` allowed: half the largest journaled input (the rest of the request and
    /// its encoding must fit too).
    public static let largestBodyLimit = UnderstudyLimits.maxInputBytes / 2

    /// Creates a configuration with documented defaults.
    public init(
        maximumBodyBytes: Int = 16 << 20, maximumHeaderBytes: Int = 32 << 10, maximumHeaderCount: Int = 100,
        headerTimeout: TimeAmount = .seconds(10)
    ) {
        self.maximumBodyBytes = maximumBodyBytes
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.headerTimeout = headerTimeout
    }
}

/// The HTTP/1.1 front-end: chosen when the primary's greeting declares HTTP. Sets up each client channel
/// (throttle, head timer, NIO's HTTP/1 request decoder, ``HTTPConnectionHandler``), formats the supervisor's own
/// replies as HTTP, and closes connections gracefully on shutdown.
///
/// Loop-bound: used only on the core event loop.
package final class HTTPFrontend: ClientFrontend {
    let pipeline: any RequestIntake
    let configuration: HTTPFrontendConfiguration
    private var connections: [ObjectIdentifier: HTTPConnectionHandler] = [:]
    private(set) var stopping = false
    private var nextClientID: Int64 = 1

    /// Who may make requests (HTTP Basic or Bearer credentials, checked before anything is journaled).
    let access: AccessControl

    package init(pipeline: any RequestIntake, configuration: HTTPFrontendConfiguration, access: AccessControl = .open) {
        self.access = access
        self.pipeline = pipeline
        self.configuration = configuration
        pipeline.registerFailureFormatter(tag: InputTag.http, Self.failureResponse)
    }

    /// The primary's declaration (it may change with a deploy).
    var declaration: HTTPServiceDeclaration { pipeline.serviceHello?.http ?? HTTPServiceDeclaration() }

    /// Adds the HTTP handlers to a new client channel.
    package func initialize(_ channel: any Channel) throws {
        nextClientID += 1
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldCount = configuration.maximumHeaderCount
        limits.maxHeaderListSize = configuration.maximumHeaderBytes
        limits.maxHeaderFieldSize = configuration.maximumHeaderBytes
        // Credentials never reach the journal, whatever headers the service asks for.
        var journaled = Set(declaration.requestHeaders.map { $0.lowercased() })
        if access.authenticationRequired { journaled.remove("authorization") }
        let handler = HTTPConnectionHandler(frontend: self, journaledHeaders: journaled)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(IntakeThrottleHandler(throttle: pipeline.intakeThrottle, connection: handler))
        try sync.addHandler(HTTPHeadTimerHandler(connection: handler))
        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop, limitConfiguration: limits)))
        try sync.addHandler(handler)
        connections[ObjectIdentifier(handler)] = handler
        if stopping { handler.closeGracefully() }
    }

    func connectionClosed(_ handler: HTTPConnectionHandler) {
        connections[ObjectIdentifier(handler)] = nil
    }

    /// Graceful close: idle connections close now; busy ones after their outstanding responses (which carry
    /// `connection: close`).
    package func shutdown() {
        stopping = true
        for c in Array(connections.values) { c.closeGracefully() }
    }

    /// The supervisor's own replies as encoded ``HTTPResponse``s.
    static func failureResponse(_ failure: PipelineFailure) -> [UInt8] {
        switch failure {
        case .quarantined(let sequence, let reason):
            return HTTPResponse.json(500, [
                "error": "request quarantined", "reason": .string(reason), "sequence": .int(Int64(clamping: sequence)),
                "message": .string(failure.message),
            ]).encoded
        case .busy, .shuttingDown, .unavailable, .journal, .readOnly:
            return HTTPResponse.json(503, ["error": .string(failure.message)], headers: [HTTPHeader("retry-after", "1")]).encoded
        }
    }

    // MARK: serialising

    static func reason(_ status: Int) -> String {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 202: return "Accepted"
        case 204: return "No Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 415: return "Unsupported Media Type"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        default: return "Status"
        }
    }

    /// Headers the front-end owns: a service's values for them are dropped.
    package static func isFramingHeader(_ lowerName: String) -> Bool {
        switch lowerName {
        case "content-length", "transfer-encoding", "connection", "keep-alive", "date", "upgrade": return true
        default: return false
        }
    }

    private var dateSecond = -1
    private var dateLine: [UInt8] = []

    /// `date: …\r\n` for the current second (formatted once a second).
    func dateHeaderLine() -> [UInt8] {
        var now = time(nil)
        if Int(now) != dateSecond {
            dateSecond = Int(now)
            var t = tm()
            gmtime_r(&now, &t)
            let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
            let text = "date: \(days[Int(t.tm_wday)]), \(two(t.tm_mday)) \(months[Int(t.tm_mon)]) \(t.tm_year + 1900) \(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) GMT\r\n"
            dateLine = Array(text.utf8)
        }
        return dateLine
    }

    /// Writes a response as HTTP/1.1 bytes.
    func serialise(_ response: HTTPResponse, headRequest: Bool, close: Bool, into out: inout ByteBuffer) {
        out.writeString("HTTP/1.1 \(response.status) \(Self.reason(response.status))\r\n")
        for h in response.headers where !Self.isFramingHeader(h.name.lowercased()) {
            // Header values come from the service: CR and LF would split the response.
            guard !h.name.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 58 }),
                !h.value.utf8.contains(where: { $0 == 13 || $0 == 10 })
            else { continue }
            out.writeString(h.name)
            out.writeStaticString(": ")
            out.writeString(h.value)
            out.writeStaticString("\r\n")
        }
        out.writeBytes(dateHeaderLine())
        if response.status >= 200 && response.status != 204 && response.status != 304 {
            out.writeString("content-length: \(response.body.count)\r\n")
        }
        if close { out.writeStaticString("connection: close\r\n") }
        out.writeStaticString("\r\n")
        if !headRequest && response.status != 204 && response.status != 304 { out.writeBytes(response.body) }
    }
}

/// Starts the head timer when request bytes arrive (before the decoder sees them); ``HTTPConnectionHandler``
/// stops it once a complete head was decoded.
final class HTTPHeadTimerHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private unowned let connection: HTTPConnectionHandler

    init(connection: HTTPConnectionHandler) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesArrived()
        context.fireChannelRead(data)
    }
}
