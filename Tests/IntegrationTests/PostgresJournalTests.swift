import Foundation
import PostgresTestSupport
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor
import UnderstudyWire

#if canImport(Glibc)
import Glibc
#endif

/// An INCR client that follows whichever supervisor accepts writes: on `READONLY`, a timeout or a dropped
/// connection it tries the other address. It counts acknowledged INCRs (must all be present at the end) and
/// requests whose outcome it cannot know (a timeout, a dropped connection: they may or may not be applied).
final class FollowingCounter: @unchecked Sendable {
    // Safety of @unchecked Sendable: the ports are constants; everything else is atomic or behind a Mutex.
    let key: String
    private let ports: [Int]
    private let stopFlag = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    let acknowledged = Atomic<Int>(0)
    let unknown = Atomic<Int>(0)
    /// Acknowledged INCRs per port.
    let byPort = Mutex<[Int: Int]>([:])
    let problems = Mutex<[String]>([])

    init(key: String, ports: [Int]) {
        self.key = key
        self.ports = ports
        let thread = Thread { [self] in self.run() }
        thread.start()
    }

    private func run() {
        var index = 0
        var client: RESPClient?
        var last = 0
        while !stopFlag.load(ordering: .relaxed) {
            let port = ports[index]
            do {
                if client == nil { client = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 1) }
                let reply = try client!.call("INCR", key)
                switch reply {
                case .integer(let v):
                    acknowledged.add(1, ordering: .relaxed)
                    byPort.withLock { $0[port, default: 0] += 1 }
                    if Int(v) <= last { problems.withLock { $0.append("INCR went back from \(last) to \(v) on port \(port)") } }
                    last = Int(v)
                case .error(let e) where e.hasPrefix("READONLY"):
                    client = nil
                    index = (index + 1) % ports.count
                    usleep(5_000)
                default:
                    problems.withLock { $0.append("port \(port): \(reply)") }
                }
            } catch {
                if client != nil { unknown.add(1, ordering: .relaxed) }
                client = nil
                index = (index + 1) % ports.count
                usleep(5_000)
            }
        }
        done.store(true, ordering: .sequentiallyConsistent)
    }

    func stop() async {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        _ = await eventually(timeout: 30, every: 0.01) { self.done.load(ordering: .sequentiallyConsistent) }
    }

    /// Waits until `count` more INCRs are acknowledged by `port`.
    func waitForAcknowledgements(on port: Int, count: Int, timeout: Double = 30) async -> Bool {
        let start = byPort.withLock { $0[port, default: 0] }
        return await eventually(timeout: timeout, every: 0.01) { self.byPort.withLock { $0[port, default: 0] } >= start + count }
    }
}

/// The value of `key` through `port`.
func counterValue(port: Int, key: String) async throws -> Int {
    let reply: RESPValue = try await io { try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 10).call("GET", key) }
    guard let t = text(reply), let v = Int(t) else { throw HarnessError("GET \(key): \(reply)") }
    return v
}

/// Milliseconds until `port` accepts an INCR (not `READONLY`), or nil after `timeout` seconds.
func millisecondsUntilWritable(port: Int, timeout: Double) async -> Double? {
    let start = Date()
    let writable = await eventually(timeout: timeout, every: 0.01) {
        let reply = try? await io { try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 1).call("INCR", "probe") }
        if case .integer = reply { return true }
        return false
    }
    return writable ? Date().timeIntervalSince(start) * 1000 : nil
}

extension EndToEnd {
    @Suite(
        "PostgreSQL journal: active and standby supervisors, lease and fencing",
        .enabled(if: PostgresCluster.unavailableReason == nil, "PostgreSQL is not available: \(PostgresCluster.unavailableReason ?? "")"))
    struct PostgresJournalTests {
        static let leaseMs = 1000

        @Test("SIGSTOP the active: the standby takes over within lease + 1 s; SIGCONT: the old active acknowledges nothing and reports standby; SIGKILL the new one: the old takes over; nothing acknowledged lost")
        func takeoverAndFencing() async throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.destroy() }
            let dir = try TempDirectory("pg-takeover")
            defer { dir.remove() }
            let journal = ["--journal", cluster.url, "--lease-ms", "\(Self.leaseMs)", "--fsync", "always"]
            let a = try await SupervisorProcess.start(dataDirectory: dir.path + "/a", arguments: journal, name: "active-a")
            defer { a.cleanup() }
            let b = try await SupervisorProcess.start(dataDirectory: dir.path + "/b", arguments: journal + ["--standby"], name: "standby-b")
            defer { b.cleanup() }
            #expect(try a.status().mode == "active")
            #expect(try b.status().mode == "standby")
            // A standby refuses writes with Redis's replica error.
            let refused: RESPValue = try await io { try b.client().call("SET", "x", "1") }
            #expect(refused == .error("READONLY You can't write against a standby supervisor"))
            // A second active is refused while the lease runs.
            let second = try SupervisorProcess.startChild(service: Binaries.kv1, dataDirectory: dir.path + "/c", arguments: journal, name: "second")
            #expect(await second.waitForExit(timeout: 60) != 0)
            #expect(second.stderr.contains("--standby"), "\(second.stderr)")

            let counter = FollowingCounter(key: "pg:c", ports: [a.port, b.port])
            #expect(await counter.waitForAcknowledgements(on: a.port, count: 200))

            // 1. A freezes: B takes over once the lease expires.
            a.rememberChildren()
            a.child.signal(SIGSTOP)
            let takeover = await millisecondsUntilWritable(port: b.port, timeout: 30)
            #expect(takeover != nil && takeover! <= Double(Self.leaseMs + 1000), "takeover took \(String(describing: takeover)) ms")
            #expect(try b.status().mode == "active")
            #expect(await counter.waitForAcknowledgements(on: b.port, count: 200))

            // 2. A wakes up: its next append fails on the epoch; it acknowledges nothing and becomes a standby.
            let ackedByABefore = counter.byPort.withLock { $0[a.port, default: 0] }
            a.child.signal(SIGCONT)
            #expect(await eventually(timeout: 30) { try a.status().mode == "standby" })
            let refusedByA: RESPValue = try await io { try a.client().call("INCR", "pg:c") }
            #expect(refusedByA == .error("READONLY You can't write against a standby supervisor"))
            #expect(counter.byPort.withLock { $0[a.port, default: 0] } == ackedByABefore)
            let events = try a.status().replication?.events.map(\.message) ?? []
            #expect(events.contains { $0.contains("taken over") }, "\(events)")

            // 3. B dies with its workers: A takes over again.
            b.rememberChildren()
            await b.kill9()
            b.cleanup()
            #expect(await counter.waitForAcknowledgements(on: a.port, count: 200, timeout: 30))
            #expect(try a.status().mode == "active")
            await counter.stop()

            let value = try await counterValue(port: a.port, key: "pg:c")
            let acked = counter.acknowledged.load(ordering: .relaxed)
            let unknown = counter.unknown.load(ordering: .relaxed)
            #expect(value >= acked, "LOST writes: \(acked) acknowledged, value \(value)")
            #expect(value <= acked + unknown, "value \(value) exceeds \(acked) acknowledged + \(unknown) unknown")
            #expect(counter.problems.withLock { $0 }.isEmpty, "\(counter.problems.withLock { $0 }.prefix(5))")
            #expect(await a.stop() == 0)
        }

        @Test("An active that cannot renew its lease holds intake before the lease can expire, and resumes once it renews")
        func unrenewableLeaseHoldsIntake() async throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.destroy() }
            let dir = try TempDirectory("pg-renew")
            defer { dir.remove() }
            let a = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/a", arguments: ["--journal", cluster.url, "--lease-ms", "\(Self.leaseMs)", "--fsync", "always"])
            defer { a.cleanup() }
            _ = try await io { try a.client().call("SET", "r", "0") }
            // Another session holds the lease row for 3 leases: renewals (and appends) wait on it.
            let holder = Task.detached { () -> Date in
                _ = try? cluster.psql("BEGIN; SELECT 1 FROM understudy_lease FOR UPDATE; SELECT pg_sleep(\(Double(Self.leaseMs) * 3 / 1000)); COMMIT;")
                return Date()
            }
            // Until the row is locked by that session.
            #expect(await eventually(timeout: 10, every: 0.02) {
                (try? cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"))?.trimmingCharacters(in: .whitespacesAndNewlines) == "1"
            })
            let reply: RESPValue = try await io { try a.client(timeoutSeconds: 30).call("INCR", "r") }
            let acknowledged = Date()
            let released = await holder.value
            // The INCR was acknowledged only once the lock went away (its commit needs the lease row too).
            #expect(reply == .integer(1))
            #expect(acknowledged.timeIntervalSince(released) > -0.2, "acknowledged \(released.timeIntervalSince(acknowledged)) s before the lease row was free")
            let events = try a.status().replication?.events.map(\.message) ?? []
            #expect(events.contains { $0.contains("cannot renew the lease: intake held") }, "\(events)")
            #expect(await eventually(timeout: 10) { (try a.status().replication?.events.map(\.message) ?? []).contains { $0.contains("renewed again") } })
            #expect(try a.status().mode == "active")
            #expect(await a.stop() == 0)
        }

        @Test("An HTTP service's standby answers 503 with Retry-After; after the active stops cleanly it takes over at once with every account")
        func httpStandby() async throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.destroy() }
            let dir = try TempDirectory("pg-http")
            defer { dir.remove() }
            let journal = ["--journal", cluster.url, "--lease-ms", "60000", "--fsync", "always"]
            let a = try await SupervisorProcess.start(service: Binaries.ledger1, dataDirectory: dir.path + "/a", arguments: journal)
            defer { a.cleanup() }
            let b = try await SupervisorProcess.start(service: Binaries.ledger1, dataDirectory: dir.path + "/b", arguments: journal + ["--standby"])
            defer { b.cleanup() }
            let created = try await io {
                try HTTPClient(host: "127.0.0.1", port: a.port).request("POST", "/accounts", json: ["id": .string("acct-pg"), "balance": .int(42)])
            }
            #expect(created.status == 201, "\(created.text)")
            let refused = try await io { try HTTPClient(host: "127.0.0.1", port: b.port).request("GET", "/accounts/acct-pg") }
            #expect(refused.status == 503)
            #expect(refused.headers["retry-after"] == "1")
            #expect(refused.text.contains("standby"), "\(refused.text)")
            // A clean stop hands the lease over at once: no waiting for a 60 s lease to run out.
            #expect(await a.stop() == 0)
            #expect(await eventually(timeout: 10) { try b.status().mode == "active" })
            let read = try await io { try HTTPClient(host: "127.0.0.1", port: b.port).request("GET", "/accounts/acct-pg") }
            #expect(read.status == 200 && read.text.contains("42"), "\(read.status) \(read.text)")
            #expect(await b.stop() == 0)
        }

        @Test("A standby stopped while the active pruned the journal past it restarts from the newest snapshot, keeps up, and takes over with everything")
        func standbyBehindPruning() async throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.destroy() }
            let dir = try TempDirectory("pg-behind")
            defer { dir.remove() }
            let journal = ["--journal", cluster.url, "--lease-ms", "\(Self.leaseMs)", "--fsync", "always", "--snapshot-every", "300"]
            let a = try await SupervisorProcess.start(dataDirectory: dir.path + "/a", arguments: journal, name: "active")
            defer { a.cleanup() }
            let b = try await SupervisorProcess.start(dataDirectory: dir.path + "/b", arguments: journal + ["--standby"], name: "standby")
            defer { b.cleanup() }
            let load = Load(port: a.port, clients: 3)
            try await Task.sleep(for: .milliseconds(300))
            b.rememberChildren()
            let position = try b.status().lastSequence
            b.child.signal(SIGSTOP)
            // The active snapshots and prunes the records the frozen standby has not read.
            let pruned = await eventually(timeout: 60, every: 0.1) {
                let oldest = try cluster.psql("SELECT coalesce(min(seq), 0) FROM understudy_journal").trimmingCharacters(in: .whitespacesAndNewlines)
                return (UInt64(oldest) ?? 0) > position + 1
            }
            #expect(pruned)
            b.child.signal(SIGCONT)
            #expect(await eventually(timeout: 60) {
                (try b.status().replication?.events.map(\.message) ?? []).contains { $0.contains("fell behind the journal's pruning") }
            }, "\(b.stderr.suffix(3000))")
            #expect(await eventually(timeout: 60) {
                let (sa, sb) = (try a.status(), try b.status())
                return sb.mode == "standby" && sb.lastSequence + 2000 >= sa.lastSequence && sb.lastSequence > position
            })
            // The active goes; the restarted standby takes over with every acknowledged write.
            await a.kill9()
            a.cleanup()
            let report = try await load.stop()
            #expect(await eventually(timeout: 30) { try b.status().mode == "active" })
            let problems = try await counterProblems(port: b.port, acknowledged: report.acknowledgedIncrements, exact: false)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(report.acknowledgedIncrements.values.reduce(0, +) > 100)
            #expect(await b.stop() == 0)
        }

        @Test("The PostgreSQL primary is stopped hard and its synchronous standby promoted: a supervisor on it has every acknowledged input")
        func postgresFailover() async throws {
            let primary = try PostgresCluster.start()
            defer { primary.destroy() }
            let replica = try primary.startStandby(synchronous: true)
            defer { replica.destroy() }
            let dir = try TempDirectory("pg-promote")
            defer { dir.remove() }
            let first = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/a", arguments: ["--journal", primary.url, "--lease-ms", "\(Self.leaseMs)", "--fsync", "always"],
                name: "on-primary")
            defer { first.cleanup() }
            let load = Load(port: first.port, clients: 3)
            try await Task.sleep(for: .milliseconds(1500))
            // The PostgreSQL primary dies mid-load (no checkpoint); every reply the clients got was committed on
            // the synchronous standby too.
            try primary.stop(mode: "immediate")
            // Its supervisor can commit nothing more (clients wait); it goes, and the clients see their connections drop.
            await first.kill9()
            first.cleanup()
            let report = try await load.stop()
            try replica.promote()
            let replicaURL = "postgres://understudy@127.0.0.1:\(replica.port)/understudy"
            let second = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/b", arguments: ["--journal", replicaURL, "--lease-ms", "\(Self.leaseMs)", "--standby"],
                name: "on-replica")
            defer { second.cleanup() }
            #expect(await eventually(timeout: 30) { try second.status().mode == "active" })
            #expect(report.acknowledgedIncrements.values.reduce(0, +) > 50)
            let problems = try await counterProblems(port: second.port, acknowledged: report.acknowledgedIncrements, exact: false)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await second.stop() == 0)
        }

        @Test("A swap and a deploy v1 → v2 with the PostgreSQL journal: accepted, nothing lost; a restart recovers from the database")
        func swapAndDeploy() async throws {
            let cluster = try PostgresCluster.start()
            defer { cluster.destroy() }
            let dir = try TempDirectory("pg-deploy")
            defer { dir.remove() }
            let arguments = ["--journal", cluster.url, "--probation-seconds", "1", "--snapshot-every", "2000"]
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/a", arguments: arguments)
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 3)
            try await Task.sleep(for: .milliseconds(500))
            let swap = try await io { try s.admin.post("/swap") }
            #expect(swap.status == 200, "\(swap.text)")
            #expect(await s.waitForLiveShadow())
            let deploy = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "300"] + s.cliTarget)
            #expect(deploy.status == 0 && deploy.stdout.contains("accepted"), "\(deploy)")
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()
            #expect(report.errors == 0, "\(report.errorSamples)")
            var problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(try s.status().version == "2.0.0")
            #expect(await s.stop() == 0)
            // The final snapshot went to the database; a new supervisor (another data directory: nothing local)
            // recovers it all.
            let snapshots = try cluster.psql("SELECT count(*) FROM understudy_snapshot_index").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect((Int(snapshots) ?? 0) >= 1)
            let again = try await SupervisorProcess.start(service: Binaries.kv2, dataDirectory: dir.path + "/b", arguments: arguments)
            defer { again.cleanup() }
            problems = try await counterProblems(port: again.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            // One service per database.
            await again.kill9()
            let ledger = try SupervisorProcess.startChild(
                service: Binaries.ledger1, dataDirectory: dir.path + "/c", arguments: ["--journal", cluster.url, "--standby"])
            #expect(await ledger.waitForExit(timeout: 60) != 0)
            #expect(ledger.stderr.contains("holds the state of service"), "\(ledger.stderr)")
        }
    }
}
