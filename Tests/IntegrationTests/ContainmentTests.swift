import Foundation
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudyJournal
import UnderstudyWire

@testable import UnderstudySupervisor

/// kv-v2 in the deliberately broken `poison` mode: `SET poison:crash:…` traps, `SET poison:hang:…` never returns.
let poisonFlags = ["--env", "UNDERSTUDY_KV_BROKEN=poison", "--arg=--i-know-this-is-broken"]

/// Sends one command on a fresh connection; returns the reply (or the error text) and the seconds it took.
func timedCall(port: Int, _ args: [String], timeoutSeconds: Int = 60) async -> (String, Double) {
    let started = Date()
    let reply: String
    do {
        let value = try await io {
            let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: timeoutSeconds)
            return try c.call(args)
        }
        reply = text(value) ?? value.display
    } catch {
        reply = "client error: \(error)"
    }
    return (reply, Date().timeIntervalSince(started))
}

extension EndToEnd {
    @Suite("Containment")
    struct ContainmentIntegrationTests {
        @Test("poison: a crash, a hang, a crash — each quarantined, every other client served, nothing lost; a restart skips them; a SIGKILLed supervisor leaves no worker")
        func poisonCrashHangCrash() async throws {
            let dir = try TempDirectory("poison")
            defer { dir.remove() }
            let data = dir.path + "/data"
            let deadlineMillis = 1500
            let flags = ["--fsync", "always", "--request-deadline-ms", "\(deadlineMillis)"] + poisonFlags
            let s = try await SupervisorProcess.start(service: Binaries.kv2, dataDirectory: data, arguments: flags)
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 3)
            try await Task.sleep(for: .milliseconds(500))

            var sequences: [UInt64] = []
            for (n, poison) in ["poison:crash:1", "poison:hang:1", "poison:crash:2"].enumerated() {
                let (reply, seconds) = await timedCall(port: s.port, ["SET", poison, "x"])
                #expect(reply.hasPrefix("ERR request quarantined: "), "\(poison): \(reply)")
                #expect(seconds <= Double(deadlineMillis) / 1000 + 1, "\(poison): the error reply took \(seconds) s")
                if let open = reply.range(of: "(sequence "), let seq = UInt64(reply[open.upperBound...].prefix { $0.isNumber }) {
                    sequences.append(seq)
                }
                if poison.contains("hang") { #expect(reply.contains("deadline"), "\(reply)") }
                if poison.contains("crash") { #expect(reply.contains("crashed"), "\(reply)") }
                // The standby took over; a new one is replaying before the next poison.
                #expect(await s.waitForLiveShadow(), "no live shadow after poison \(n + 1)")
                // Clients other than the poison's are served meanwhile: a plain command answers.
                let (plain, _) = await timedCall(port: s.port, ["SET", "after:\(n)", "ok"])
                #expect(plain == "OK")
            }
            try await Task.sleep(for: .milliseconds(300))
            let report = try await load.stop()
            #expect(report.acknowledgedIncrements.values.reduce(0, +) > 0)
            #expect(report.errors == 0, "the INCR clients saw errors: \(report.errorSamples)")
            #expect(report.longestGapMillis <= Double(deadlineMillis) + 1000, "longest client gap \(report.longestGapMillis) ms")
            var problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")

            // Seen everywhere: status, /quarantine, the metric, the discrepancy log.
            let status = try s.status()
            #expect(status.quarantined.count == 3)
            #expect(status.quarantined.map(\.sequence) == sequences)
            #expect(status.quarantined.allSatisfy { $0.command == "SET" && !$0.reason.isEmpty })
            let listed = try s.admin.get("/quarantine").decode([QuarantineEntry].self)
            #expect(listed.map(\.sequence) == sequences)
            let metrics = try s.admin.get("/metrics").text
            #expect(metrics.contains("understudy_quarantined_inputs_total 3"), "\(metrics.split(separator: "\n").filter { $0.contains("quarantin") })")
            let logged = try s.discrepancies().recent.filter { $0.kind == .quarantine }
            #expect(logged.count == 3)
            #expect(logged.allSatisfy { $0.version == "2.0.0" }, "\(logged.map(\.version))")
            #expect(status.quarantined.allSatisfy { $0.version == "2.0.0" })
            let human = try await understudy(["status"] + s.cliTarget)
            #expect(human.stdout.contains("quarantined inputs"), "\(human.stdout)")

            // A restart on the same data does not replay them: no worker dies, the state is intact.
            #expect(await s.stop() == 0)
            let again = try await SupervisorProcess.start(service: Binaries.kv2, dataDirectory: data, arguments: flags, name: "restart")
            defer { again.cleanup() }
            #expect(await again.waitForLiveShadow())
            let restarted = try again.status()
            #expect(restarted.workerRestarts == 0, "a worker died on restart: \(again.stderr.suffix(2000))")
            #expect(restarted.quarantined.map(\.sequence) == sequences)
            problems = try await counterProblems(port: again.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            let (poisonKey, _) = await timedCall(port: again.port, ["EXISTS", "poison:crash:1"])
            #expect(poisonKey == "(integer) 0", "\(poisonKey)")

            // A SIGKILLed supervisor leaves no worker behind, even one stuck in a handler.
            let workers = restarted.instances.map(\.pid)
            #expect(!workers.isEmpty)
            await again.kill9()
            let gone = await eventually(timeout: 1.0, every: 0.02) { workers.allSatisfy { !isAlive($0) } }
            #expect(gone, "workers still alive 1 s after the supervisor's SIGKILL: \(workers.filter(isAlive))")
        }

        @Test("a SIGKILLed supervisor takes a worker stuck in a handler with it")
        func stuckWorkerDiesWithSupervisor() async throws {
            let dir = try TempDirectory("stuck-worker")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(
                service: Binaries.kv2, dataDirectory: dir.path + "/data", arguments: ["--request-deadline-ms", "600000"] + poisonFlags)
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let primary = try #require(try s.primary())
            // The primary hangs in the handler (a CPU loop); the deadline is ten minutes away.
            let client = Task { await timedCall(port: s.port, ["SET", "poison:hang:stuck", "x"], timeoutSeconds: 30) }
            try await Task.sleep(for: .milliseconds(500))
            #expect(isAlive(primary.pid))
            let workers = try s.status().instances.map(\.pid)
            await s.kill9()
            let gone = await eventually(timeout: 1.0, every: 0.02) { workers.allSatisfy { !isAlive($0) } }
            #expect(gone, "workers still alive 1 s after the supervisor's SIGKILL: \(workers.filter(isAlive))")
            _ = await client.value
        }

        @Test("an outside SIGKILL of the primary mid-input is retried once on the standby; a second death quarantines the input")
        func outsideKillRetriedOnce() async throws {
            let dir = try TempDirectory("outside-kill")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(
                service: Binaries.kv2, dataDirectory: dir.path + "/data",
                arguments: ["--fsync", "always", "--request-deadline-ms", "600000"] + poisonFlags)
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 2)
            // An input the primary is still executing (it spins): killing the primary from outside blames nothing yet.
            let client = Task { await timedCall(port: s.port, ["SET", "poison:hang:victim", "x"], timeoutSeconds: 60) }
            try await Task.sleep(for: .milliseconds(500))
            let first = try #require(try s.primary())
            #expect(kill(first.pid, SIGKILL) == 0)
            // The standby took over and retries the input (it spins too): not quarantined.
            let retried = await eventually(timeout: 30) {
                guard let p = try s.primary(), p.id != first.id else { return false }
                return true
            }
            #expect(retried)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try s.status().quarantined.isEmpty, "quarantined after one outside kill")
            let second = try #require(try s.primary())
            #expect(second.id != first.id)
            #expect(kill(second.pid, SIGKILL) == 0)
            let (reply, _) = await client.value
            #expect(reply.hasPrefix("ERR request quarantined: two instances died"), "\(reply)")
            #expect(await s.waitForLiveShadow())
            let report = try await load.stop()
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: report.errors == 0)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(try s.status().quarantined.count == 1)
            #expect(await s.stop() == 0)
        }

        @Test("the primary SIGKILLed during the recovery replay: its successor finishes the recovery with every write (the supervisor used to overflow its stack)")
        func primaryKilledDuringRecoveryReplay() async throws {
            let dir = try TempDirectory("recovery-kill")
            defer { dir.remove() }
            let data = dir.path + "/data"
            // Every input takes ~2 ms in the slow mode, so the replay of `writes` records lasts seconds.
            let writes = 2500
            let flags = ["--fsync", "always", "--env", "UNDERSTUDY_KV_BROKEN=slow", "--arg=--i-know-this-is-broken"]
            let first = try await SupervisorProcess.start(service: Binaries.kv2, dataDirectory: data, arguments: flags)
            defer { first.cleanup() }
            let client = try first.client(timeoutSeconds: 60)
            for batch in stride(from: 0, to: writes, by: 100) {
                let replies = try client.pipeline(Array(repeating: ["INCR", "n"], count: min(100, writes - batch)))
                #expect(replies.last == .integer(Int64(batch + replies.count)))
            }
            // No final snapshot: the next start replays every write.
            await first.kill9()

            let child = try SupervisorProcess.startChild(service: Binaries.kv2, dataDirectory: data, arguments: flags)
            var replaying: Int32?
            let started = await eventually(timeout: 30, every: 0.01) {
                replaying = childPids(of: child.pid).first(where: isWorker)
                return replaying != nil
            }
            let primary = try #require(replaying, "no worker started: \(started)")
            // Well inside the replay (it needs ≥ 5 s at 2 ms an input).
            try await Task.sleep(for: .milliseconds(1500))
            #expect(kill(primary, SIGKILL) == 0)
            let second = try await SupervisorProcess.awaitReady(child, dataDirectory: data)
            defer { second.cleanup() }
            #expect(second.stderr.contains("instance died"), "the kill did not land during the recovery")
            #expect(try second.client().call("GET", "n") == .bulk(Array("\(writes)".utf8)))
            #expect(try second.primary().map { $0.pid != primary } == true)
            #expect(await second.stop() == 0)
        }

        @Test("--fsync everysec: 20 SIGKILLs of the supervisor under INCR load lose no acknowledged write")
        func everysecKills() async throws {
            let dir = try TempDirectory("everysec-kills")
            defer { dir.remove() }
            let data = dir.path + "/data"
            var acknowledged: [String: Int] = [:]
            for round in 0..<20 {
                let s = try await SupervisorProcess.start(
                    dataDirectory: data, arguments: ["--fsync", "everysec", "--no-shadow"], name: "everysec-\(round)")
                defer { s.cleanup() }
                // Everything acknowledged in earlier rounds survived the kills.
                let problems = try await counterProblems(port: s.port, acknowledged: acknowledged, exact: false)
                #expect(problems.isEmpty, "round \(round): \(problems.prefix(10))")
                let load = Load(port: s.port, clients: 2, counters: 8, prefix: "r\(round)")
                try await Task.sleep(for: .milliseconds(Int.random(in: 200...600)))
                await s.kill9()
                let report = try await load.stop()
                s.cleanup()
                for (k, v) in report.acknowledgedIncrements { acknowledged[k, default: 0] += v }
            }
            #expect(acknowledged.values.reduce(0, +) > 0)
            let last = try await SupervisorProcess.start(dataDirectory: data, arguments: ["--no-shadow"], name: "everysec-final")
            defer { last.cleanup() }
            let problems = try await counterProblems(port: last.port, acknowledged: acknowledged, exact: false)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await last.stop() == 0)
        }

        @Test("shadows killed from outside, again and again, are replaced every time: the role is never given up")
        func outsideShadowKillsDoNotCount() async throws {
            let dir = try TempDirectory("shadow-kills")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let load = Load(port: s.port, clients: 2)
            for round in 0..<(RestartPolicy().maxRestarts + 3) {
                #expect(await s.waitForLiveShadow(), "no live shadow before kill \(round + 1): \(String(describing: try? s.status().givenUpRoles))")
                let shadow = try #require(try s.status().instances.first { $0.role == "shadow" })
                #expect(kill(shadow.pid, SIGKILL) == 0)
                _ = await eventually(timeout: 10) { !(try s.status().instances.contains { $0.id == shadow.id }) }
            }
            #expect(await s.waitForLiveShadow())
            #expect(try s.status().givenUpRoles.isEmpty)
            let report = try await load.stop()
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(await s.stop() == 0)
        }

        @Test("a worker that dies at every start is restarted with back-off, then given up and reported — no tight loop")
        func restartIntensity() async throws {
            let dir = try TempDirectory("intensity")
            defer { dir.remove() }
            // The primary starts; every shadow dies in its restore (crash-in-restore breaks only restores of a snapshot),
            // so use a wrapper that fails for every instance after the first.
            let marker = dir.path + "/started-once"
            let wrapper = dir.path + "/flaky-kv"
            try """
                #!/bin/sh
                if [ -e "\(marker)" ]; then exit 3; fi
                touch "\(marker)"
                exec "\(Binaries.kv1)" "$@"
                """.write(toFile: wrapper, atomically: true, encoding: .utf8)
            chmod(wrapper, 0o755)
            let s = try await SupervisorProcess.start(service: wrapper, dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let gaveUp = await eventually(timeout: 60) { try s.status().givenUpRoles.contains("shadow") }
            #expect(gaveUp, "the shadow role was not given up: \(s.stderr.suffix(3000))")
            let health = try s.admin.get("/health")
            #expect(health.status == 503)
            #expect(health.text.contains("shadow"))
            // Given up means given up: no more attempts.
            let attempts = s.stderr.components(separatedBy: "could not start a shadow").count - 1
            try await Task.sleep(for: .seconds(2))
            #expect(s.stderr.components(separatedBy: "could not start a shadow").count - 1 == attempts)
            #expect(attempts <= RestartPolicy().maxRestarts + 1, "\(attempts) attempts")
            // The primary still serves.
            let (reply, _) = await timedCall(port: s.port, ["SET", "k", "v"])
            #expect(reply == "OK")
            #expect(await s.stop() == 0)
        }
    }
}
