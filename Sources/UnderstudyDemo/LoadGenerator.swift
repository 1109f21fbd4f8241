import Foundation
import Synchronization
import UnderstudyFrontend
import UnderstudySupervisor

/// A closed-loop load generator over real sockets: clients doing acknowledged INCRs, SETs and GETs,
/// recording every acknowledged INCR (to check none is lost or doubled) and the gaps between replies.
public final class LoadGenerator: Sendable {
    /// What to run.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Concurrent connections.
        public var clients: Int = 4
        /// Commands in flight per connection (1 = no pipelining).
        public var pipeline: Int = 1
        /// Distinct counters INCRed.
        public var counters: Int = 64
        /// Distinct string keys SET and read.
        public var keys: Int = 10_000
        /// A prefix for every key, so runs don't collide.
        public var prefix: String = "load"
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// What happened.
    public struct Report: Sendable, ClientGapRecord {
        /// Replies received.
        public var requests = 0
        /// Error replies and connection failures.
        public var errors = 0
        /// Examples of errors.
        public var errorSamples: [String] = []
        /// Acknowledged INCRs per counter key.
        public var acknowledgedIncrements: [String: Int] = [:]
        /// INCR replies that were not one more than the previous acknowledged value on that connection's view.
        public var replyOrderViolations = 0
        /// The longest time any client waited between two replies, in ms.
        public var longestGapMillis: Double = 0
        /// (time since start in ms, gap in ms) for every gap above 1 ms.
        public var gaps: [(Double, Double)] = []
        /// Seconds the run lasted.
        public var seconds: Double = 0

    }

    let configuration: Configuration
    private let clients: LoadClients<Report>

    /// Creates a generator; nothing runs until ``start()``.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.clients = LoadClients(count: configuration.clients)
    }

    /// Milliseconds since ``start()``.
    public var elapsedMillis: Double { clients.elapsedMillis }

    /// Starts the client threads.
    public func start() {
        clients.start { [self] index, t0 in self.runClient(index: index, t0: t0) }
    }

    /// Stops the clients and merges their reports.
    public func stop() -> Report {
        let (reports, seconds) = clients.stop()
        var merged = Report()
        merged.seconds = seconds
        for r in reports {
            merged.requests += r.requests
            merged.errors += r.errors
            merged.errorSamples += r.errorSamples.prefix(5)
            for (k, v) in r.acknowledgedIncrements { merged.acknowledgedIncrements[k, default: 0] += v }
            merged.replyOrderViolations += r.replyOrderViolations
            merged.longestGapMillis = max(merged.longestGapMillis, r.longestGapMillis)
            merged.gaps += r.gaps
        }
        merged.gaps.sort { $0.0 < $1.0 }
        return merged
    }

    private func runClient(index: Int, t0: Date) -> Report {
        var report = Report()
        var rng = SystemRandomNumberGenerator()
        let c = configuration
        var client: RESPClient?
        var last = Date()
        // Each client owns its own counters, so the value an INCR returns must be exactly one more than
        // the previous one it saw: any other value means a lost or doubled write, or a reply out of order.
        let myCounters = (0..<max(1, c.counters / max(1, c.clients))).map { "\(c.prefix):counter:\(index):\($0)" }
        var lastSeen: [String: Int64] = [:]
        while !clients.stopping {
            do {
                if client == nil {
                    client = try RESPClient(host: c.host, port: c.port, timeoutSeconds: 10)
                    last = Date()
                }
                var batch: [[String]] = []
                var incrKeys: [String?] = []
                for _ in 0..<c.pipeline {
                    switch UInt8.random(in: 0..<4, using: &rng) {
                    case 0, 1:
                        let key = myCounters[Int.random(in: 0..<myCounters.count, using: &rng)]
                        batch.append(["INCR", key])
                        incrKeys.append(key)
                    case 2:
                        batch.append(["SET", "\(c.prefix):key:\(Int.random(in: 0..<c.keys, using: &rng))", "v\(UInt32.random(in: 0...UInt32.max, using: &rng))"])
                        incrKeys.append(nil)
                    default:
                        batch.append(["GET", "\(c.prefix):key:\(Int.random(in: 0..<c.keys, using: &rng))"])
                        incrKeys.append(nil)
                    }
                }
                var out: [UInt8] = []
                for b in batch { out += RESPClient.encode(b) }
                try client!.sendRaw(out)
                for key in incrKeys {
                    let reply = try client!.readReply()
                    let now = Date()
                    let gap = now.timeIntervalSince(last) * 1000
                    last = now
                    report.requests += 1
                    if gap > report.longestGapMillis { report.longestGapMillis = gap }
                    if gap > 1 { report.gaps.append((now.timeIntervalSince(t0) * 1000, gap)) }
                    if case .error(let e) = reply {
                        report.errors += 1
                        if report.errorSamples.count < 5 { report.errorSamples.append(e) }
                        continue
                    }
                    if let key, case .integer(let v) = reply {
                        report.acknowledgedIncrements[key, default: 0] += 1
                        // With no connection error the value is exactly one more; after a reconnect an unacknowledged
                        // INCR may have been applied, so only a value that does not grow is a violation.
                        if let prev = lastSeen[key], report.errors == 0 ? v != prev + 1 : v <= prev {
                            report.replyOrderViolations += 1
                        }
                        lastSeen[key] = v
                    }
                }
            } catch {
                report.errors += 1
                if report.errorSamples.count < 5 { report.errorSamples.append("\(error)") }
                client = nil
                usleep(10_000)
            }
        }
        return report
    }
}
