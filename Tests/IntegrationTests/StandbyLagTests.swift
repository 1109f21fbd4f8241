import Foundation
import Testing
import UnderstudyDemo
import UnderstudyWire

@testable import UnderstudySupervisor

extension EndToEnd {
    @Suite("A standby that stays hot")
    struct StandbyLagTests {
        @Test("--max-standby-lag-ms: intake is throttled while the shadow lags, released after; nothing lost, no error")
        func throttle() async throws {
            let dir = try TempDirectory("standby-lag")
            defer { dir.remove() }
            // A limit of 1 ms engages the throttle under any load: the mechanism must slow clients, never fail them.
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--max-standby-lag-ms", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let load = Load(port: s.port, clients: 4, pipeline: 16)
            try await Task.sleep(for: .milliseconds(2000))
            let report = try await load.stop()
            #expect(report.acknowledgedIncrements.values.reduce(0, +) > 0)
            #expect(report.errors == 0, "\(report.errorSamples)")
            let engaged = try s.status().intakeThrottleEngagements
            #expect(engaged > 0, "the throttle never engaged with a 1 ms limit")
            // Released once the load stops and the shadow catches up.
            let released = await eventually(timeout: 30) { !(try s.status().intakeThrottled) }
            #expect(released)
            let problems = try await counterProblems(port: s.port, acknowledged: report.acknowledgedIncrements, exact: true)
            #expect(problems.isEmpty, "\(problems.prefix(10))")
            #expect(await s.stop() == 0)
        }

        @Test("after a failover far from the last snapshot, the new shadow starts from a snapshot taken then, not the old one")
        func freshSnapshotForNewShadow() async throws {
            let dir = try TempDirectory("fresh-snapshot")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            // 60 000 writes: more than a new shadow should replay, fewer than the schedule's 200 000 between snapshots.
            try await io {
                let c = try s.client()
                for batch in 0..<60 {
                    _ = try c.pipeline((0..<1000).map { ["SET", "fresh:\(batch * 1000 + $0)", "v\(batch)"] })
                }
            }
            let before = try s.status()
            #expect(before.snapshotSequence + 50_000 < before.lastSequence, "a scheduled snapshot already covers the writes")
            let primary = try #require(try s.primary())
            #expect(kill(primary.pid, SIGKILL) == 0)
            let promoted = await eventually(timeout: 30) { try s.primary().map { $0.id != primary.id } ?? false }
            #expect(promoted)
            #expect(await s.waitForLiveShadow())
            let after = try s.status()
            #expect(after.snapshotSequence >= before.lastSequence, "the new shadow restored from the snapshot at \(after.snapshotSequence)")
            let c = try s.client()
            #expect(text(try c.call("GET", "fresh:59999")) == "v59")
            #expect(text(try c.call("GET", "fresh:0")) == "v0")
            #expect(await s.stop() == 0)
        }
    }
}
