import Foundation
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudySupervisor
import UnderstudyWire

#if canImport(Glibc)
import Glibc
#endif

extension Binaries {
    static var ledger1: String { path("ledger-v1") }
    static var ledger2: String { path("ledger-v2") }
}

extension SupervisorProcess {
    func http(timeoutSeconds: Int = 30) throws -> HTTPClient {
        try HTTPClient(host: "127.0.0.1", port: port, timeoutSeconds: timeoutSeconds)
    }
}

/// Clients making idempotent transfers between accounts, each retrying with the same key after any connection
/// error until it gets a response; records every acknowledged transfer.
final class TransferLoad: @unchecked Sendable {
    struct Report {
        var acknowledged: [String: (from: String, to: String, amount: Int64)] = [:]
        var statuses: [Int: Int] = [:]
        var connectionErrors = 0
        var errorSamples: [String] = []
    }
    private let stopFlag = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)
    private let report = Mutex(Report())

    init(port: Int, clients: Int, accounts: [String], maxAmount: Int64 = 50) {
        for c in 0..<clients {
            running.add(1, ordering: .sequentiallyConsistent)
            let thread = Thread { [self] in
                var client: HTTPClient?
                var n = 0
                var rng = SystemRandomNumberGenerator()
                while !stopFlag.load(ordering: .relaxed) {
                    n += 1
                    let key = "c\(c)-\(n)"
                    let from = accounts.randomElement(using: &rng)!
                    var to = accounts.randomElement(using: &rng)!
                    while to == from { to = accounts.randomElement(using: &rng)! }
                    let amount = Int64.random(in: 1...maxAmount, using: &rng)
                    let body: JSONValue = ["from": .string(from), "to": .string(to), "amount": .int(amount)]
                    // Retry with the same key until a response arrives (at most a minute).
                    let deadline = Date().addingTimeInterval(60)
                    while Date() < deadline {
                        do {
                            if client == nil || client!.closed { client = try HTTPClient(host: "127.0.0.1", port: port, timeoutSeconds: 20) }
                            let r = try client!.request("POST", "/transfers", headers: [("idempotency-key", key)], json: body)
                            report.withLock {
                                $0.statuses[r.status, default: 0] += 1
                                if r.status == 201, let id = r.json?["id"]?.stringValue { $0.acknowledged[id] = (from, to, amount) }
                                if r.status >= 500 && $0.errorSamples.count < 10 { $0.errorSamples.append("\(r.status) \(r.text)") }
                            }
                            break
                        } catch {
                            client = nil
                            report.withLock {
                                $0.connectionErrors += 1
                                if $0.errorSamples.count < 10 { $0.errorSamples.append("\(error)") }
                            }
                            usleep(20_000)
                        }
                    }
                }
                running.subtract(1, ordering: .sequentiallyConsistent)
            }
            thread.start()
        }
    }

    func stop() async -> Report {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        _ = await eventually(timeout: 90, every: 0.02) { self.running.load(ordering: .sequentiallyConsistent) == 0 }
        return report.withLock { $0 }
    }
}

/// Creates accounts and returns their ids.
func createAccounts(_ s: SupervisorProcess, count: Int, balance: Int64) async throws -> [String] {
    try await io {
        let c = try s.http()
        var ids: [String] = []
        for i in 0..<count {
            let id = "acct\(i)"
            let r = try c.request("POST", "/accounts", json: ["id": .string(id), "balance": .int(balance)])
            guard r.status == 201 else { throw HarnessError("creating \(id): \(r.status) \(r.text)") }
            ids.append(id)
        }
        return ids
    }
}

/// The balances of the accounts.
func balances(_ s: SupervisorProcess, _ ids: [String]) async throws -> [String: Int64] {
    try await io {
        let c = try s.http()
        var out: [String: Int64] = [:]
        for id in ids {
            let r = try c.request("GET", "/accounts/\(id)")
            guard r.status == 200, let b = r.json?["balance"]?.intValue else { throw HarnessError("reading \(id): \(r.status) \(r.text)") }
            out[id] = b
        }
        return out
    }
}

extension EndToEnd {
    @Suite("HTTP front-end and the ledger")
    struct HTTPTests {
        @Test("hostile clients get the right status or a closed connection; others are unaffected")
        func hostileClients() async throws {
            let dir = try TempDirectory("http-hostile")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(
                service: Binaries.ledger1, dataDirectory: dir.path + "/data", arguments: ["--header-timeout-ms", "700"])
            defer { s.cleanup() }
            #expect(s.ready.service.hasPrefix("ledger"))
            _ = try await createAccounts(s, count: 2, balance: 100)

            // A well-behaved client on its own connection throughout.
            let steady = try s.http()
            #expect(try steady.request("GET", "/health").status == 200)

            @Sendable func exchange(_ bytes: [UInt8], wait: Int = 5) throws -> (response: HTTPClient.Response?, closed: Bool) {
                let c = try HTTPClient(host: "127.0.0.1", port: s.port, timeoutSeconds: wait)
                try? c.sendRaw(bytes)
                let r = try? c.readResponse()
                return (r, r == nil || c.closed)
            }
            let malformed = try await io { try exchange(Array("GARBAGE / NOPE\r\n\r\n".utf8)) }
            #expect(malformed.response?.status == 400 && malformed.closed)
            // 64 MB announced (and 1 MB sent): 413 before the body, or a closed connection.
            let big = try await io {
                try exchange(Array("POST /transfers HTTP/1.1\r\nhost: x\r\ncontent-length: \(64 << 20)\r\n\r\n".utf8) + [UInt8](repeating: 0x61, count: 1 << 20))
            }
            #expect(big.response == nil || big.response?.status == 413)
            #expect(big.closed)
            let headers = (0..<10_000).map { ("x-h\($0)", "v") }
            let many = try await io { try exchange(HTTPClient.encode("GET", "/health", headers: headers)) }
            #expect(many.response == nil || many.response?.status == 431)
            #expect(many.closed)
            // Slowloris: half a head, then nothing: 408 after the header timeout, and the connection closes.
            let started = Date()
            let slow = try await io { try exchange(Array("GET /health HTTP/1.1\r\nx-a: 1\r\n".utf8)) }
            #expect(slow.response?.status == 408 && slow.closed)
            #expect(Date().timeIntervalSince(started) < 4)
            // Pipelining: three requests in one write, answered in order.
            let pipelined: [Int] = try await io {
                let c = try s.http()
                try c.sendRaw(HTTPClient.encode("GET", "/accounts/acct0") + HTTPClient.encode("GET", "/nope") + HTTPClient.encode("GET", "/health"))
                return try (0..<3).map { _ in try c.readResponse().status }
            }
            #expect(pipelined == [200, 404, 200])
            // Chunked request body.
            let chunked: Int = try await io {
                let c = try s.http()
                let body = #"{"from":"acct0","to":"acct1","amount":5}"#
                let half = body.utf8.count / 2
                let text = "POST /transfers HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
                    + String(half, radix: 16) + "\r\n" + String(body.prefix(half)) + "\r\n"
                    + String(body.utf8.count - half, radix: 16) + "\r\n" + String(body.dropFirst(half)) + "\r\n0\r\n\r\n"
                try c.sendRaw(Array(text.utf8))
                return try c.readResponse().status
            }
            #expect(chunked == 201)
            // The steady client never noticed.
            #expect(try steady.request("GET", "/accounts/acct1").json?["balance"] == 105)
            #expect(await s.stop() == 0)
        }

        @Test("idempotent transfers under load while ledger-v2 deploys: accepted, money conserved, each transfer once, no 5xx")
        func deployUnderLoad() async throws {
            let dir = try TempDirectory("http-deploy")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(
                service: Binaries.ledger1, dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let ids = try await createAccounts(s, count: 20, balance: 10_000)
            let load = TransferLoad(port: s.port, clients: 4, accounts: ids)
            try await Task.sleep(for: .milliseconds(700))
            let deploy = try await understudy(["deploy", Binaries.ledger2, "--compare-requests", "300"] + s.cliTarget)
            #expect(deploy.status == 0, "\(deploy)")
            #expect(deploy.stdout.contains("accepted"), "\(deploy)")
            try await Task.sleep(for: .milliseconds(500))
            let report = await load.stop()
            #expect(try s.status().version == "2.0.0")
            #expect(report.statuses.keys.allSatisfy { $0 < 500 }, "\(report.statuses) \(report.errorSamples)")
            #expect(report.acknowledged.count > 50, "\(report.statuses)")
            let after = try await balances(s, ids)
            #expect(after.values.reduce(0, +) == 20 * 10_000)
            // Every acknowledged transfer appears exactly once in the history of both its accounts (v2's endpoint).
            let histories: [String: [String]] = try await io {
                let c = try s.http()
                var out: [String: [String]] = [:]
                for id in ids {
                    let r = try c.request("GET", "/accounts/\(id)/transfers")
                    guard r.status == 200 else { throw HarnessError("history of \(id): \(r.status) \(r.text)") }
                    out[id] = r.json?["transfers"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
                }
                return out
            }
            var problems: [String] = []
            for (tid, t) in report.acknowledged {
                for account in [t.from, t.to] where histories[account]?.filter({ $0 == tid }).count != 1 {
                    problems.append("\(tid) appears \(histories[account]?.filter { $0 == tid }.count ?? 0) times in \(account)")
                }
            }
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            // Balances are the sum of the histories' amounts, from the starting balance.
            let replyDiscrepancies = try s.discrepancies().recent.filter { $0.kind == .reply }
            #expect(replyDiscrepancies.isEmpty, "\(replyDiscrepancies.prefix(3))")
            #expect(await s.stop() == 0)
        }

        @Test("broken ledger-v2 variants are rejected with the real reason", arguments: [
            ("wrong-arithmetic", "expected balance 600, got 601"),
            ("drift", "state drift"),
        ])
        func brokenVariants(mode: String, reason: String) async throws {
            let dir = try TempDirectory("http-broken")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(service: Binaries.ledger1, dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let ids = try await createAccounts(s, count: 10, balance: 10_000)
            let load = TransferLoad(port: s.port, clients: 2, accounts: ids, maxAmount: 900)
            let deploy = try await understudy(
                ["deploy", Binaries.ledger2, "--compare-requests", "300", "--env", "UNDERSTUDY_LEDGER_BROKEN=\(mode)",
                 "--arg=--i-know-this-is-broken"] + s.cliTarget)
            let report = await load.stop()
            #expect(deploy.status != 0, "\(deploy)")
            #expect(deploy.output.contains(reason), "\(deploy)")
            #expect(try s.status().version == "1.0.0")
            #expect(report.statuses.keys.allSatisfy { $0 < 500 }, "\(report.statuses) \(report.errorSamples)")
            #expect(try await balances(s, ids).values.reduce(0, +) == 10 * 10_000)
            #expect(await s.stop() == 0)
        }

        @Test("SIGKILL of the primary under HTTP load: nothing acknowledged lost, nothing applied twice")
        func killPrimary() async throws {
            let dir = try TempDirectory("http-kill")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(service: Binaries.ledger1, dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let ids = try await createAccounts(s, count: 10, balance: 10_000)
            let load = TransferLoad(port: s.port, clients: 4, accounts: ids)
            for _ in 0..<2 {
                try await Task.sleep(for: .milliseconds(600))
                let primary = try #require(try s.primary())
                #expect(kill(primary.pid, SIGKILL) == 0)
                #expect(await eventually(timeout: 30) { try s.primary().map { $0.id != primary.id } ?? false })
                #expect(await s.waitForLiveShadow())
            }
            try await Task.sleep(for: .milliseconds(500))
            let report = await load.stop()
            #expect(report.statuses.keys.allSatisfy { $0 < 500 }, "\(report.statuses) \(report.errorSamples)")
            let after = try await balances(s, ids)
            #expect(after.values.reduce(0, +) == 10 * 10_000)
            // Replaying each acknowledged transfer from the starting balances gives exactly the balances now: every
            // acknowledged transfer applied once, and nothing else applied (each request was acknowledged in the end).
            var expected = Dictionary(uniqueKeysWithValues: ids.map { ($0, Int64(10_000)) })
            for t in report.acknowledged.values {
                expected[t.from]! -= t.amount
                expected[t.to]! += t.amount
            }
            #expect(after == expected)
            #expect(await s.stop() == 0)
        }
    }
}
