import Foundation
import UnderstudyFrontend
import UnderstudyWire

/// One observed difference between an instance and the primary.
public struct Discrepancy: Codable, Sendable, Equatable {
    /// What differed.
    public enum Kind: String, Codable, Sendable {
        /// The replies to one request differed.
        case reply
        /// The state digests differed at a checkpoint (keys listed in `keys`).
        case state
        /// A swap or deploy step failed (the message says why).
        case transfer
        /// An input made an instance trap, exit or pass the request deadline and was quarantined.
        case quarantine
    }
    /// The sequence number of the request (or checkpoint).
    public var sequence: UInt64
    /// The instance that disagreed with the primary.
    public var instance: UInt32
    /// Its role at the time.
    public var role: String
    /// Its version.
    public var version: String
    /// What differed.
    public var kind: Kind
    /// The command class (upper-case command name) for replies.
    public var command: String
    /// The request, rendered readably.
    public var request: String
    /// The primary's reply (or key state).
    public var primary: String
    /// The instance's reply (or key state).
    public var other: String
    /// Keys involved, for state discrepancies.
    public var keys: [String]
    /// When it was recorded (ms since epoch).
    public var timeMillis: Int64
}

/// Per-command-class reply comparison counts for one instance.
public struct ComparisonStats: Codable, Sendable, Equatable {
    /// Replies compared.
    public var compared: Int = 0
    /// Replies that differed.
    public var differed: Int = 0
    /// The fraction that differed.
    public var rate: Double { compared == 0 ? 0 : Double(differed) / Double(compared) }
    /// Creates counts.
    public init(compared: Int = 0, differed: Int = 0) {
        self.compared = compared
        self.differed = differed
    }
}

/// Compares replies and states across instances and keeps the discrepancy log.
///
/// Confined to the supervisor's core event loop.
// Not Sendable: the compiler keeps it off other threads (its owner, on the core event loop, is its only user).
final class Comparator {
    private(set) var rules: [String: ComparisonRule] = [:]
    private(set) var recent: [Discrepancy] = []
    let capacity: Int
    private let logURL: URL?
    private var logHandle: FileHandle?
    private(set) var totalDiscrepancies = 0
    /// Per instance, per command class.
    private(set) var stats: [UInt32: [String: ComparisonStats]] = [:]
    /// Per instance: outcomes of the last `windowSize` comparisons (true = differed).
    private var windows: [UInt32: (outcomes: [Bool], index: Int, differed: Int)] = [:]
    let windowSize = 1000

    let classifier: CommandClassifier

    init(dataDirectory: String?, classifier: CommandClassifier, capacity: Int = 1000) {
        self.capacity = capacity
        self.classifier = classifier
        if let dataDirectory {
            let url = URL(fileURLWithPath: dataDirectory).appendingPathComponent("discrepancies.jsonl")
            self.logURL = url
            if !FileManager.default.fileExists(atPath: url.path) {
                // If this fails, opening the handle below fails too and the log stays in memory only.
                _ = FileManager.default.createFile(atPath: url.path, contents: nil)
            }
            self.logHandle = try? FileHandle(forWritingTo: url)
            _ = try? self.logHandle?.seekToEnd()
            // Load the tail of the persisted log so `status` shows history across restarts.
            if let data = try? Data(contentsOf: url) {
                let lines = data.split(separator: UInt8(ascii: "\n")).suffix(capacity)
                let decoder = JSONDecoder()
                recent = lines.compactMap { try? decoder.decode(Discrepancy.self, from: Data($0)) }
                totalDiscrepancies = recent.count
            }
        } else {
            self.logURL = nil
        }
    }

    /// Adds comparison rules declared by a service.
    func addRules(_ newRules: [String: ComparisonRule]) {
        for (k, v) in newRules { rules[k.uppercased()] = v }
    }


    static func render(tag: UInt8, payload: [UInt8], limit: Int = 200) -> String {
        switch tag {
        case InputTag.resp:
            guard let args = try? CommandCodec.decode(payload) else { return "<undecodable>" }
            return String(args.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ").prefix(limit))
        case InputTag.respTransaction:
            guard let cmds = try? CommandCodec.decodeTransaction(payload) else { return "<undecodable>" }
            return String(("MULTI; " + cmds.map { $0.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ") }.joined(separator: "; ") + "; EXEC").prefix(limit))
        case InputTag.connectionCommand, InputTag.connectionTransaction, InputTag.connectionClosed:
            guard let (connection, body) = try? ConnectionInput.decode(payload) else { return "<undecodable>" }
            let inner: String
            switch tag {
            case InputTag.connectionCommand: inner = render(tag: InputTag.resp, payload: body, limit: limit)
            case InputTag.connectionTransaction: inner = render(tag: InputTag.respTransaction, payload: body, limit: limit)
            default: inner = "disconnect"
            }
            return String("[connection \(connection)] \(inner)".prefix(limit))
        case InputTag.connectionsReset: return "CONNECTIONS-RESET"
        case InputTag.tick: return "TICK"
        case InputTag.http: return HTTPReplyComparison.render(payload, limit: limit)
        default: return "tag \(tag), \(payload.count) bytes"
        }
    }

    static func renderReply(_ bytes: [UInt8], limit: Int = 200) -> String {
        if let v = try? RESPReplyParser.parseOne(bytes) { return String(v.display.prefix(limit)) }
        if let http = HTTPReplyComparison.renderReply(bytes, limit: limit) { return http }
        return String(String(decoding: bytes, as: UTF8.self).prefix(limit)).debugDescription
    }

    /// Whether two replies to a command agree under the service's rule for that command.
    func agree(command: String, _ a: [UInt8], _ b: [UInt8]) -> Bool {
        switch rules[command] ?? .exact {
        case .ignore: return true
        case .exact: return a == b
        case .orderInsensitive:
            if a == b { return true }
            guard let va = try? RESPReplyParser.parseOne(a), let vb = try? RESPReplyParser.parseOne(b) else { return false }
            return va.sortedArrays == vb.sortedArrays
        }
    }

    /// Compares one instance's reply with the primary's; records a discrepancy when they differ.
    /// Returns true when they agree.
    @discardableResult
    func compare(
        request: ApplyRequest, command: String, primaryReply: [UInt8], otherReply: [UInt8], instance: WorkerInstance
    ) -> Bool {
        let same: Bool
        if request.tag == InputTag.http {
            // HTTP: the compared instance's declared rules (a candidate's rules describe how its replies may differ).
            classifier.httpRoutes.learn(instance.hello?.http)
            guard let agreed = HTTPReplyComparison.agree(
                request: request, primaryReply, otherReply, declaration: instance.hello?.http,
                declaredElsewhere: classifier.httpRoutes.isDeclared(command))
            else { return true }
            same = agreed
        } else {
            if (rules[command] ?? .exact) == .ignore { return true }
            if Self.isVersionGap(command: command, instance: instance) { return true }
            same = agree(command: command, primaryReply, otherReply)
        }
        count(same: same, request: request, command: command, instance: instance,
              primary: { Self.renderReply(primaryReply) }, other: { Self.renderReply(otherReply) })
        return same
    }

    /// A command the previous version kept on probation does not have (a command the new version added): its
    /// refusal there is the version difference the deploy was for, not a discrepancy. Only for the probation
    /// instance — a candidate that lacks a command the primary serves would break its clients, and that must count.
    static func isVersionGap(command: String, instance: WorkerInstance) -> Bool {
        guard instance.role == .probation, let table = instance.hello?.commands else { return false }
        let name = command.split(whereSeparator: { $0 == " " || $0 == "|" }).first.map(String.init) ?? command
        return table.arity(of: name) == nil
    }

    /// Compares one instance's whole answer to an input with the primary's: the reply or that it is held back, and
    /// the replies to earlier, held-back inputs that the input produced (compared exactly). Returns true when they
    /// agree.
    @discardableResult
    func compare(
        request: ApplyRequest, command: String, primary: InstanceReply, other: InstanceReply, instance: WorkerInstance
    ) -> Bool {
        if !primary.pending && !other.pending && primary.deferred.isEmpty && other.deferred.isEmpty {
            return compare(request: request, command: command, primaryReply: primary.response, otherReply: other.response, instance: instance)
        }
        var same = primary.pending == other.pending && primary.deferred == other.deferred
        if same && !primary.pending && (rules[command] ?? .exact) != .ignore {
            same = agree(command: command, primary.response, other.response)
        }
        count(same: same, request: request, command: command, instance: instance,
              primary: { Self.render(primary) }, other: { Self.render(other) })
        return same
    }

    /// An answer with its deferred replies, readably.
    static func render(_ reply: InstanceReply) -> String {
        var text = reply.pending ? "(reply held back)" : renderReply(reply.response)
        for d in reply.deferred { text += "; reply to #\(d.sequence): " + renderReply(d.response) }
        return text
    }

    /// Counts one comparison's outcome; records a discrepancy when it differed.
    private func count(
        same: Bool, request: ApplyRequest, command: String, instance: WorkerInstance, primary: () -> String,
        other: () -> String
    ) {
        stats[instance.id, default: [:]][command, default: ComparisonStats()].compared += 1
        // Mutated in place: copying the window out and back would copy its array on every comparison.
        if windows[instance.id] == nil { windows[instance.id] = (Array(repeating: false, count: windowSize), 0, 0) }
        let index = windows[instance.id]!.index
        if windows[instance.id]!.outcomes[index] { windows[instance.id]!.differed -= 1 }
        windows[instance.id]!.outcomes[index] = !same
        if !same { windows[instance.id]!.differed += 1 }
        windows[instance.id]!.index = (index + 1) % windowSize
        instance.comparedReplies += 1
        if !same {
            instance.differingReplies += 1
            stats[instance.id, default: [:]][command, default: ComparisonStats()].differed += 1
            record(Discrepancy(
                sequence: request.sequence, instance: instance.id, role: instance.role.rawValue,
                version: instance.version, kind: .reply, command: command,
                request: Self.render(tag: request.tag, payload: request.payload),
                primary: primary(), other: other(), keys: [],
                timeMillis: Int64(Date().timeIntervalSince1970 * 1000)))
        }
    }

    /// The sliding-window discrepancy rate of an instance (over its last comparisons).
    func windowRate(_ instance: UInt32) -> Double {
        guard let w = windows[instance] else { return 0 }
        let n = min(windowSize, stats[instance]?.values.reduce(0) { $0 + $1.compared } ?? 0)
        return n == 0 ? 0 : Double(w.differed) / Double(n)
    }

    /// Drops the per-instance counters (when an instance goes away).
    func forget(_ instance: UInt32) {
        windows[instance] = nil
    }

    /// Records a discrepancy in memory and in the data directory.
    func record(_ d: Discrepancy) {
        totalDiscrepancies += 1
        recent.append(d)
        if recent.count > capacity { recent.removeFirst(recent.count - capacity) }
        if let logHandle, var line = try? JSONEncoder().encode(d) {
            line.append(UInt8(ascii: "\n"))
            try? logHandle.write(contentsOf: line)
        }
    }

    /// Closes the persisted log.
    func close() {
        try? logHandle?.close()
        logHandle = nil
    }
}
