import NIOCore
import NIOHTTP1
import UnderstudyWire

/// One HTTP/1.1 client connection: assembles requests (chunked bodies included), enforces the limits, submits each
/// request to the pipeline as one journaled input, and writes responses strictly in request order (pipelining),
/// keeping the connection alive unless the client or an error says otherwise.
///
/// Runs on the core event loop, like the pipeline, so submitting a request is a plain call.
// Not Sendable: it lives on its channel's event loop, the core loop, and the compiler keeps it there (the head
// timer goes through `assumeIsolated()`, which checks the loop).
final class HTTPConnectionHandler: ChannelInboundHandler, Flushable, ThrottledConnection {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    struct Slot {
        /// The encoded ``HTTPResponse`` once known.
        var reply: [UInt8]?
        var headRequest: Bool
        /// The connection closes after this response.
        var close: Bool
    }

    private let frontend: HTTPFrontend
    private let journaledHeaders: Set<String>
    private var context: ChannelHandlerContext?
    private var slots = CircularBuffer<Slot>()
    private var slotBase = 0
    private var outbound = ByteBuffer()
    private var wroteSinceFlush = false
    /// No more requests are read; the connection closes once the slots are written.
    private var closeAfterReplies = false

    // The request being assembled.
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var keepAlive = true
    /// The rest of the current request is dropped (it was answered already: 413).
    private var discarding = false

    // The head timer (slow senders).
    private var awaitingHead = true
    private var headTimer: Scheduled<Void>?

    init(frontend: HTTPFrontend, journaledHeaders: Set<String>) {
        self.frontend = frontend
        self.journaledHeaders = journaledHeaders
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        headTimer?.cancel()
        headTimer = nil
        frontend.connectionClosed(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        headTimer?.cancel()
        headTimer = nil
        frontend.connectionClosed(self)
        context.fireChannelInactive()
    }

    // MARK: the head timer

    /// Request bytes arrived: a head that starts now must be complete within the header timeout.
    func bytesArrived() {
        guard awaitingHead, headTimer == nil, !closeAfterReplies, let context else { return }
        headTimer = context.eventLoop.assumeIsolated().scheduleTask(in: frontend.configuration.headerTimeout) { [self] in
            headTimer = nil
            guard awaitingHead, !closeAfterReplies else { return }
            local(.error(408, "the request head was not complete within \(frontend.configuration.headerTimeout.nanoseconds / 1_000_000) ms"), close: true)
            flushNow()
        }
    }

    private func headComplete() {
        awaitingHead = false
        headTimer?.cancel()
        headTimer = nil
    }

    // MARK: reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closeAfterReplies else { return }
        switch unwrapInboundIn(data) {
        case .head(let h):
            headComplete()
            begin(h)
        case .body(let buffer):
            guard !discarding, head != nil else { return }
            if body.count + buffer.readableBytes > frontend.configuration.maximumBodyBytes {
                tooLarge()
                return
            }
            buffer.withUnsafeReadableBytes { body.append(contentsOf: $0) }
        case .end:
            awaitingHead = true
            if discarding {
                discarding = false
                return
            }
            guard let h = head else { return }
            head = nil
            let requestBody = body
            body = []
            submit(h, requestBody)
        }
    }

    private func begin(_ h: HTTPRequestHead) {
        head = h
        body = []
        discarding = false
        keepAlive = h.isKeepAlive && !frontend.stopping
        if let length = h.headers.first(name: "content-length").flatMap({ Int($0) }), length > frontend.configuration.maximumBodyBytes {
            tooLarge()
            return
        }
        if h.headers.first(name: "expect")?.lowercased() == "100-continue" && slots.isEmpty, let context {
            // Interim response, only when nothing is pending (it must not overtake earlier responses).
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
        }
    }

    private func tooLarge() {
        head = nil
        body = []
        discarding = true
        local(.error(413, "the request body exceeds \(frontend.configuration.maximumBodyBytes) bytes"), close: true)
        flushNow()
    }

    /// The last credentials this connection presented and the user they authenticate (a keep-alive client sends the
    /// same header on every request: one password hash per connection, not per request).
    private var authenticated: (header: String, user: ACLUser)?

    /// The user a request acts as, or the response refusing it: 401 without valid credentials (HTTP Basic, or a
    /// Bearer token that is the default user's password), 403 when the user may not make this request.
    private func authorize(_ h: HTTPRequestHead) -> HTTPResponse? {
        let access = frontend.access
        guard access.authenticationRequired else { return nil }
        let header = h.headers.first(name: "authorization") ?? ""
        let user: ACLUser
        if let cached = authenticated, cached.header == header {
            user = cached.user
        } else {
            guard let found = Self.credentials(header).flatMap({ access.authenticate(user: $0.user, password: $0.password) }) else {
                var refusal = HTTPResponse.json(401, ["error": .string(header.isEmpty ? "authentication required" : "invalid username-password pair or user is disabled")])
                refusal.headers.append(HTTPHeader("www-authenticate", "Basic realm=\"understudy\", charset=\"UTF-8\""))
                return refusal
            }
            authenticated = (header, found)
            user = found
        }
        let path = Array((h.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? h.uri).utf8)
        if let denial = user.checkHTTP(method: h.method.rawValue, path: path) {
            let what: String
            switch denial {
            case .command: what = "this user has no permissions to make \(h.method.rawValue) requests"
            case .key: what = "this user has no permissions to access \(String(decoding: path, as: UTF8.self))"
            }
            return HTTPResponse.json(403, ["error": .string(what)])
        }
        return nil
    }

    /// `Basic base64(user:password)` or `Bearer password` (the default user).
    static func credentials(_ header: String) -> (user: String, password: [UInt8])? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        switch parts[0].lowercased() {
        case "basic":
            guard let decoded = Base64.decode(String(parts[1]).trimmingWhitespace()),
                let colon = decoded.firstIndex(of: UInt8(ascii: ":"))
            else { return nil }
            return (String(decoding: decoded[..<colon], as: UTF8.self), Array(decoded[(colon + 1)...]))
        case "bearer":
            return ("default", Array(String(parts[1]).trimmingWhitespace().utf8))
        default:
            return nil
        }
    }

    private func submit(_ h: HTTPRequestHead, _ body: [UInt8]) {
        if let refusal = authorize(h) {
            slots.append(Slot(reply: refusal.encoded, headRequest: h.method == .HEAD, close: !keepAlive))
            if !keepAlive { closeAfterReplies = true }
            writeReady()
            return
        }
        var headers: [HTTPHeader] = []
        if !journaledHeaders.isEmpty {
            for (name, value) in h.headers {
                let lower = name.lowercased()
                if journaledHeaders.contains(lower) { headers.append(HTTPHeader(lower, value)) }
            }
        }
        let method = h.method.rawValue
        let request = HTTPRequest(method: method, target: h.uri, headers: headers, body: body)
        let slot = slotBase + slots.count
        slots.append(Slot(reply: nil, headRequest: h.method == .HEAD, close: !keepAlive))
        if !keepAlive { closeAfterReplies = true }
        // A strong reference: the pipeline drops the sink once it has answered (as for RESP).
        frontend.pipeline.submit(tag: InputTag.http, payload: request.encoded) { bytes in
            self.complete(slot, bytes)
        }
    }

    /// A response the front-end makes itself (limits, malformed requests), queued in order.
    private func local(_ response: HTTPResponse, close: Bool) {
        if close { head = nil }
        slots.append(Slot(reply: response.encoded, headRequest: false, close: close))
        if close { closeAfterReplies = true }
        writeReady()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !closeAfterReplies else {
            return
        }
        if let parserError = error as? HTTPParserError {
            switch parserError {
            case .headerOverflow:
                local(.error(431, "the request head exceeds \(frontend.configuration.maximumHeaderBytes) bytes or \(frontend.configuration.maximumHeaderCount) fields"), close: true)
            default:
                local(.error(400, "malformed request: \(parserError)"), close: true)
            }
            flushNow()
        } else {
            context.close(promise: nil)
        }
    }

    /// Graceful close on shutdown: close now when idle, otherwise after the outstanding responses.
    func closeGracefully() {
        keepAlive = false
        // A request being received is still answered (with `connection: close`); otherwise close after what is due.
        guard head == nil else { return }
        closeAfterReplies = true
        flushNow()
    }

    // MARK: writing

    private func complete(_ slot: Int, _ bytes: [UInt8]) {
        let offset = slot - slotBase
        guard offset >= 0 && offset < slots.count else { return }
        slots[slots.index(slots.startIndex, offsetBy: offset)].reply = bytes
        if offset == 0 {
            writeReady()
            frontend.pipeline.clientNeedsFlush(self)
        }
    }

    private func writeReady() {
        while let first = slots.first, let bytes = first.reply {
            slots.removeFirst()
            slotBase += 1
            let response = (try? HTTPResponse(decoding: bytes))
                ?? HTTPResponse.error(502, "the service's reply is not an HTTP response: \(String(decoding: bytes.prefix(200), as: UTF8.self))")
            let close = first.close || (slots.isEmpty && closeAfterReplies)
            frontend.serialise(response, headRequest: first.headRequest, close: close, into: &outbound)
            wroteSinceFlush = true
            if first.close {
                closeAfterReplies = true
                slots.removeAll()
                break
            }
        }
    }

    var unansweredRequests: Int { slots.count }

    func flushNow() {
        guard let context else { return }
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.writeAndFlush(wrapOutboundOut(outbound), promise: nil)
            outbound = context.channel.allocator.buffer(capacity: 1024)
            if slots.isEmpty { frontend.pipeline.intakeThrottle.answered(self) }
        }
        if closeAfterReplies && slots.isEmpty {
            context.close(promise: nil)
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// Standard base64 (RFC 4648, with padding), for HTTP Basic credentials.
enum Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        values.reserveCapacity(text.utf8.count)
        var padding = 0
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            case UInt8(ascii: "="):
                padding += 1
                continue
            default: return nil
            }
            guard padding == 0 else { return nil }
            values.append(v)
        }
        guard (values.count + padding) % 4 == 0, padding <= 2 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i + 1 < values.count {
            let a = values[i], b = values[i + 1]
            out.append(a << 2 | b >> 4)
            if i + 2 < values.count {
                let c = values[i + 2]
                out.append(b << 4 | c >> 2)
                if i + 3 < values.count { out.append(c << 6 | values[i + 3]) }
            }
            i += 4
        }
        return out
    }
}
