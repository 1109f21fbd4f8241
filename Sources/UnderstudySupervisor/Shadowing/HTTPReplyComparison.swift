import UnderstudyFrontend
import UnderstudyWire

/// The comparison rules for HTTP replies: status, headers (less the ignored ones and the framing headers) and body,
/// JSON bodies compared as values with the declared members ignored and arrays compared as multisets where declared.
enum HTTPReplyComparison {
    /// Whether two encoded ``HTTPResponse``s to `request` agree under `declaration`'s rules; nil when the route's
    /// responses are not compared at all: the route says so, or it is one that another version declares and this
    /// one does not (an endpoint one version adds or removes answers differently by design).
    static func agree(
        request: ApplyRequest, _ a: [UInt8], _ b: [UInt8], declaration: HTTPServiceDeclaration?, declaredElsewhere: Bool = false
    ) -> Bool? {
        var route: HTTPRouteDeclaration?
        if let declaration, let r = try? HTTPRequest(decoding: request.payload) {
            route = declaration.route(method: r.method, path: r.path)
            if route == nil && declaredElsewhere { return nil }
        }
        if route?.comparison.ignore == true { return nil }
        if a == b { return true }
        guard let ra = try? HTTPResponse(decoding: a), let rb = try? HTTPResponse(decoding: b) else { return false }
        guard ra.status == rb.status else { return false }
        let ignored = Set((declaration?.ignoredResponseHeaders ?? ["date"]) + (route?.comparison.ignoredHeaders ?? []))
        func headers(_ r: HTTPResponse) -> [String] {
            r.headers.compactMap { h in
                let name = h.name.lowercased()
                return ignored.contains(name) || HTTPFrontend.isFramingHeader(name) ? nil : name + ":" + h.value
            }.sorted()
        }
        guard headers(ra) == headers(rb) else { return false }
        if ra.body == rb.body { return true }
        let comparison = route?.comparison ?? .exact
        guard var ja = try? JSONValue(parsing: ra.body), var jb = try? JSONValue(parsing: rb.body) else { return false }
        for path in comparison.ignoredJSONPaths {
            ja = ja.removing(path: JSONValue.path(path))
            jb = jb.removing(path: JSONValue.path(path))
        }
        for path in comparison.unorderedJSONPaths {
            ja = ja.sortingArrays(at: JSONValue.path(path))
            jb = jb.sortingArrays(at: JSONValue.path(path))
        }
        return ja == jb
    }

    /// A request rendered for the discrepancy log: method, target, body (prefix).
    static func render(_ payload: [UInt8], limit: Int) -> String {
        guard let r = try? HTTPRequest(decoding: payload) else { return "<undecodable HTTP request>" }
        var text = "\(r.method) \(r.target)"
        for h in r.headers { text += " [\(h.name): \(h.value)]" }
        if !r.body.isEmpty { text += " " + String(decoding: r.body, as: UTF8.self) }
        return String(text.prefix(limit))
    }

    /// A reply rendered for the discrepancy log: status and body (prefix).
    static func renderReply(_ bytes: [UInt8], limit: Int) -> String? {
        guard let r = try? HTTPResponse(decoding: bytes) else { return nil }
        return String("\(r.status) \(String(decoding: r.body, as: UTF8.self))".prefix(limit))
    }
}
