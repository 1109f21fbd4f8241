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
    }
}
