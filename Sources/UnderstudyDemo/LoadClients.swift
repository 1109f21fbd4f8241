import Foundation
import Synchronization

/// The client threads of a load generator (RESP or HTTP): started together, stopped together, each returning its
/// own report.
final class LoadClients<Report: Sendable>: Sendable {
    let count: Int
    private let stopFlag = Atomic<Bool>(false)
    private let results = Mutex<[Report]>([])
    private let started = Mutex<Date?>(nil)
    private let finished = Atomic<Int>(0)

    init(count: Int) { self.count = count }

    /// The clients have been asked to stop.
    var stopping: Bool { stopFlag.load(ordering: .relaxed) }

    /// Milliseconds since ``start(_:)``.
    var elapsedMillis: Double {
        started.withLock { $0.map { Date().timeIntervalSince($0) * 1000 } ?? 0 }
    }

    /// Starts `count` threads, each running `client(index, startTime)` until it sees ``stopping``.
    func start(_ client: @escaping @Sendable (Int, Date) -> Report) {
        let t0 = Date()
        started.withLock { $0 = t0 }
        for index in 0..<count {
            let thread = Thread { [self] in
                let report = client(index, t0)
                self.results.withLock { $0.append(report) }
                self.finished.add(1, ordering: .sequentiallyConsistent)
            }
            thread.start()
        }
    }

    /// Asks the clients to stop, waits for all, and returns their reports and the seconds since the start.
    func stop() -> (reports: [Report], seconds: Double) {
        stopFlag.store(true, ordering: .sequentiallyConsistent)
        while finished.load(ordering: .sequentiallyConsistent) < count { usleep(1000) }
        let t0 = started.withLock { $0 } ?? Date()
        return (results.withLock { $0 }, Date().timeIntervalSince(t0))
    }
}

/// A load report's record of the gaps its clients saw between replies.
public protocol ClientGapRecord {
    /// (when the gap ended, in milliseconds since the load started; how long it was, in milliseconds).
    var gaps: [(Double, Double)] { get }
}

extension ClientGapRecord {
    /// The longest gap whose end falls in [from, to) milliseconds since the load started.
    public func longestGap(fromMillis: Double, toMillis: Double) -> Double {
        gaps.filter { $0.0 >= fromMillis && $0.0 < toMillis }.map(\.1).max() ?? 0
    }
}
