import Foundation
import NIOCore
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("Containment: who is to blame, and how often to restart")
struct ContainmentTests {
    func death(executing: UInt64?, signal: Int32? = nil, exitStatus: Int32? = nil, killedBy: KillCause? = nil) -> DeathReport {
        DeathReport(reason: "test", executing: executing, signal: signal, exitStatus: exitStatus, killedBySupervisor: killedBy)
    }

    @Test("a death while executing nothing blames nothing, whatever the signal")
    func idleDeath() {
        for signal: Int32? in [nil, SIGKILL, SIGILL, SIGSEGV] {
            #expect(BlameVerdict.judge(death(executing: nil, signal: signal), earlierDeaths: 0) == .noInput)
            #expect(BlameVerdict.judge(death(executing: nil, signal: signal), earlierDeaths: 5) == .noInput)
        }
    }

    @Test("a trap, a crash signal or an exit while executing quarantines the input at once")
    func trapsQuarantine() {
        for signal in [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT] {
            guard case .quarantine(let seq, let reason) = BlameVerdict.judge(death(executing: 42, signal: signal), earlierDeaths: 0) else {
                Issue.record("signal \(signal) did not quarantine")
                continue
            }
            #expect(seq == 42)
            #expect(reason.contains("crashed"))
        }
        guard case .quarantine(41, let reason) = BlameVerdict.judge(death(executing: 41, exitStatus: 3), earlierDeaths: 0) else {
            Issue.record("an exit did not quarantine")
            return
        }
        #expect(reason.contains("status 3"))
    }

    @Test("a kill from outside earns one retry; a second death on the same input quarantines it")
    func outsideKillRetriesOnce() {
        #expect(BlameVerdict.judge(death(executing: 7, signal: SIGKILL), earlierDeaths: 0) == .retry(sequence: 7))
        #expect(BlameVerdict.judge(death(executing: 7, signal: SIGTERM), earlierDeaths: 0) == .retry(sequence: 7))
        guard case .quarantine(7, _) = BlameVerdict.judge(death(executing: 7, signal: SIGKILL), earlierDeaths: 1) else {
            Issue.record("a second outside kill did not quarantine")
            return
        }
        // A crash after a retry is still a crash.
        guard case .quarantine(7, let reason) = BlameVerdict.judge(death(executing: 7, signal: SIGILL), earlierDeaths: 1) else {
            Issue.record("a trap after a retry did not quarantine")
            return
        }
        #expect(reason.contains("crashed"))
        // Not reaped in time: no evidence, one retry.
        #expect(BlameVerdict.judge(death(executing: 9), earlierDeaths: 0) == .retry(sequence: 9))
    }

    @Test("the request deadline's kill quarantines, even though the signal is SIGKILL")
    func deadlineQuarantines() {
        let d = death(executing: 12, signal: SIGKILL, killedBy: .deadline(sequence: 12, millis: 5000))
        guard case .quarantine(12, let reason) = BlameVerdict.judge(d, earlierDeaths: 0) else {
            Issue.record("a deadline kill did not quarantine")
            return
        }
        #expect(reason.contains("5000 ms"))
    }

    @Test("restart back-off doubles from the initial delay and stops at the maximum")
    func backoff() {
        var r = RestartIntensity(policy: RestartPolicy(
            maxRestarts: 10, window: .seconds(60), initialBackoff: .milliseconds(100), maximumBackoff: .milliseconds(1000)))
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var delays: [Int64] = []
        for i in 0..<6 {
            guard case .restart(let d) = r.died(at: t0 + .milliseconds(Int64(i))) else {
                Issue.record("gave up at \(i)")
                return
            }
            delays.append(d.nanoseconds / 1_000_000)
        }
        #expect(delays == [100, 200, 400, 800, 1000, 1000])
    }

    @Test("past N restarts in T the role is given up, and stays given up; restarts outside the window do not count")
    func intensityLimit() {
        var r = RestartIntensity(policy: RestartPolicy(maxRestarts: 3, window: .seconds(10)))
        let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for i in 0..<3 {
            guard case .restart = r.died(at: t0 + .seconds(Int64(i))) else {
                Issue.record("gave up too early at \(i)")
                return
            }
        }
        #expect(r.died(at: t0 + .seconds(3)) == .giveUp(restarts: 3))
        #expect(r.givenUp)
        #expect(r.died(at: t0 + .seconds(100)) == .giveUp(restarts: 0))

        var spaced = RestartIntensity(policy: RestartPolicy(maxRestarts: 3, window: .seconds(10)))
        for i in 0..<20 {
            // One death every 4 s: never more than 3 inside a 10 s window.
            guard case .restart(let d) = spaced.died(at: t0 + .seconds(Int64(4 * i))) else {
                Issue.record("gave up at \(i) though deaths were spaced out")
                return
            }
            #expect(d <= .milliseconds(400))
        }
    }

    @Test("quarantine records round-trip, and garbage is not one")
    func quarantineRecord() {
        let r = QuarantineRecord(sequence: .max, reason: "the primary crashed executing it (SIGILL, a trap) — é")
        #expect(QuarantineRecord(decoding: r.encoded) == r)
        #expect(QuarantineRecord(decoding: []) == nil)
        #expect(QuarantineRecord(decoding: [1, 2, 3]) == nil)
    }

    @Test("the quarantine log survives a reopen and skips a torn last line")
    func quarantineLogPersists() throws {
        let dir = NSTemporaryDirectory() + "quarantine-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = QuarantineLog(directory: dir)
        #expect(log.add(QuarantineEntry(sequence: 5, command: "SET", reason: "trap", instance: 1, time: QuarantineLog.now())))
        #expect(!log.add(QuarantineEntry(sequence: 5, command: "SET", reason: "again", instance: 2, time: QuarantineLog.now())))
        #expect(log.add(QuarantineEntry(sequence: 9, command: "EXEC", reason: "hang", instance: 3, time: QuarantineLog.now())))
        let handle = try #require(FileHandle(forWritingAtPath: dir + "/" + QuarantineLog.fileName))
        handle.seekToEndOfFile()
        handle.write(Data("{\"sequence\": 11, \"comm".utf8))
        try handle.close()
        let reopened = QuarantineLog(directory: dir)
        #expect(reopened.list.map(\.sequence) == [5, 9])
        #expect(reopened.contains(9) && !reopened.contains(11))
        #expect(reopened.entries[5]?.reason == "trap")
    }
}

@Suite("Worker progress file")
struct WorkerProgressTests {
    @Test("started and not finished names the input; finished names none; a missing file names none")
    func progress() throws {
        let path = NSTemporaryDirectory() + "progress-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: WorkerProgress.size))
        defer { unlink(path) }
        #expect(WorkerProgress.executing(path: path) == nil)
        let p = WorkerProgress(path: path)
        p.started(1)
        #expect(WorkerProgress.executing(path: path) == 1)
        p.finished(1)
        #expect(WorkerProgress.executing(path: path) == nil)
        p.started(UInt64.max)
        #expect(WorkerProgress.executing(path: path) == UInt64.max)
        #expect(WorkerProgress.executing(path: path + "-missing") == nil)
        let none = WorkerProgress(path: nil)
        none.started(3)  // a worker started without a supervisor's file: a no-op, not a crash
    }
}

@Suite("Containment: the exit signal decides")
struct BlameSignalTests {
    @Test("a trap is a trap even when the supervisor also sent a SIGKILL before the process was reaped")
    func trapWithSupervisorKill() {
        let d = DeathReport(reason: "x", executing: 3, signal: SIGILL, exitStatus: nil, killedBySupervisor: .supervisor)
        guard case .quarantine(3, let reason) = BlameVerdict.judge(d, earlierDeaths: 0) else {
            Issue.record("a trap with a supervisor kill pending was not quarantined at once")
            return
        }
        #expect(reason.contains("crashed"))
        let k = DeathReport(reason: "x", executing: 3, signal: SIGKILL, exitStatus: nil, killedBySupervisor: .supervisor)
        #expect(BlameVerdict.judge(k, earlierDeaths: 0) == .retry(sequence: 3))
    }
}
