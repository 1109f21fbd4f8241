import Foundation
import Logging
import NIOCore
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
    /// Prefetch hint sets sent to the primary.
    public var prefetchHintsSent: Int = 0
    /// Of the observed requests that arrived while a hint set was out, the share whose key was in it.
    public var prefetchHitRate: Double?
    /// The mean calibrated surprise (z-score) of the observations since the previous publication.
    public var surpriseMean: Double?
    /// The request-rate forecast for the next window, corrected for sampling (requests per second).
    public var forecastRequestsPerSecond: Double = 0
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
    }

    /// Observations queued at most between two batches (a batch learns from at most 2 000; the rest would be dropped
    /// after costing the request path a copy).
    let capacity = 4_096
    /// Keys per prefetch hint set.
    let hintSize = 5
    /// The least time between two hint sets sent to the primary while hints are landing…
    let hintInterval = 0.001
    /// …and while they are not (hit rate under `usefulHitRate` over the last window): each hint set costs the
    /// event loop and the primary a wake-up, which on an unpredictable stream buys nothing.
    let idleHintInterval = 0.25
    let usefulHitRate = 0.02
    let hitWindow = 1000
    private let shared = Mutex(Shared())
    let logger: Logger
    /// Delivers a hint set toward the primary (set once before ``start()``; called on the advisor's thread).
    private let hintSink: (@Sendable ([[UInt8]]) -> Void)?
    /// The prediction engine's load window, in seconds.
    private let loadWindowSeconds: Double

    init(logger: Logger, hintSink: (@Sendable ([[UInt8]]) -> Void)? = nil) {
        self.logger = logger
        self.hintSink = hintSink
        self.loadWindowSeconds = Double(PredictionEngineConfiguration().loadWindowMillis) / 1000
    }

    /// Takes a batch of sampled observations from the core loop (one lock per loop turn); `skipped` were not
    /// sampled and count as dropped, so forecasts are scaled back to the whole stream.
    func enqueue(_ items: [Item], skipped: Int) {
        shared.withLock { s in
            guard s.running else { return }
            s.dropped += skipped
            let room = max(0, capacity - s.queue.count)
            if items.count > room { s.dropped += items.count - room }
            s.queue.append(contentsOf: items.prefix(room))
        }
    }

    /// One in how many primary results the core loop hands over: raised while the engine drops what it gets,
    /// lowered while it keeps up, so the request path pays for no observation the engine would not use.
    let sampleStride = Atomic<Int>(1)

    /// The latest mean surprise score, if the engine has one.
    var currentSurprise: Double? { shared.withLock { $0.latest.surpriseMean ?? $0.latest.surprise } }

    /// The forecast request rate for the next window (requests/s, corrected for sampling), if there is one.
    var forecastRequestsPerSecond: Double? {
        shared.withLock { $0.latest.observed > 0 ? $0.latest.forecastRequestsPerSecond : nil }
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
        var lastHint = Date.distantPast
        var hintSet: Set<[UInt8]> = []
        var hintsSent = 0
        var hintChecked = 0
        var hintHits = 0
        var windowChecked = 0
        var windowHits = 0
        var hintsLanding = true
        var surpriseSum = 0.0
        var surpriseCount = 0
        var publishedObserved = -1
        var surpriseMean: Double?
        func publish() {
            lastPublish = Date()
            publishedObserved = observed
            let report = engine.report()
            let forecast = engine.loadForecast
            let next = engine.predictNextKeys(count: hintSize)
            let surprise = engine.lastSurprise
            if surpriseCount > 0 { surpriseMean = surpriseSum / Double(surpriseCount) }
            surpriseSum = 0
            surpriseCount = 0
            let source = engine.publishedSource
            let total = observed
            let sent = hintsSent
            let hitRate = hintChecked > 0 ? Double(hintHits) / Double(hintChecked) : nil
            let windowSeconds = loadWindowSeconds
            shared.withLock { s in
                // The engine sees a sample of the stream; scale its forecast back to the whole stream.
                let scale = total > 0 ? Double(total + s.dropped) / Double(total) : 1
                s.latest = PredictionSnapshot(
                    report: report, forecastRequests: forecast.requestsNextWindow,
                    forecastWriteChurn: forecast.writeChurnNextWindow, surprise: surprise.isFinite ? surprise : nil,
                    observed: total, dropped: s.dropped,
                    predictedKeys: next.map { String(decoding: $0, as: UTF8.self) }, publishedSource: source,
                    prefetchHintsSent: sent, prefetchHitRate: hitRate, surpriseMean: surpriseMean,
                    forecastRequestsPerSecond: forecast.requestsNextWindow * scale / windowSeconds)
            }
        }
        while true {
            let (batch, running) = shared.withLock { s -> ([Item], Bool) in
                let b = s.queue
                s.queue = []
                return (b, s.running)
            }
            if !running { return }
            if batch.isEmpty {
                // Publish what the last observations changed even when the stream goes quiet.
                if observed != publishedObserved && Date().timeIntervalSince(lastPublish) > 0.25 { publish() }
                usleep(2000)
                continue
            }
            // Bounded cost: the engine gets at most a tenth of one core (a fifth cost ~9 % of non-pipelined
            // throughput on two cores). What arrives while it rests is
            // dropped and counted (observing a sample of the stream is enough for an advisor).
            let busyStart = Date()
            let budget = batch.count > 2000 ? Array(batch.suffix(2000)) : batch
            if budget.count < batch.count { shared.withLock { $0.dropped += batch.count - budget.count } }
            // Sample less on the loop while the engine cannot keep up; more while it has room.
            let stride = sampleStride.load(ordering: .relaxed)
            if budget.count < batch.count {
                sampleStride.store(min(stride * 2, 1024), ordering: .relaxed)
            } else if batch.count < 500 && stride > 1 {
                sampleStride.store(stride / 2, ordering: .relaxed)
            }
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
                let key = keys.isEmpty ? Array(touchedKeys.prefix(1)) : keys
                // Was this request's key among the hints the primary had been sent?
                if !hintSet.isEmpty, let k = key.first {
                    hintChecked += 1
                    windowChecked += 1
                    if hintSet.contains(k) {
                        hintHits += 1
                        windowHits += 1
                    }
                    if windowChecked == hitWindow {
                        hintsLanding = Double(windowHits) / Double(windowChecked) >= usefulHitRate
                        windowChecked = 0
                        windowHits = 0
                    }
                }
                engine.observe(Observation(
                    command: command, keys: key, touchedKeys: touchedKeys,
                    timeMillis: item.time, isWrite: !item.written.isEmpty))
                if engine.lastSurprise.isFinite {
                    surpriseSum += engine.lastSurprise
                    surpriseCount += 1
                }
                observed += 1
            }
            // Prefetch hints: the keys expected next, sent when they change (at most every `hintInterval`).
            if let hintSink, Date().timeIntervalSince(lastHint) >= (hintsLanding ? hintInterval : idleHintInterval) {
                let next = engine.predictNextKeys(count: hintSize)
                let nextSet = Set(next)
                if !next.isEmpty && nextSet != hintSet {
                    hintSink(next)
                    hintsSent += 1
                    hintSet = nextSet
                    lastHint = Date()
                }
            }
            let busy = Date().timeIntervalSince(busyStart)
            usleep(UInt32(min(0.5, max(0.002, busy * 9)) * 1_000_000))
            if Date().timeIntervalSince(lastPublish) > 0.25 { publish() }
        }
    }
}

/// The core loop's side of the prediction feed: samples primary results (one in ``PredictionAdvisor/sampleStride``)
/// and hands them to the advisor in one batch per loop turn — no lock and no hand-off per request.
///
/// Loop-bound: `observe` is called only from the request path on the core event loop, and the flush is scheduled
/// on it through NIO's isolated API.
final class PredictionSampler {
    let loop: any EventLoop
    let advisor: PredictionAdvisor
    private var batch: [PredictionAdvisor.Item] = []
    private var skipped = 0
    private var counter = 0
    private var flushScheduled = false

    init(loop: any EventLoop, advisor: PredictionAdvisor) {
        self.loop = loop
        self.advisor = advisor
    }

    /// One primary result (called on the core loop).
    func observe(request: ApplyRequest, result: ApplyResult) {
        guard request.tag == InputTag.resp || request.tag == InputTag.respTransaction else { return }
        counter &+= 1
        let stride = advisor.sampleStride.load(ordering: .relaxed)
        if stride > 1 && counter % stride != 0 {
            skipped += 1
            return
        }
        batch.append(.init(tag: request.tag, payload: request.payload, touched: result.touched, written: result.written, time: request.time))
        if !flushScheduled {
            flushScheduled = true
            loop.assumeIsolated().execute { self.flush() }
        }
    }

    private func flush() {
        flushScheduled = false
        advisor.enqueue(batch, skipped: skipped)
        batch.removeAll(keepingCapacity: true)
        skipped = 0
    }
}
