import CUnderstudySystem
import Foundation
import Synchronization
import Testing

@testable import UnderstudyWire

@Suite("Background threads")
struct ThreadPriorityTests {
    /// The nice value of the calling thread, from /proc (field 19 of its stat line).
    static func currentThreadNice() -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return Int(fields[16])
    }

    @Test("the priority helper the snapshot encoder calls lowers its own thread by ten nice levels, and nothing else")
    func encoderThreadIsLowered() async throws {
        #if os(Linux)
        let before = try #require(Self.currentThreadNice())
        let seen = Mutex<(rc: Int32, nice: Int?)?>(nil)
        let done = DispatchSemaphore(value: 0)
        _ = startThread(detached: true) {
            let rc = understudy_lower_current_thread_priority(10)
            seen.withLock { $0 = (rc, Self.currentThreadNice()) }
            done.signal()
        }
        done.wait()
        let result = try #require(seen.withLock { $0 })
        #expect(result.rc == 0)
        #expect(result.nice == min(before + 10, 19))
        #expect(Self.currentThreadNice() == before, "only the new thread is lowered, not the process")
        #endif
    }
}
