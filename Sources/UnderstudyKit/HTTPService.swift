import UnderstudyWire

/// A service that speaks HTTP: the supervisor serves HTTP/1.1 to its clients, journals each request as one input
/// (method, target, the headers declared in ``http``, body) and hands it to ``handle(_:state:context:)-(HTTPRequest,_,_)``.
///
/// ```swift
/// struct Greeter: UnderstudyHTTPService {
///     static let router: HTTPRouter<GreeterState> = {
///         var r = HTTPRouter<GreeterState>()
///         r.get("/hello/{name}") { request, parameters, state, context in
///             .json(200, ["hello": .string(parameters["name"])])
///         }
///         return r
///     }()
///     static var http: HTTPServiceDeclaration { HTTPServiceDeclaration(routes: router.declarations) }
///     func handle(_ request: HTTPRequest, state: inout GreeterState, context: inout RequestContext) -> HTTPResponse {
///         Self.router.handle(request, state: &state, context: &context)
///     }
///     …
/// }
/// ```
public protocol UnderstudyHTTPService: UnderstudyService {
    /// The request headers to journal, the routes (command classes) and their comparison rules.
    static var http: HTTPServiceDeclaration { get }

    /// Handles one request deterministically (the determinism contract of ``UnderstudyService`` applies).
    func handle(_ request: HTTPRequest, state: inout State, context: inout RequestContext) -> HTTPResponse

    /// Time-driven work at a journaled clock tick (default: nothing).
    func tick(state: inout State, context: inout RequestContext)
}

extension UnderstudyHTTPService {
    public static var httpDeclaration: HTTPServiceDeclaration? { http }

    public func tick(state: inout State, context: inout RequestContext) {}

    /// Decodes HTTP inputs, runs ``handle(_:state:context:)-(HTTPRequest,_,_)`` and encodes the response.
    public func handle(_ request: ServiceRequest, state: inout State, context: inout RequestContext) -> [UInt8] {
        switch request.tag {
        case InputTag.http:
            guard let http = try? HTTPRequest(decoding: request.payload) else {
                return HTTPResponse.error(400, "malformed request payload").encoded
            }
            return handle(http, state: &state, context: &context).encoded
        case InputTag.tick:
            tick(state: &state, context: &context)
            return []
        default:
            return HTTPResponse.error(400, "unsupported input tag \(request.tag)").encoded
        }
    }
}

extension ServiceRequest {
    /// An HTTP request input.
    public static func http(_ request: HTTPRequest) -> ServiceRequest {
        ServiceRequest(tag: InputTag.http, payload: request.encoded)
    }
}

extension ValidationStep {
    /// A step sending an HTTP request whose response must have `status` and pass `check`.
    /// - Parameters:
    ///   - request: the request.
    ///   - status: the expected status code.
    ///   - check: returns nil when the response is acceptable, otherwise what is wrong with it.
    public init(_ request: HTTPRequest, expectStatus status: Int, check: @escaping @Sendable (HTTPResponse) -> String? = { _ in nil }) {
        self.init(.http(request)) { reply in
            guard let response = try? HTTPResponse(decoding: reply) else { return "the reply is not an HTTP response" }
            let what = "\(request.method) \(request.target)"
            guard response.status == status else {
                return "\(what): expected status \(status), got \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
            }
            return check(response).map { "\(what): \($0)" }
        }
    }

    /// A step whose JSON response must have `status` and equal `json` (compared as JSON values).
    public init(_ request: HTTPRequest, expectStatus status: Int, json expected: JSONValue) {
        self.init(request, expectStatus: status) { response in
            guard let body = response.json else { return "the body is not JSON" }
            return body == expected ? nil : "expected \(expected.text), got \(body.text)"
        }
    }
}
