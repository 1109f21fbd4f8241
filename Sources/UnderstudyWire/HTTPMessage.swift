/// One HTTP header field.
public struct HTTPHeader: Sendable, Hashable {
    /// The name, as the client sent it (compare with ``HTTPHeaders/lowercased(_:)``-insensitive rules).
    public var name: String
    /// The value.
    public var value: String
    /// Creates a field.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// An HTTP request as journaled: method, target, the headers the service asked for, body.
///
/// The front-end keeps only the headers the service declares (``HTTPServiceDeclaration/requestHeaders``), with
/// lower-case names, so that connection-level headers (Host, User-Agent, Connection…) never reach the journal.
public struct HTTPRequest: Sendable, Equatable {
    /// The method, upper-case ("GET").
    public var method: String
    /// The request target: path and query ("/accounts/a1?x=1").
    public var target: String
    /// The journaled headers (lower-case names).
    public var headers: [HTTPHeader]
    /// The body (empty when there is none).
    public var body: [UInt8]

    /// Creates a request.
    public init(method: String, target: String, headers: [HTTPHeader] = [], body: [UInt8] = []) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }

    /// A request with a JSON body.
    public init(method: String, target: String, headers: [HTTPHeader] = [], json: JSONValue) {
        self.init(method: method, target: target, headers: headers + [HTTPHeader("content-type", "application/json")], body: json.encoded)
    }

    /// The path: the target up to `?`.
    public var path: Substring {
        if let q = target.firstIndex(of: "?") { return target[..<q] }
        return Substring(target)
    }

    /// The query, after `?` (nil when there is none).
    public var query: Substring? {
        guard let q = target.firstIndex(of: "?") else { return nil }
        return target[target.index(after: q)...]
    }

    /// The first value of a header (case-insensitive name).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    /// The wire encoding (the journaled payload of an ``InputTag/http`` input).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 16 + method.utf8.count + target.utf8.count + body.count)
        w.write(UInt8(1))
        w.writeString(method)
        w.writeString(target)
        w.writeVarint(UInt64(headers.count))
        for h in headers {
            w.writeString(h.name)
            w.writeString(h.value)
        }
        w.writeBytes(body)
        return w.bytes
    }

    /// Decodes ``encoded`` bytes.
    public init(decoding bytes: [UInt8]) throws(DecodingError) {
        var r = ByteReader(bytes)
        guard try r.readByte() == 1 else { throw DecodingError("unknown HTTP request encoding") }
        method = try r.readString()
        target = try r.readString()
        let n = try r.readCount(limit: r.remaining / 2)
        var headers: [HTTPHeader] = []
        headers.reserveCapacity(n)
        for _ in 0..<n { headers.append(HTTPHeader(try r.readString(), try r.readString())) }
        self.headers = headers
        body = try r.readBytes()
        guard r.isAtEnd else { throw DecodingError("trailing bytes after HTTP request") }
    }
}

/// An HTTP response as a worker returns it: status, headers, body. The front-end serialises it and owns the
/// framing headers (Content-Length, Connection, Date).
public struct HTTPResponse: Sendable, Equatable {
    /// The status code.
    public var status: Int
    /// The headers (framing headers are added by the front-end).
    public var headers: [HTTPHeader]
    /// The body.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [HTTPHeader] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response with a deterministic JSON body (sorted keys) and `content-type: application/json`.
    public static func json(_ status: Int, _ value: JSONValue, headers: [HTTPHeader] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [HTTPHeader("content-type", "application/json")] + headers, body: value.encoded)
    }

    /// A JSON error body `{"error": message}`.
    public static func error(_ status: Int, _ message: String) -> HTTPResponse {
        json(status, ["error": .string(message)])
    }

    /// The first value of a header (case-insensitive name).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    /// The body parsed as JSON, if it is JSON.
    public var json: JSONValue? { try? JSONValue(parsing: body) }

    /// The wire encoding (a worker's reply to an ``InputTag/http`` input).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 16 + body.count + headers.count * 32)
        w.write(UInt8(1))
        w.write(UInt16(clamping: status))
        w.writeVarint(UInt64(headers.count))
        for h in headers {
            w.writeString(h.name)
            w.writeString(h.value)
        }
        w.writeBytes(body)
        return w.bytes
    }

    /// Decodes ``encoded`` bytes.
    public init(decoding bytes: [UInt8]) throws(DecodingError) {
        var r = ByteReader(bytes)
        guard try r.readByte() == 1 else { throw DecodingError("unknown HTTP response encoding") }
        status = Int(try r.read(UInt16.self))
        let n = try r.readCount(limit: r.remaining / 2)
        var headers: [HTTPHeader] = []
        headers.reserveCapacity(n)
        for _ in 0..<n { headers.append(HTTPHeader(try r.readString(), try r.readString())) }
        self.headers = headers
        body = try r.readBytes()
        guard r.isAtEnd else { throw DecodingError("trailing bytes after HTTP response") }
    }
}

/// A path pattern: literal segments and `{name}` parameters ("/accounts/{id}/transfers").
public struct HTTPPathPattern: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Sendable, Hashable {
        case literal(Substring)
        case parameter(String)
    }
    let segments: [Segment]
    /// The pattern as written.
    public let description: String

    /// Parses a pattern.
    public init(_ pattern: String) {
        description = pattern
        segments = pattern.split(separator: "/", omittingEmptySubsequences: true).map { s in
            if s.hasPrefix("{") && s.hasSuffix("}") && s.count > 2 {
                return .parameter(String(s.dropFirst().dropLast()))
            }
            return .literal(s)
        }
    }

    /// The parameters when `path` matches, nil otherwise (percent-encoding is left as is).
    public func match(_ path: Substring) -> [String: String]? {
        var parameters: [String: String] = [:]
        var i = 0
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            guard i < segments.count else { return nil }
            switch segments[i] {
            case .literal(let l): guard l == part else { return nil }
            case .parameter(let name): parameters[name] = String(part)
            }
            i += 1
        }
        return i == segments.count ? parameters : nil
    }
}

/// How the supervisor compares two replicas' responses to one route.
public struct HTTPComparison: Sendable, Equatable {
    /// Never compared (responses that read the clock or draw randomness for display only).
    public var ignore: Bool
    /// Response headers not compared (lower-case), beyond the service-wide ones.
    public var ignoredHeaders: [String]
    /// JSON members not compared, as dotted paths (`*` matches every array element or object member).
    public var ignoredJSONPaths: [String]
    /// JSON arrays compared as multisets (order-insensitive), as dotted paths; `""` is the body itself.
    public var unorderedJSONPaths: [String]

    /// Creates rules; the default compares status, headers and body exactly (JSON bodies by value).
    public init(ignore: Bool = false, ignoredHeaders: [String] = [], ignoredJSONPaths: [String] = [], unorderedJSONPaths: [String] = []) {
        self.ignore = ignore
        self.ignoredHeaders = ignoredHeaders
        self.ignoredJSONPaths = ignoredJSONPaths
        self.unorderedJSONPaths = unorderedJSONPaths
    }

    /// Exact comparison.
    public static let exact = HTTPComparison()
}

/// One route as a service declares it: it names the command class of matching requests and their comparison.
public struct HTTPRouteDeclaration: Sendable, Equatable {
    /// The method ("GET").
    public var method: String
    /// The path pattern ("/accounts/{id}").
    public var pattern: String
    /// How responses to it are compared across replicas.
    public var comparison: HTTPComparison

    /// Creates a declaration.
    public init(method: String, pattern: String, comparison: HTTPComparison = .exact) {
        self.method = method.uppercased()
        self.pattern = pattern
        self.comparison = comparison
    }

    /// The command class of matching requests ("GET /accounts/{id}").
    public var commandClass: String { "\(method) \(pattern)" }
}

/// What an HTTP service declares in its greeting: the supervisor serves HTTP/1.1 for it.
public struct HTTPServiceDeclaration: Sendable, Equatable {
    /// The request headers journaled with each request (lower-case names); every other header is dropped.
    public var requestHeaders: [String]
    /// Response headers never compared across replicas (lower-case; default `date`).
    public var ignoredResponseHeaders: [String]
    /// The routes: command classes and comparison rules.
    public var routes: [HTTPRouteDeclaration]

    /// Creates a declaration.
    public init(requestHeaders: [String] = [], ignoredResponseHeaders: [String] = ["date"], routes: [HTTPRouteDeclaration] = []) {
        self.requestHeaders = requestHeaders.map { $0.lowercased() }
        self.ignoredResponseHeaders = ignoredResponseHeaders.map { $0.lowercased() }
        self.routes = routes
    }

    /// The first route matching a method and path.
    public func route(method: String, path: Substring) -> HTTPRouteDeclaration? {
        routes.first { $0.method == method && HTTPPathPattern($0.pattern).match(path) != nil }
    }

    func encode(to w: inout ByteWriter) {
        w.writeVarint(UInt64(requestHeaders.count))
        for h in requestHeaders { w.writeString(h) }
        w.writeVarint(UInt64(ignoredResponseHeaders.count))
        for h in ignoredResponseHeaders { w.writeString(h) }
        w.writeVarint(UInt64(routes.count))
        for r in routes {
            w.writeString(r.method)
            w.writeString(r.pattern)
            w.write(r.comparison.ignore)
            for list in [r.comparison.ignoredHeaders, r.comparison.ignoredJSONPaths, r.comparison.unorderedJSONPaths] {
                w.writeVarint(UInt64(list.count))
                for s in list { w.writeString(s) }
            }
        }
    }

    init(decoding r: inout ByteReader) throws(DecodingError) {
        func strings(_ r: inout ByteReader) throws(DecodingError) -> [String] {
            try r.readArray { (r: inout ByteReader) throws(DecodingError) in try r.readString() }
        }
        let request = try strings(&r)
        let ignored = try strings(&r)
        let routes = try r.readArray { (r: inout ByteReader) throws(DecodingError) -> HTTPRouteDeclaration in
            let method = try r.readString()
            let pattern = try r.readString()
            let ignore = try r.readBool()
            let headers = try strings(&r)
            let paths = try strings(&r)
            let unordered = try strings(&r)
            return HTTPRouteDeclaration(
                method: method, pattern: pattern,
                comparison: HTTPComparison(ignore: ignore, ignoredHeaders: headers, ignoredJSONPaths: paths, unorderedJSONPaths: unordered))
        }
        self.init(requestHeaders: request, ignoredResponseHeaders: ignored, routes: routes)
    }
}
