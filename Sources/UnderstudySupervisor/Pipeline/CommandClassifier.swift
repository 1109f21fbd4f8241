import UnderstudyWire

/// Names the command class of a journaled input (the upper-case command name), decoding only the
/// first argument and caching the names it has seen.
///
/// Confined to the core event loop.
// Not Sendable: the compiler keeps it off other threads (its owner, on the core event loop, is its only user).
final class CommandClassifier {
    private var names: [[UInt8]: String] = [:]
    /// HTTP requests are classed by the routes their services declare (see ``HTTPRouteTable``).
    let httpRoutes = HTTPRouteTable()

    /// The class of one input.
    func classify(tag: UInt8, payload: [UInt8]) -> String {
        switch tag {
        case InputTag.resp:
            var r = ByteReader(payload)
            guard (try? r.readVarint()) != nil, let name = try? r.readBytes() else { return "?" }
            if let cached = names[name] { return cached }
            let upper = String(decoding: name, as: UTF8.self).uppercased()
            if names.count < 1024 { names[name] = upper }
            return upper
        case InputTag.http: return httpRoutes.classify(payload)
        case InputTag.respTransaction, InputTag.connectionTransaction: return "EXEC"
        case InputTag.connectionCommand:
            guard let (_, body) = try? ConnectionInput.decode(payload) else { return "?" }
            return classify(tag: InputTag.resp, payload: body)
        case InputTag.connectionClosed: return "DISCONNECT"
        case InputTag.connectionsReset: return "CONNECTIONS-RESET"
        case InputTag.tick: return "TICK"
        case InputTag.checkpoint: return "CHECKPOINT"
        case InputTag.quarantine: return "QUARANTINE"
        default: return "TAG\(tag)"
        }
    }
}
