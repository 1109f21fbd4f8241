import UnderstudyWire

/// The routes HTTP services declared, for naming the command class of a request ("GET /accounts/{id}"), which is
/// what comparisons, the deploy gate and the discrepancy log count by.
///
/// Confined to the core event loop (it lives in the pipeline's ``CommandClassifier``).
// Not Sendable: the compiler keeps it off other threads (its owner, on the core event loop, is its only user).
final class HTTPRouteTable {
    private var routes: [(method: String, pattern: HTTPPathPattern, name: String)] = []
    private var learned: Set<String> = []

    /// Learns the routes of a declaration (each class once; a new version's routes add to the old ones).
    func learn(_ declaration: HTTPServiceDeclaration?) {
        guard let declaration else { return }
        for r in declaration.routes where !learned.contains(r.commandClass) {
            learned.insert(r.commandClass)
            routes.append((r.method, HTTPPathPattern(r.pattern), r.commandClass))
        }
    }

    /// Whether some version declared this class.
    func isDeclared(_ commandClass: String) -> Bool { learned.contains(commandClass) }

    /// The class of an encoded ``HTTPRequest``: its declared route, else the method and first path segment
    /// ("GET /x/…"), so that classes stay few whatever the paths.
    func classify(_ payload: [UInt8]) -> String {
        var r = ByteReader(payload)
        guard (try? r.readByte()) == 1, let method = try? r.readString(), let target = try? r.readString() else { return "?" }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        for route in routes where route.method == method && route.pattern.match(path) != nil { return route.name }
        let first = path.split(separator: "/").first.map { "/\($0)/…" } ?? "/"
        return "\(method) \(first)"
    }
}
