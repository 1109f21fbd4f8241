import Testing
@testable import UnderstudyPrediction

@Suite("Prediction engine: bounded keys")
struct KeyGenerationTests {
    /// The index `i` of a key named `d<i>` (nil for any other key).
    static func index(_ key: [UInt8]) -> Int? {
        guard key.first == UInt8(ascii: "d") else { return nil }
        return Int(String(decoding: key.dropFirst(), as: UTF8.self))
    }

    @Test("300 000 distinct keys with maximumKeys 10 000: bounded, 29 generations, predictions from the current one")
    func distinctKeys() {
        let maximum = 10_000, count = 300_000
        let engine = PredictionEngine(configuration: .init(maximumKeys: maximum))
        var worst = 0
        var stale = 0
        for i in 0..<count {
            engine.observe(command: i % 3 == 0 ? "SET" : "GET", key: "d\(i)", timeMillis: Int64(i), isWrite: i % 3 == 0)
            // Key d<j> is interned in generation j / maximum; the current generation holds d<first>…d<i>.
            let first = i / maximum * maximum
            for key in engine.predictNextKeys(count: i % 1000 == 0 ? 25 : 5) {
                guard let j = Self.index(key), j >= first, j <= i else { stale += 1; continue }
            }
            if i % 997 == 0 || i % maximum <= 1 || i % maximum == maximum - 1 {
                let report = engine.report()
                worst = max(worst, report.internedKeys)
                #expect(report.internedKeys == i - first + 1)
                #expect(report.keyGenerations == i / maximum)
            }
        }
        #expect(stale == 0)
        #expect(worst == maximum)
        let report = engine.report()
        #expect(report.keyGenerations == count / maximum - 1)
        #expect(report.internedKeys == maximum)
        #expect(report.observations == count)
        #expect(report.scored == count - 1)
        #expect(report.seenShare == 0)
    }

    @Test("a 50-key cycle is relearned after a burst of distinct keys forced several generations")
    func relearnsCycle() {
        let engine = PredictionEngine(configuration: .init(maximumKeys: 1000))
        var time: Int64 = 0
        func cycle(_ count: Int) {
            for i in 0..<count {
                time += 1
                engine.observe(command: i % 7 == 0 ? "SET" : "GET", key: "k\(i % 50)", timeMillis: time, isWrite: i % 7 == 0)
            }
        }
        cycle(3000)
        for i in 0..<5_500 {
            time += 1
            engine.observe(command: "SET", key: "burst\(i)", timeMillis: time, isWrite: true)
        }
        let afterBurst = engine.report()
        #expect(afterBurst.keyGenerations == 5)
        cycle(1000)
        let split = engine.report()
        #expect(split.keyGenerations == afterBurst.keyGenerations)
        cycle(2000)
        let final = engine.report()
        func later(_ name: String) -> Double {
            let f = final.score(name)!, s = split.score(name)!
            return Double(f.top1Hits - s.top1Hits) / Double(f.scored - s.scored)
        }
        #expect(later("engine") >= 0.99)
        #expect(later("reranker") >= 0.99)
        #expect(later("markov1") >= 0.99)
        #expect(engine.predictNextKeys(count: 1) == [Array("k0".utf8)])
    }

    @Test("relearns even when a generation starts in the middle of the cycle")
    func generationInsideCycle() {
        // 40 burst keys plus the 50 cycle keys pass 64: a generation starts after 24 cycle keys.
        let engine = PredictionEngine(configuration: .init(maximumKeys: 64))
        var time: Int64 = 0
        for i in 0..<40 {
            time += 1
            engine.observe(command: "SET", key: "burst\(i)", timeMillis: time, isWrite: true)
        }
        var hits = 0, scored = 0
        for i in 0..<4000 {
            time += 1
            if i >= 2000 {
                scored += 1
                if engine.predictNextKeys(count: 1) == [Array("k\(i % 50)".utf8)] { hits += 1 }
            }
            engine.observe(command: "GET", key: "k\(i % 50)", timeMillis: time, isWrite: false)
        }
        #expect(engine.report().keyGenerations == 1)
        #expect(engine.report().internedKeys == 50)
        #expect(Double(hits) / Double(scored) >= 0.99)
    }

    @Test("tiny maximumKeys with more keys than it in rotation: every prediction is a key of the generation")
    func tinyBound() {
        let engine = PredictionEngine(configuration: .init(maximumKeys: PredictionEngineConfiguration.minimumKeys))
        var rng = SplitMix64(seed: 3)
        var generation: Set<[UInt8]> = []
        var generations = 0
        for i in 0..<20_000 {
            let key = Array("r\(i % 4 == 0 ? rng.nextInt(40) : i % 20)".utf8)
            engine.observe(Observation(command: "GET", keys: [key], timeMillis: Int64(i), isWrite: false))
            let report = engine.report()
            if report.keyGenerations != generations {
                generations = report.keyGenerations
                generation = []
            }
            generation.insert(key)
            #expect(report.internedKeys == generation.count)
            #expect(report.internedKeys <= PredictionEngineConfiguration.minimumKeys)
            let predicted = engine.predictNextKeys(count: i % 2 == 0 ? 3 : 12)
            #expect(predicted.allSatisfy(generation.contains), "step \(i): \(predicted) not in generation")
        }
        #expect(generations > 100)
    }

    @Test("an observation whose written keys start a generation keeps only current ids")
    func generationWhileInterningWrittenKeys() {
        let maximum = PredictionEngineConfiguration.minimumKeys
        let engine = PredictionEngine(configuration: .init(maximumKeys: maximum))
        var seen: Set<[UInt8]> = []
        for i in 0..<2000 {
            let key = Array("main\(i % 3)".utf8)
            // 5 new written keys each time (and once in a while more than `maximumKeys`).
            let written = (0..<(i % 50 == 49 ? 3 * maximum : 5)).map { Array("w\(i).\($0)".utf8) }
            engine.observe(Observation(
                command: "MSET", keys: [key], touchedKeys: written, timeMillis: Int64(i), isWrite: true))
            seen.insert(key)
            let report = engine.report()
            #expect(report.internedKeys <= maximum)
            #expect(report.observations == i + 1)
            // The observed key was learned in the current generation: the last-value table knows it.
            let predicted = engine.predictNextKeys(count: 8)
            #expect(!predicted.isEmpty)
            #expect(predicted.allSatisfy(seen.contains), "step \(i): \(predicted)")
        }
        #expect(engine.report().keyGenerations > 100)
    }

    @Test("maximumKeys above the keys seen changes nothing: same scores, no generation")
    func largeBoundIsIdentical() {
        for workload in SyntheticWorkload.allCases {
            let a = replay(workload, count: 4000, splitAt: 2000)
            let b = replay(workload, count: 4000, splitAt: 2000, configuration: .init(maximumKeys: 1 << 40))
            #expect(a.final.predictors == b.final.predictors, "\(workload)")
            #expect(a.final.keyGenerations == 0)
            #expect(b.final.keyGenerations == 0)
            #expect(a.final.internedKeys == b.final.internedKeys)
            #expect(a.engine.predictNextKeys(count: 10) == b.engine.predictNextKeys(count: 10))
        }
    }

    @Test("the order-2 table keeps at most maximumContexts contexts, then starts over and relearns")
    func markov2Contexts() {
        let m2 = Markov2Predictor(maximumContexts: 64)
        var rng = SplitMix64(seed: 5)
        var most = 0
        // A random stream over 100 keys meets thousands of pairs.
        for _ in 0..<10_000 {
            m2.observe(rng.nextInt(100), isWrite: false)
            most = max(most, m2.contexts)
        }
        #expect(most == 64)
        #expect(m2.contextResets > 50)
        // A 20-key cycle has 20 contexts: after at most one more start-over it is predicted exactly.
        var hits = 0
        for i in 0..<400 {
            if i >= 200 && m2.predict(1) == [i % 20] { hits += 1 }
            m2.observe(i % 20, isWrite: false)
        }
        #expect(hits == 200)
        #expect(m2.contexts <= 64)
    }

    @Test("the engine bounds its order-2 contexts by twice maximumKeys")
    func engineContexts() {
        let maximum = 64
        let engine = PredictionEngine(configuration: .init(maximumKeys: maximum))
        var rng = SplitMix64(seed: 9)
        var most = 0
        for i in 0..<20_000 {
            engine.observe(command: "GET", key: "r\(rng.nextInt(maximum))", timeMillis: Int64(i), isWrite: false)
            most = max(most, engine.markov2.contexts)
        }
        #expect(engine.report().keyGenerations == 0)
        #expect(most == 2 * maximum)
        #expect(engine.markov2.contextResets > 10)
        #expect(PredictionEngine.maximumContexts(.init(maximumKeys: .max)) == .max)
    }

    @Test("maximumKeys below the minimum is refused")
    func minimum() async {
        await #expect(processExitsWith: .failure) {
            _ = PredictionEngine(configuration: .init(maximumKeys: PredictionEngineConfiguration.minimumKeys - 1))
        }
    }
}
