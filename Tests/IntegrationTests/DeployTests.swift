import Foundation
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// A closed-loop client running one command list over and over on its own connection (extra load
/// for the broken variants: INCRs past 1000, GETs of `nd:` keys).
final class CommandLoop: @unchecked Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    private let errors = Mutex<[String]>([])
    private let acknowledged = Mutex<[String: Int]>([:])

    init(port: Int, commands: [[String]]) {
        let thread = Thread { [self] in
            var client: RESPClient?
            while !stopFlag.load(ordering: .relaxed) {
                do {
                    if client == nil { client = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 10) }
                    for c in commands {
                        let reply = try client!.call(c)
                        if case .error(let e) = reply { errors.withLock { $0.append(e) } }
                        if c.first == "INCR", case .integer = reply { acknowledged.withLock { $0[c[1], default: 0] += 1 } }
                    }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                    client = nil
                    usleep(10_000)
                }
            }
            done.store(true, ordering: .sequentiallyConsistent)
        }
        thread.start()
    }

    func stop() async throws -> (errors: [String], acknowledged: [String: Int]) {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        _ = await eventually(timeout: 30, every: 0.01) { self.done.load(ordering: .sequentiallyConsistent) }
        return (errors.withLock { $0 }, acknowledged.withLock { $0 })
    }
}

extension EndToEnd {
    @Suite("understudy deploy")
    struct DeployTests {
        // MARK: 8. kv-v1 → kv-v2

        @Test("kv-v1 → kv-v2 under load: accepted, 2.0.0 is primary, nothing lost, COPY works")
        func deployUnderLoad() async throws {
            let dir = try TempDirectory("deploy")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 3)
            try await Task.sleep(for: .milliseconds(500))
            let result = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "300"] + s.cliTarget)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("accepted"), "\(result)")
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()
            let st = try s.status()
            #expect(st.version == "2.0.0")
            #expect(st.instances.first { $0.role == "primary" }?.version == "2.0.0")
            let deploys = try s.admin.get("/deploys").decode([DeployReport].self)
            #expect(deploys.count == 1 && deploys.first?.state == "accepted")
            #expect(deploys.first?.swap?.outcome.succeeded == true)
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            // Version 2's new command.
            let copy: [RESPValue] = try await io {
                let c = try s.client()
                return [try c.call("SET", "a", "copied value"), try c.call("COPY", "a", "b"), try c.call("GET", "b")]
            }
            #expect(copy == [.simple("OK"), .integer(1), .bulk(Array("copied value".utf8))])
            // Version 1, kept on probation, does not know COPY: its refusal is the version gap, not a discrepancy.
            try await Task.sleep(for: .milliseconds(200))
            let recorded = String(decoding: try s.admin.get("/discrepancies").body, as: UTF8.self)
            #expect(!recorded.contains("\"COPY\""), "\(recorded)")
            // After probation the version-1 instances retire and a version-2 shadow follows.
            #expect(await s.waitForLiveShadow())
            let onlyV2 = await eventually(timeout: 30) {
                let st = try s.status()
                return st.probation == nil && st.instances.allSatisfy { $0.version == "2.0.0" }
            }
            #expect(onlyV2, "\(String(describing: try? s.status().instances.map { ($0.id, $0.role, $0.version) }))")
            #expect(await s.stop() == 0)
        }

        @Test("understudy rollback during probation returns to 1.0.0 with every write present")
        func rollbackDuringProbation() async throws {
            let dir = try TempDirectory("rollback")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "30"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let v1 = try #require(try s.primary())
            let load = Load(port: s.port, clients: 3)
            try await Task.sleep(for: .milliseconds(500))
            let deploy = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "300"] + s.cliTarget)
            #expect(deploy.status == 0, "\(deploy)")
            #expect(try s.status().version == "2.0.0")
            #expect(try s.status().probation?.previousPrimary == v1.id)
            try await Task.sleep(for: .milliseconds(700))
            let rollback = try await understudy(["rollback"] + s.cliTarget)
            #expect(rollback.status == 0, "\(rollback)")
            #expect(rollback.stdout.contains("rollback swap ok"), "\(rollback)")
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()
            let st = try s.status()
            #expect(st.version == "1.0.0")
            #expect(st.instances.first { $0.role == "primary" }?.id == v1.id)
            #expect(st.probation == nil)
            let swaps = try s.swaps()
            #expect(swaps.map(\.reason) == [.deploy, .rollback])
            #expect(swaps.allSatisfy { $0.outcome.succeeded })
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            // A second rollback has nothing to roll back.
            let again = try await understudy(["rollback"] + s.cliTarget)
            #expect(again.status != 0)
            #expect(await s.stop() == 0)
        }

        // MARK: 9. rejected deploys

        struct Fault: Sendable, CustomTestStringConvertible {
            var name: String
            var binary: @Sendable () -> String
            var flags: [String]
            /// The reasons (lower-cased) contain every word of one of these groups: together they name the fault.
            var keywords: [[String]]
            /// Extra commands looped during the attempt.
            var extra: [[String]] = []
            var setup: [[String]] = []
            var pipeline = 1
            var testDescription: String { name }
        }

        static let faults: [Fault] = [
            Fault(name: "crash-in-migrate", binary: { Binaries.kv2 },
                  flags: ["--env", "UNDERSTUDY_KV_BROKEN=crash-in-migrate", "--arg=--i-know-this-is-broken"],
                  keywords: [["migrat"]]),
            Fault(name: "wrong-incr", binary: { Binaries.kv2 },
                  flags: ["--env", "UNDERSTUDY_KV_BROKEN=wrong-incr", "--arg=--i-know-this-is-broken"],
                  keywords: [["validation", "incr"]], extra: [["INCR", "wi:counter"]], setup: [["SET", "wi:counter", "990"]]),
            Fault(name: "nondeterministic", binary: { Binaries.kv2 },
                  flags: ["--env", "UNDERSTUDY_KV_BROKEN=nondeterministic", "--arg=--i-know-this-is-broken"],
                  keywords: [["differ", "noise"], ["validation", "nondeterministic"]], extra: [["GET", "nd:a"], ["GET", "nd:b"]],
                  setup: [["SET", "nd:a", "1"], ["SET", "nd:b", "2"]]),
            Fault(name: "slow", binary: { Binaries.kv2 },
                  flags: ["--env", "UNDERSTUDY_KV_BROKEN=slow", "--arg=--i-know-this-is-broken"],
                  keywords: [["slow"]], pipeline: 16),
            Fault(name: "drift", binary: { Binaries.kv2 },
                  flags: ["--env", "UNDERSTUDY_KV_BROKEN=drift", "--arg=--i-know-this-is-broken"],
                  keywords: [["drift"]]),
            Fault(name: "missing binary", binary: { Binaries.directory + "/kv-v3-does-not-exist" }, flags: [],
                  keywords: [["does not exist"]]),
            Fault(name: "another service", binary: { Binaries.testService }, flags: [], keywords: [["service", "test-service"]]),
            Fault(name: "failing --test-command", binary: { Binaries.kv2 }, flags: ["--test-command", "exit 3"],
                  keywords: [["test-command", "status 3"]]),
        ]

        @Test("A faulty update is rejected, the primary stays 1.0.0, nothing lost", arguments: faults)
        func rejected(_ fault: Fault) async throws {
            let dir = try TempDirectory("reject")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let primaryBefore = try #require(try s.primary())
            if !fault.setup.isEmpty {
                let replies = try s.client().pipeline(fault.setup)
                #expect(replies.allSatisfy { $0 == .simple("OK") })
            }
            let load = Load(port: s.port, clients: 3, pipeline: fault.pipeline)
            let extra = fault.extra.isEmpty ? nil : CommandLoop(port: s.port, commands: fault.extra)
            try await Task.sleep(for: .milliseconds(fault.name == "slow" ? 1500 : 500))
            let result = try await understudy(
                ["deploy", fault.binary(), "--compare-requests", "300", "--json"] + fault.flags + s.cliTarget)
            try await Task.sleep(for: .milliseconds(300))
            let extraResult = try await extra?.stop()
            let report = try await load.stop()

            #expect(result.status != 0, "\(result)")
            let deploy = try? JSONDecoder().decode(DeployReport.self, from: Data(result.stdout.utf8))
            #expect(deploy?.state == "rejected", "\(result)")
            let reasons = (deploy?.reasons ?? []).joined(separator: "; ")
            let haystack = (reasons + " " + result.stderr).lowercased()
            #expect(fault.keywords.contains { $0.allSatisfy { haystack.contains($0) } }, "reasons: \(reasons)\n\(result)")

            let st = try s.status()
            #expect(st.version == "1.0.0")
            #expect(st.instances.first { $0.role == "primary" }?.id == primaryBefore.id)
            #expect(!st.instances.contains { $0.role == "candidate" })
            #expect(try s.swaps().allSatisfy { !$0.outcome.succeeded })
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            var acknowledged = report.acknowledgedIncrements
            if let extraResult {
                #expect(extraResult.errors.isEmpty, "\(extraResult.errors.prefix(5))")
                for (k, v) in extraResult.acknowledged { acknowledged[k] = v + 990 }
                if fault.name == "wrong-incr" { #expect((acknowledged["wi:counter"] ?? 0) > 1000) }
            }
            let problems = try await counterProblems(port: s.port, acknowledged: acknowledged, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await s.stop() == 0)
        }

        @Test("A passing --test-command (redis-cli ping against the fork) is accepted",
              .enabled(if: Binaries.redisCLI != nil, "redis-cli is not installed (apt-get install redis-tools)"))
        func passingTestCommand() async throws {
            let dir = try TempDirectory("testcmd")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 2)
            try await Task.sleep(for: .milliseconds(300))
            let command = "\(Binaries.redisCLI!) -p $UNDERSTUDY_TEST_PORT ping | grep -q PONG"
            let result = try await understudy(
                ["deploy", Binaries.kv2, "--compare-requests", "200", "--test-command", command] + s.cliTarget)
            let report = try await load.stop()
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("test_command") && result.stdout.contains("exit 0"), "\(result)")
            #expect(try s.status().version == "2.0.0")
            #expect(report.errors == 0, "\(report.errorSamples)")
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await s.stop() == 0)
        }
    }
}
