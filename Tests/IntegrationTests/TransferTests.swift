import Foundation
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    @Suite("understudy swap and rollback")
    struct TransferTests {
        // MARK: 5. consecutive swaps under load

        @Test("20 consecutive swaps under load: every swap succeeds, nothing lost, no client error, replies in order")
        func twentySwaps() async throws {
            let dir = try TempDirectory("swaps")
            defer { dir.remove() }
            // A generous pause budget: this test is about correctness, not about the pause on a busy machine.
            let s = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/data",
                arguments: ["--probation-seconds", "0.2", "--pause-budget-ms", "5000", "--snapshot-every", "5000"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 3, counters: 48)
            try await Task.sleep(for: .milliseconds(500))
            var primaries: [UInt32] = []
            for i in 1...20 {
                let ready = await s.waitForLiveShadow()
                #expect(ready, "swap \(i): no live shadow appeared")
                if !ready { break }
                let result = try await understudy(["swap"] + s.cliTarget)
                #expect(result.status == 0, "swap \(i): \(result)")
                #expect(result.stdout.contains("swap ok"), "swap \(i): \(result)")
                if result.status != 0 { break }
                if let p = try s.primary() { primaries.append(p.id) }
            }
            try await Task.sleep(for: .milliseconds(300))
            let report = try await load.stop()
            let swaps = try s.swaps()
            #expect(swaps.count == 20)
            #expect(swaps.allSatisfy { $0.outcome.succeeded && $0.reason == .planned })
            // Each planned swap chose its moment inside the deadline (500 ms by default).
            let decisions: Set<String> = ["quiet", "no forecast", "load steady or rising", "load fell to the forecast", "deadline"]
            for swap in swaps {
                let timing = try #require(swap.timing, "swap \(swap.id) has no timing record")
                #expect(decisions.contains(timing.decision), "\(timing)")
                if timing.decision != "deadline" { #expect(timing.waitedMillis < 500, "\(timing)") }
            }
            // Each swap handed the primary role to another instance.
            #expect(zip(primaries, primaries.dropFirst()).allSatisfy { $0 != $1 }, "\(primaries)")
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            #expect(report.acknowledgedIncrements.values.reduce(0, +) > 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await s.stop() == 0)
        }

        // MARK: 6. injected faults

        @Test("A swap over the pause budget aborts; the old primary keeps serving")
        func pauseBudgetExceeded() async throws {
            let dir = try TempDirectory("budget")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--pause-budget-ms", "0"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 2)
            try await Task.sleep(for: .milliseconds(500))
            let primaryBefore = try #require(try s.primary())
            let result = try await understudy(["swap"] + s.cliTarget)
            #expect(result.status != 0, "\(result)")
            #expect(result.stdout.contains("ABORTED"), "\(result)")
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()

            let after = try s.status()
            #expect(after.instances.first { $0.role == "primary" }?.id == primaryBefore.id)
            #expect(!after.intakePaused)
            let transfer = try s.discrepancies().recent.filter { $0.kind == .transfer }
            #expect(transfer.contains { $0.other.contains("pause budget") }, "\(transfer.map(\.other))")
            let swaps = try s.swaps()
            #expect(swaps.count == 1 && swaps.first?.outcome.succeeded == false)
            #expect(swaps.first?.outcome.abortReason?.contains("pause budget") == true)
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await s.stop() == 0)
        }

        @Test("A swap whose target was just killed aborts or is refused; the old primary serves, nothing lost")
        func targetKilled() async throws {
            let dir = try TempDirectory("target-killed")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--pause-budget-ms", "5000"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 2)
            try await Task.sleep(for: .milliseconds(500))
            let before = try s.status()
            let primaryBefore = try #require(before.instances.first { $0.role == "primary" })
            let shadow = try #require(before.instances.first { $0.role == "shadow" })
            #expect(kill(shadow.pid, SIGKILL) == 0)
            let result = try await understudy(["swap"] + s.cliTarget)
            #expect(result.status != 0, "\(result)")
            // Either no live shadow was found (HTTP 409) or the swap started and aborted on the target's death.
            let refused = result.stderr.contains("no live same-version shadow")
            let aborted = result.stdout.contains("ABORTED") && result.stdout.contains("target")
            #expect(refused || aborted, "\(result)")
            if aborted {
                #expect(try s.discrepancies().recent.contains { $0.kind == .transfer && $0.other.contains("target") })
            }
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()
            #expect(try s.primary()?.id == primaryBefore.id)
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(report.replyOrderViolations == 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            // A new shadow replays, and a swap to it now succeeds.
            #expect(await s.waitForLiveShadow())
            let again = try await understudy(["swap"] + s.cliTarget)
            #expect(again.status == 0, "\(again)")
            #expect(await s.stop() == 0)
        }

        // MARK: 7. probation

        @Test("A new primary that crashes during probation is rolled back automatically, nothing lost")
        func crashDuringProbation() async throws {
            let dir = try TempDirectory("probation-crash")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "60"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 3)
            try await Task.sleep(for: .milliseconds(500))
            let v1 = try #require(try s.primary())
            let deploy = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "200"] + s.cliTarget)
            #expect(deploy.status == 0, "\(deploy)")
            let during = try s.status()
            let v2 = try #require(during.instances.first { $0.role == "primary" })
            #expect(v2.version == "2.0.0")
            #expect(during.probation?.previousPrimary == v1.id)
            try await Task.sleep(for: .milliseconds(500))
            #expect(kill(v2.pid, SIGKILL) == 0)
            let rolledBack = await eventually(timeout: 60) {
                let st = try s.status()
                return st.instances.contains { $0.role == "primary" && $0.id == v1.id && $0.phase == "live" }
            }
            #expect(rolledBack, "the previous primary did not take over: \(String(describing: try? s.status()))")
            try await Task.sleep(for: .milliseconds(500))
            let report = try await load.stop()
            let after = try s.status()
            #expect(after.version == "1.0.0")
            #expect(after.probation == nil)
            #expect(try s.discrepancies().recent.contains { $0.kind == .transfer && $0.command == "ROLLBACK" })
            #expect(report.replyOrderViolations == 0)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10)); errors \(report.errorSamples)")
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(await s.stop() == 0)
        }
    }
}
