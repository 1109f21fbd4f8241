import Foundation
import Synchronization
import UnderstudyWire

/// The demo's HTTP load: closed-loop clients making idempotent transfers between accounts (retrying with the same
/// `Idempotency-Key` after any connection error) and reading balances, timing the gaps between responses.
public final class HTTPLoadGenerator: Sendable {
    /// What to run.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var clients = 4
        public var accounts: [String] = []
        /// The share of requests that are transfers (the rest read a balance).
        public var transferShare = 0.7
        public var maximumAmount: Int64 = 100
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// What the clients saw.
    public struct Report: Sendable, ClientGapRecord {
        public var requests = 0
        /// Responses 5xx and requests that never got a response.
        public var errors = 0
        public var connectionRetries = 0
        public var errorSamples: [String] = []
        public var statuses: [Int: Int] = [:]
        /// Acknowledged (201) transfers by id: from, to, amount.
        public var transfers: [String: Transfer] = [:]
        public var longestGapMillis: Double = 0
        public var gaps: [(Double, Double)] = []

        /// One acknowledged transfer.
        public struct Transfer: Sendable {
            public var from: String
            public var to: String
            public var amount: Int64
        }

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

    /// Starts the clients, each on its own thread.
    public func start() {
        clients.start { [self] index, t0 in self.runClient(index: index, t0: t0) }
    }

    /// Stops the clients (each finishes its request) and merges their reports.
    public func stop() -> Report {
        let reports = clients.stop().reports
        var merged = Report()
        for r in reports {
            merged.requests += r.requests
            merged.errors += r.errors
            merged.connectionRetries += r.connectionRetries
            merged.errorSamples += r.errorSamples.prefix(5)
            for (k, v) in r.statuses { merged.statuses[k, default: 0] += v }
            merged.transfers.merge(r.transfers) { a, _ in a }
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
        var client: HTTPClient?
        var last = Date()
        var n = 0
        while !clients.stopping {
            n += 1
            let transfer = Double.random(in: 0..<1, using: &rng) < c.transferShare
            let from = c.accounts.randomElement(using: &rng) ?? "acct0"
            var to = c.accounts.randomElement(using: &rng) ?? "acct1"
            while to == from && c.accounts.count > 1 { to = c.accounts.randomElement(using: &rng)! }
            let amount = Int64.random(in: 1...c.maximumAmount, using: &rng)
            let key = "demo-\(index)-\(n)"
            let body: JSONValue = ["from": .string(from), "to": .string(to), "amount": .int(amount)]
            // The same request (and key) until it gets a response: a retried transfer is applied at most once.
            var attempts = 0
            while !clients.stopping || attempts > 0 {
                attempts += 1
                do {
                    if client == nil || client!.closed {
                        client = try HTTPClient(host: c.host, port: c.port, timeoutSeconds: 10)
                    }
                    let r = transfer
                        ? try client!.request("POST", "/transfers", headers: [("idempotency-key", key)], json: body)
                        : try client!.request("GET", "/accounts/\(from)")
                    let now = Date()
                    let gap = now.timeIntervalSince(last) * 1000
                    last = now
                    report.requests += 1
                    report.statuses[r.status, default: 0] += 1
                    if gap > report.longestGapMillis { report.longestGapMillis = gap }
                    if gap > 1 { report.gaps.append((now.timeIntervalSince(t0) * 1000, gap)) }
                    if r.status >= 500 {
                        report.errors += 1
                        if report.errorSamples.count < 5 { report.errorSamples.append("\(r.status) \(r.text)") }
                    } else if transfer && r.status == 201, let id = r.json?["id"]?.stringValue {
                        report.transfers[id] = Report.Transfer(from: from, to: to, amount: amount)
                    }
                    break
                } catch {
                    client = nil
                    report.connectionRetries += 1
                    if report.errorSamples.count < 5 { report.errorSamples.append("\(error)") }
                    if attempts >= 50 {
                        report.errors += 1
                        break
                    }
                    usleep(10_000)
                }
            }
        }
        return report
    }
}
