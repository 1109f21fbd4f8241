import Foundation
import Logging
import Synchronization
import UnderstudyPrediction
import UnderstudyWire

/// What `GET /predictions` shows.
public struct PredictionSnapshot: Codable, Sendable {
    /// The engine's and every baseline's prequential scores.
    public var report: PredictionReport?
    /// Requests expected in the next window.
    public var forecastRequests: Double
    /// Distinct keys expected to be written in the next window.
    public var forecastWriteChurn: Double
    /// The latest calibrated surprise score.
    public var surprise: Double?
    /// Observations processed.
    public var observed: Int
    /// Observations dropped because the queue was full (the request path never waits).
    public var dropped: Int
    /// The engine's current next-key guesses (as text), sent to the primary as prefetch hints.
    public var predictedKeys: [String]
    /// Which predictor the engine currently publishes.
    public var publishedSource: String?
}

/// Runs the prediction engine off the request path: a bounded queue the core loop pushes into
/// (dropping and counting when full) and one thread that observes, learns and publishes.
final class PredictionAdvisor: Sendable {
    struct Item: Sendable {
        var tag: UInt8
        var payload: [UInt8]
        var touched: [[UInt8]]
        var written: [[UInt8]]
        var time: Int64
    }

    struct Shared: Sendable {
        var queue: [Item] = []
        var dropped = 0
        var running = false
        var latest = PredictionSnapshot(
            report: nil, forecastRequests: 0, forecastWriteChurn: 0, surprise: nil, observed: 0, dropped: 0,
            predictedKeys: [], publishedSource: nil)
        var hints: [[UInt8]] = []
    }

    let capacity = 65_536
    private let shared = Mutex(Shared())
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Called on the core loop for every primary result; never blocks.
    func observe(request: ApplyRequest, result: ApplyResult) {
        guard request.tag == InputTag.resp || request.tag == InputTag.respTransaction else { return }
        shared.withLock { s in
            guard s.running else { return }
            if s.queue.count >= capacity {
                s.dropped += 1
                return
            }
            s.queue.append(Item(tag: request.tag, payload: request.payload, touched: result.touched, written: result.written, time: request.time))
        }
    }

    /// The latest surprise score, if the engine has one.
    var currentSurprise: Double? { shared.withLock { $0.latest.surprise } }

    /// The keys the engine expects next (prefetch hints), taken once.
    func takeHints() -> [[UInt8]] {
        shared.withLock { s in
            defer { s.hints = [] }
            return s.hints
        }
    }

    func snapshot() -> PredictionSnapshot { shared.withLock { $0.latest } }

    func start() {
        shared.withLock { $0.running = true }
        let thread = Thread { [self] in self.loop() }
        thread.name = "understudy-prediction"
        thread.start()
    }

    func stop() {
        shared.withLock { $0.running = false }
    }

    private func loop() {
        let engine = PredictionEngine(configuration: .init())
        var observed = 0
        var lastPublish = Date()
        while true {
            let (batch, running) = shared.withLock { s -> ([Item], Bool) in
                let b = s.queue
                s.queue = []
                return (b, s.running)
            }
            if !running { return }
            if batch.isEmpty {
                usleep(2000)
                continue
            }
            // Bounded cost: the engine gets at most a fifth of one core. What arrives while it rests is
            // dropped and counted (observing a sample of the stream is enough for an advisor).
            let busyStart = Date()
            let budget = batch.count > 2000 ? Array(batch.suffix(2000)) : batch
            if budget.count < batch.count { shared.withLock { $0.dropped += batch.count - budget.count } }
            for item in budget {
                let command: String
                var keys: [[UInt8]] = []
                if item.tag == InputTag.resp, let args = try? CommandCodec.decode(item.payload), let first = args.first {
                    command = String(decoding: first, as: UTF8.self).uppercased()
                    if args.count > 1 { keys = [args[1]] }
                } else {
                    command = "EXEC"
                }
                let touchedKeys = item.touched.isEmpty ? keys : item.touched
                engine.observe(Observation(
                    command: command, keys: keys.isEmpty ? Array(touchedKeys.prefix(1)) : keys, touchedKeys: touchedKeys,
                    timeMillis: item.time, isWrite: !item.written.isEmpty))
                observed += 1
            }
            let busy = Date().timeIntervalSince(busyStart)
            usleep(UInt32(min(0.5, max(0.002, busy * 4)) * 1_000_000))
            if Date().timeIntervalSince(lastPublish) > 0.25 {
                lastPublish = Date()
                let report = engine.report()
                let forecast = engine.loadForecast
                let next = engine.predictNextKeys(count: 5)
                let surprise = engine.lastSurprise
                let source = engine.publishedSource
                let total = observed
                shared.withLock { s in
                    s.latest = PredictionSnapshot(
                        report: report, forecastRequests: forecast.requestsNextWindow,
                        forecastWriteChurn: forecast.writeChurnNextWindow, surprise: surprise.isFinite ? surprise : nil,
                        observed: total, dropped: s.dropped,
                        predictedKeys: next.map { String(decoding: $0, as: UTF8.self) }, publishedSource: source)
                    s.hints = next
                }
            }
        }
    }
}

