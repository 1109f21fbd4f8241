import UnderstudyWire

/// The parameters a path pattern captured (`{id}` → `parameters["id"]`).
public struct HTTPRouteParameters: Sendable {
    /// The captured values by name.
    public var values: [String: String]
    /// The value of a parameter ("" when the pattern has none of that name).
    public subscript(name: String) -> String { values[name] ?? "" }
}

/// A small deterministic router: method + path pattern (literal segments and `{name}` parameters), tried in the
/// order the routes were added.
///
/// Unknown paths answer 404, known paths with another method 405 (with `allow`), both as JSON errors.
public struct HTTPRouter<State>: Sendable {
    /// A route handler.
    public typealias Handler = @Sendable (HTTPRequest, HTTPRouteParameters, inout State, inout RequestContext) -> HTTPResponse

    struct Route: Sendable {
        var declaration: HTTPRouteDeclaration
        var pattern: HTTPPathPattern
        var handler: Handler
    }
    private var routes: [Route] = []

    /// Creates an empty router.
    public init() {}

    /// Adds a route.
    /// - Parameters:
    ///   - method: the method ("GET").
    ///   - pattern: the path pattern ("/accounts/{id}").
    ///   - comparison: how replicas' responses to it are compared (default: exactly).
    ///   - handler: the handler.
    public mutating func on(_ method: String, _ pattern: String, comparison: HTTPComparison = .exact, _ handler: @escaping Handler) {
        routes.append(Route(
            declaration: HTTPRouteDeclaration(method: method, pattern: pattern, comparison: comparison),
            pattern: HTTPPathPattern(pattern), handler: handler))
    }

    /// Adds a GET route.
    public mutating func get(_ pattern: String, comparison: HTTPComparison = .exact, _ handler: @escaping Handler) {
        on("GET", pattern, comparison: comparison, handler)
    }

    /// Adds a POST route.
    public mutating func post(_ pattern: String, comparison: HTTPComparison = .exact, _ handler: @escaping Handler) {
        on("POST", pattern, comparison: comparison, handler)
    }

    /// The routes as the service declares them (for ``HTTPServiceDeclaration/routes``).
    public var declarations: [HTTPRouteDeclaration] { routes.map(\.declaration) }

    /// Routes a request to its handler.
    public func handle(_ request: HTTPRequest, state: inout State, context: inout RequestContext) -> HTTPResponse {
        let path = request.path
        var allowed: [String] = []
        for route in routes {
            guard let parameters = route.pattern.match(path) else { continue }
            if route.declaration.method == request.method {
                return route.handler(request, HTTPRouteParameters(values: parameters), &state, &context)
            }
            allowed.append(route.declaration.method)
        }
        if allowed.isEmpty { return .error(404, "no route for \(request.method) \(path)") }
        return .error(405, "method \(request.method) not allowed", headers: [HTTPHeader("allow", allowed.joined(separator: ", "))])
    }
}

extension HTTPResponse {
    /// A JSON error body `{"error": message}` with extra headers.
    public static func error(_ status: Int, _ message: String, headers: [HTTPHeader]) -> HTTPResponse {
        json(status, ["error": .string(message)], headers: headers)
    }
}
