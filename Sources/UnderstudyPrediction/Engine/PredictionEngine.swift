#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The online prediction engine: an advisor that predicts next keys, next command class, load,
/// and how surprising each observed transition was.
///
/// Count tables (last value, decayed popularity, Markov order 1, Markov order 2 with back-off,
/// recency) propose up to `maxCandidates` next keys; a small recurrent network (GRU or LSTM)
/// re-ranks them from per-candidate features and its hidden state, trained online (softmax
/// cross-entropy over the candidate set, truncated BPTT, one optimiser step per window).
///
/// Scoring is prequential: before each observation every component's ranking is scored, then it
/// learns. The engine publishes the ranking of whichever component leads on the sliding-window
/// top-1 (the re-ranker keeps ties; a challenger must lead by `switchMargin`), so it is never
/// worse than the best baseline by more than noise.
///
/// Memory is bounded: at most `maximumKeys` distinct keys are interned at once. Interning one more
/// starts a new key generation, which forgets every key id and everything indexed by one (per-key
/// state, count tables, published rankings and candidates) and keeps the rest (network weights and
/// optimiser state, scores, forecasters, command vocabulary); the tables then relearn. The order-2
/// table keeps at most `2 × maximumKeys` contexts (pairs of keys) and starts over past that.
///
/// Not thread-safe: use one engine from one task.
///
/// Stored properties are `@exclusivity(unchecked)`: dynamic exclusivity checks on them were a
/// quarter of `observe` in profiles. That is safe because the class is not `Sendable` (so no two
/// threads can reach one instance) and no method re-enters the engine while it holds an `inout`
/// access to one of its properties (the tables it calls never call back); the compiler's static
/// exclusivity diagnostics still apply.
public final class PredictionEngine {
    /// The configuration it was built with.
    public let configuration: PredictionEngineConfiguration

    // Tables (indexed by key id; replaced by a new key generation).
    @exclusivity(unchecked) private var lastTable = LastValuePredictor()
    @exclusivity(unchecked) private var popularity: PopularityPredictor
    @exclusivity(unchecked) private(set) var markov2: Markov2Predictor
    private var markov1: Markov1Predictor { markov2.order1 }
    @exclusivity(unchecked) private var recency = RecencyPredictor(capacity: PredictionEngine.recencyCapacity)
    private static let recencyCapacity = 32
    private var baselines: [any KeyPredictor] { [lastTable, popularity, markov1, markov2, recency] }

    // Interning.
    @exclusivity(unchecked) private var keyIDs: [[UInt8]: Int] = [:]
    @exclusivity(unchecked) private var keyBytes: [[UInt8]] = []
    @exclusivity(unchecked) private var commandIDs: [String: Int] = [:]
    static let commandVocabulary = 16
    /// `configuration.maximumKeys`.
    private let maximumKeys: Int
    /// Key generations started (each forgot every key id).
    @exclusivity(unchecked) private var keyGenerations = 0

    // Per-key state (indexed by key id).
    @exclusivity(unchecked) private var lastSeenStep: [Int] = []
    @exclusivity(unchecked) private var lastWasWrite: [Bool] = []
    @exclusivity(unchecked) private var candidateStamp: [Int] = []
    @exclusivity(unchecked) private var writtenWindow: [Int64] = []

    // Network.
    private let store: ParameterStore
    private let runner: TruncatedBPTT
    private let featureCount = 16
    private let scorerW: Int
    private let scorerU: Int
    private let commandW: Int
    private let commandB: Int
    private let input: FloatBuffer
    private let features: FloatBuffer
    private let mix: FloatBuffer
    private let hiddenGradient: FloatBuffer
    private let mixGradient: FloatBuffer
    private let hiddenSnapshot: FloatBuffer
    /// The age feature `log1p(age) / 8` for ages below its count (libm's log1p per candidate was
    /// 5 % of `observe`); larger ages are computed.
    private let ageFeature: FloatBuffer
    @exclusivity(unchecked) private var scores: [Float]
    @exclusivity(unchecked) private var probabilities: [Float]
    @exclusivity(unchecked) private var commandProbabilities: [Float]
    @exclusivity(unchecked) private var windowsSinceTraining = 0

    // Candidates and rankings published before the next observation.
    @exclusivity(unchecked) private var candidates: [Int] = []
    @exclusivity(unchecked) private var rerankerOrder: [Int] = []
    @exclusivity(unchecked) private var rankings: [[Int]]  // index 0: re-ranker, 1…5: baselines
    @exclusivity(unchecked) private var scratch: [Int] = []
    @exclusivity(unchecked) private var hasPublished = false
    @exclusivity(unchecked) private var source = 4  // start with markov2 (index in `rankings`)

    // Scores.
    @exclusivity(unchecked) private var engineScore: WindowedScore
    @exclusivity(unchecked) private var componentScores: [WindowedScore]
    private static let componentNames = ["reranker", "last", "popularity", "markov1", "markov2", "recency"]
    @exclusivity(unchecked) private var observations = 0
    @exclusivity(unchecked) private var scored = 0
    @exclusivity(unchecked) private var seenCount = 0
    @exclusivity(unchecked) private var candidateCount = 0
    @exclusivity(unchecked) private var commandHits = 0
    @exclusivity(unchecked) private var commandScored = 0
    @exclusivity(unchecked) private var previousCommand: Int?
    @exclusivity(unchecked) private var previousTime: Int64?
    @exclusivity(unchecked) private var step = 0
    @exclusivity(unchecked) private var publishCount = 0
    @exclusivity(unchecked) private var nanoseconds: UInt64 = 0

    // Surprise.
    @exclusivity(unchecked) private var calibration = RunningCalibration()
    @exclusivity(unchecked) private var missRate = 0.5
    /// The calibrated surprise of the latest observation: the z-score of its negative
    /// log-likelihood (next key and next command under the engine's model) against the running
    /// distribution of past ones. 0 until enough observations were seen.
    @exclusivity(unchecked) public private(set) var lastSurprise: Double = 0
    /// The raw negative log-likelihood (nats) of the latest observation.
    @exclusivity(unchecked) public private(set) var lastSurpriseNegativeLogLikelihood: Double = 0

    // Load.
    @exclusivity(unchecked) private var loadWindow: Int64?
    @exclusivity(unchecked) private var windowRequests = 0
    @exclusivity(unchecked) private var windowChurn = 0
    @exclusivity(unchecked) private var requestForecaster = WindowForecaster()
    @exclusivity(unchecked) private var churnForecaster = WindowForecaster()

    /// Creates an engine.
    public init(configuration: PredictionEngineConfiguration = .init()) {
        precondition(
            configuration.maximumKeys >= PredictionEngineConfiguration.minimumKeys,
            "maximumKeys must be at least \(PredictionEngineConfiguration.minimumKeys)")
        self.configuration = configuration
        maximumKeys = configuration.maximumKeys
        popularity = PopularityPredictor(halfLife: configuration.popularityHalfLife)
        markov2 = Markov2Predictor(maximumContexts: Self.maximumContexts(configuration))
        let hidden = roundUp8(max(8, configuration.hiddenSize))
        let inputSize = 24
        var rng = SplitMix64(seed: configuration.seed)
        let capacity = recurrentParameterCount(configuration.cell, inputSize: inputSize, hiddenSize: hidden)
            + featureCount * (hidden + 1) + Self.commandVocabulary * (hidden + 1) + 64
        store = ParameterStore(
            capacity: capacity, optimizer: configuration.optimizer, clipNorm: configuration.gradientClip)
        let cell = makeRecurrentCell(
            configuration.cell, inputSize: inputSize, hiddenSize: hidden, store: store, rng: &rng)
        runner = TruncatedBPTT(cell: cell, window: max(1, configuration.bpttWindow))
        scorerW = store.allocate(featureCount)
        scorerU = store.allocate(featureCount * hidden)
        commandW = store.allocate(Self.commandVocabulary * hidden)
        commandB = store.allocate(Self.commandVocabulary)
        store.initializeUniform(scorerU, featureCount * hidden, scale: 0.1 / Float(hidden).squareRoot(), rng: &rng)
        store.initializeUniform(commandW, Self.commandVocabulary * hidden, scale: 0.1, rng: &rng)
        // Prior: start as the order-2 Markov ranking, so an untrained re-ranker equals the strongest table.
        store.value(scorerW)[Feature.markov2Ranking] = 3
        store.value(scorerW)[Feature.markov2Context] = 1
        input = FloatBuffer(count: inputSize)
        let maxCandidates = max(1, configuration.maxCandidates)
        features = FloatBuffer(count: maxCandidates * featureCount)
        mix = FloatBuffer(count: featureCount)
        hiddenGradient = FloatBuffer(count: hidden)
        mixGradient = FloatBuffer(count: featureCount)
        hiddenSnapshot = FloatBuffer(count: hidden)
        ageFeature = FloatBuffer(count: 1024)
        for age in 0..<ageFeature.count { ageFeature[age] = Float(log1p(Double(age))) / 8 }
        scores = Array(repeating: 0, count: maxCandidates)
        probabilities = Array(repeating: 0, count: maxCandidates)
        commandProbabilities = Array(repeating: 1 / Float(Self.commandVocabulary), count: Self.commandVocabulary)
        rankings = Array(repeating: [], count: Self.componentNames.count)
        for i in rankings.indices { rankings[i].reserveCapacity(maxCandidates + 8) }
        candidates.reserveCapacity(maxCandidates)
        rerankerOrder.reserveCapacity(maxCandidates)
        engineScore = WindowedScore(window: configuration.scoreWindow)
        componentScores = Array(
            repeating: WindowedScore(window: configuration.scoreWindow), count: Self.componentNames.count)
    }

    enum Feature {
        static let bias = 0, markov2Context = 1, markov2Share = 2, markov1Rank = 3, markov1Share = 4
        static let recencyRank = 5, popularityRank = 6, popularityShare = 7, isLast = 8, age = 9
        static let lastWasWrite = 10, markov2Ranking = 11, markov2Top = 12, isBeforeLast = 13
    }

    // MARK: Public API

    /// Learns from one observed request (scoring every predictor's ranking on it first).
    public func observe(_ observation: Observation) {
        let start = Self.monotonicNanoseconds()
        var key = (observation.keys.first ?? observation.touchedKeys.first).map(intern)
        var written: [Int] = []
        if observation.isWrite {
            let source = observation.touchedKeys.isEmpty ? observation.keys : observation.touchedKeys
            if source.count == 1, let key, observation.touchedKeys.isEmpty {
                written = [key]
            } else {
                let generation = keyGenerations
                written = source.map(intern)
                if keyGenerations != generation {
                    // A key generation started while interning these keys: ids interned before it
                    // are stale. Intern the observed key again, then keep the written keys that are
                    // in the current generation (or fit in it; the rest are left out of the churn).
                    key = (observation.keys.first ?? observation.touchedKeys.first).map(intern)
                    written = source.compactMap { keyIDs[$0] ?? (keyBytes.count < maximumKeys ? intern($0) : nil) }
                }
            }
        }
        observeInterned(
            key: key, command: commandID(observation.command), timeMillis: observation.timeMillis,
            isWrite: observation.isWrite, written: written)
        nanoseconds &+= Self.monotonicNanoseconds() &- start
    }

    /// Learns from one request with at most one key given as a string (convenience for traces).
    public func observe(command: String, key: String?, timeMillis: Int64, isWrite: Bool) {
        let start = Self.monotonicNanoseconds()
        let id = key.map { intern(Array($0.utf8)) }
        observeInterned(
            key: id, command: commandID(command), timeMillis: timeMillis, isWrite: isWrite,
            written: isWrite ? (id.map { [$0] } ?? []) : [])
        nanoseconds &+= Self.monotonicNanoseconds() &- start
    }

    /// The `count` keys the engine expects next, most likely first (its published ranking).
    public func predictNextKeys(count: Int) -> [[UInt8]] {
        predictedKeyIDs(count: count).map { keyBytes[$0] }
    }

    /// The forecast for the load window in progress: requests and distinct keys written.
    public var loadForecast: (requestsNextWindow: Double, writeChurnNextWindow: Double) {
        (requestForecaster.forecast, churnForecaster.forecast)
    }

    /// The command the engine expects next, if it has seen any.
    public var predictedNextCommand: String? {
        guard !commandIDs.isEmpty else { return nil }
        var best = 0
        for c in 0..<Self.commandVocabulary where commandProbabilities[c] > commandProbabilities[best] { best = c }
        return commandIDs.first { $0.value == best }?.key
    }

    /// The component whose ranking is published now ("reranker" or a baseline name).
    public var publishedSource: String { Self.componentNames[source] }

    /// Prequential scores of the engine, the re-ranker and every baseline.
    public func report() -> PredictionReport {
        var predictors = [engineScore.report(name: "engine")]
        for (i, name) in Self.componentNames.enumerated() { predictors.append(componentScores[i].report(name: name)) }
        return PredictionReport(
            observations: observations, scored: scored, window: configuration.scoreWindow,
            seenShare: scored == 0 ? 0 : Double(seenCount) / Double(scored),
            candidateShare: scored == 0 ? 0 : Double(candidateCount) / Double(scored),
            microsecondsPerObservation: observations == 0 ? 0 : Double(nanoseconds) / 1000 / Double(observations),
            publishedSource: publishedSource, predictors: predictors,
            requestForecastMeanAbsoluteError: requestForecaster.meanAbsoluteError,
            churnForecastMeanAbsoluteError: churnForecaster.meanAbsoluteError,
            commandTop1: commandScored == 0 ? 0 : Double(commandHits) / Double(commandScored),
            keyGenerations: keyGenerations, internedKeys: keyBytes.count)
    }

    // MARK: Interning

    private func intern(_ bytes: [UInt8]) -> Int {
        if let id = keyIDs[bytes] { return id }
        if keyBytes.count >= maximumKeys { startKeyGeneration() }
        let id = keyBytes.count
        keyIDs[bytes] = id
        keyBytes.append(bytes)
        lastSeenStep.append(-1)
        lastWasWrite.append(false)
        candidateStamp.append(-1)
        writtenWindow.append(Int64.min)
        return id
    }

    /// Forgets every key id and everything indexed by one; keeps the network, scores, forecasters
    /// and commands. Storage of the per-key arrays is kept (it is bounded by `maximumKeys`).
    private func startKeyGeneration() {
        keyGenerations += 1
        keyIDs.removeAll(keepingCapacity: true)
        keyBytes.removeAll(keepingCapacity: true)
        lastSeenStep.removeAll(keepingCapacity: true)
        lastWasWrite.removeAll(keepingCapacity: true)
        candidateStamp.removeAll(keepingCapacity: true)
        writtenWindow.removeAll(keepingCapacity: true)
        lastTable = LastValuePredictor()
        popularity = PopularityPredictor(halfLife: configuration.popularityHalfLife)
        markov2 = Markov2Predictor(maximumContexts: Self.maximumContexts(configuration))
        recency = RecencyPredictor(capacity: Self.recencyCapacity)
        // Published rankings and candidates: empty until the next publish (every component misses
        // the key that started the generation: it is new to the engine).
        candidates.removeAll(keepingCapacity: true)
        rerankerOrder.removeAll(keepingCapacity: true)
        for i in rankings.indices { rankings[i].removeAll(keepingCapacity: true) }
        scratch.removeAll(keepingCapacity: true)
    }

    /// Order-2 contexts kept at most: twice `maximumKeys`.
    static func maximumContexts(_ configuration: PredictionEngineConfiguration) -> Int {
        let (twice, overflow) = configuration.maximumKeys.multipliedReportingOverflow(by: 2)
        return overflow ? .max : twice
    }

    private func commandID(_ command: String) -> Int {
        if let id = commandIDs[command] { return id }
        let id = min(commandIDs.count, Self.commandVocabulary - 1)
        if commandIDs.count < 1024 { commandIDs[command] = id }
        return id
    }

    func predictedKeyIDs(count: Int) -> [Int] {
        guard count > 0 else { return [] }
        if count <= 5 { return Array(rankings[source].prefix(count)) }
        var result: [Int] = []
        if source == 0 {
            result = Array(rerankerOrder.prefix(count))
            if result.count < count {
                markov2.predict(count, into: &scratch)
                for key in scratch where result.count < count && !result.contains(key) { result.append(key) }
            }
        } else {
            baselines[source - 1].predict(count, into: &result)
        }
        return result
    }

    // MARK: The step

    private func observeInterned(key: Int?, command: Int, timeMillis: Int64, isWrite: Bool, written: [Int]) {
        observations += 1
        let hidden = runner.cell.hiddenSize
        var keyNLL = 0.0
        var commandNLL = 0.0
        var candidateIndex = -1
        var hitRanks = (markov2: -1, markov1: -1, recency: -1, popularity: -1, last: -1, reranker: false)
        var isNew = false

        // 1. Score what was published, then learn from the outcome.
        if let key, hasPublished {
            scored += 1
            isNew = lastSeenStep[key] < 0
            if !isNew { seenCount += 1 }
            let published = rankings[source]
            engineScore.record(top1: published.first == key, top5: published.prefix(5).contains(key))
            for c in rankings.indices {
                let ranking = rankings[c]
                componentScores[c].record(top1: ranking.first == key, top5: ranking.prefix(5).contains(key))
            }
            hitRanks.reranker = rankings[0].first == key
            hitRanks.markov2 = rankings[4].prefix(5).firstIndex(of: key) ?? -1
            hitRanks.markov1 = rankings[3].prefix(5).firstIndex(of: key) ?? -1
            hitRanks.popularity = rankings[2].prefix(5).firstIndex(of: key) ?? -1
            hitRanks.recency = rankings[5].prefix(5).firstIndex(of: key) ?? -1
            hitRanks.last = rankings[1].first == key ? 0 : -1
            candidateIndex = candidates.firstIndex(of: key) ?? -1
            missRate += 0.01 * ((candidateIndex < 0 ? 1 : 0) - missRate)
            if candidateIndex >= 0 {
                candidateCount += 1
                keyNLL = -log(Double(max(probabilities[candidateIndex], 1e-7)) * (1 - min(missRate, 0.999)))
                trainScorer(target: candidateIndex)
            } else {
                keyNLL = -log(max(missRate, 1e-3) / Double(keyBytes.count + 1))
            }
            selectSource()
        }
        if previousCommand != nil {
            commandScored += 1
            var best = 0
            for c in 0..<Self.commandVocabulary where commandProbabilities[c] > commandProbabilities[best] { best = c }
            if best == command { commandHits += 1 }
            commandNLL = -log(Double(max(commandProbabilities[command], 1e-7)))
            trainCommandHead(target: command)
        }
        lastSurpriseNegativeLogLikelihood = keyNLL + commandNLL
        lastSurprise = calibration.zScoreThenAdd(lastSurpriseNegativeLogLikelihood)

        // 2. Tables learn.
        if let key {
            lastTable.observe(key, isWrite: isWrite)
            popularity.observe(key, isWrite: isWrite)
            markov2.observe(key, isWrite: isWrite)
            recency.observe(key, isWrite: isWrite)
        }

        // 3. Load windows.
        updateLoad(timeMillis: timeMillis, written: written)

        // 4. Train the recurrent network once per window, then advance it with this observation.
        if runner.isFull {
            windowsSinceTraining += 1
            if windowsSinceTraining >= max(1, configuration.trainEveryWindows) {
                windowsSinceTraining = 0
                runner.backward()
                store.step()
            } else {
                runner.detach()
                store.zeroGradients()
            }
        }
        let x = input.pointer
        input.zero()
        x[min(command, 7)] = 1
        x[8] = isWrite ? 1 : 0
        let dt = previousTime.map { max(0, Double(timeMillis - $0)) } ?? 0
        x[9] = Float(min(log1p(dt) / 8, 2))
        if key != nil {
            x[10] = hitRanks.markov2 >= 0 ? 1 / Float(1 + hitRanks.markov2) : 0
            x[11] = hitRanks.markov1 >= 0 ? 1 / Float(1 + hitRanks.markov1) : 0
            x[12] = hitRanks.recency >= 0 ? 1 / Float(1 + hitRanks.recency) : 0
            x[13] = hitRanks.popularity >= 0 ? 1 / Float(1 + hitRanks.popularity) : 0
            x[14] = hitRanks.last >= 0 ? 1 : 0
            x[15] = candidateIndex >= 0 ? 1 : 0
            x[16] = isNew ? 1 : 0
            x[17] = hitRanks.reranker ? 1 : 0
        }
        x[18] = 1
        runner.step(input: x)
        hiddenSnapshot.pointer.update(from: runner.state, count: hidden)

        if let key {
            lastSeenStep[key] = step
            lastWasWrite[key] = isWrite
            step += 1
        }
        previousCommand = command
        previousTime = timeMillis

        // 5. Publish: candidates, re-ranker scores, every baseline's ranking, command probabilities.
        if step > 0 {
            publish()
            hasPublished = true
        }
        updateCommandProbabilities()
    }

    private func selectSource() {
        var best = source
        for c in componentScores.indices
        where componentScores[c].windowTop1Rate > componentScores[best].windowTop1Rate {
            best = c
        }
        if best != source {
            let lead = componentScores[best].windowTop1Rate - componentScores[source].windowTop1Rate
            if lead > configuration.switchMargin || (best == 0 && lead > 0) { source = best }
        }
    }

    private func publish() {
        let maxCandidates = max(1, configuration.maxCandidates)
        let F = featureCount
        let hidden = runner.cell.hiddenSize
        // Baseline rankings (top 5 are what is scored).
        lastTable.predict(5, into: &rankings[1])
        popularity.predict(5, into: &rankings[2])
        markov1.predict(5, into: &rankings[3])
        markov2.predict(maxCandidates, into: &scratch)
        rankings[4].removeAll(keepingCapacity: true)
        rankings[4].append(contentsOf: scratch.prefix(5))
        recency.predict(5, into: &rankings[5])

        // Candidates: markov2 (with back-off), markov1, recency, popularity, last.
        candidates.removeAll(keepingCapacity: true)
        features.pointer.update(repeating: 0, count: maxCandidates * F)
        publishCount += 1
        let stamp = publishCount
        func add(_ key: Int) -> Int? {
            if candidateStamp[key] == stamp {
                return candidates.firstIndex(of: key)
            }
            guard candidates.count < maxCandidates else { return nil }
            candidateStamp[key] = stamp
            candidates.append(key)
            let f = features.pointer + (candidates.count - 1) * F
            f[Feature.bias] = 1
            let age = step - lastSeenStep[key]
            let clamped = max(0, age)
            f[Feature.age] = clamped < ageFeature.count ? ageFeature[clamped] : Float(log1p(Double(clamped))) / 8
            f[Feature.lastWasWrite] = lastWasWrite[key] ? 1 : 0
            return candidates.count - 1
        }
        for (rank, key) in scratch.enumerated() {
            if let i = add(key) { features.pointer[i * F + Feature.markov2Ranking] = 1 / Float(1 + rank) }
        }
        if let slot = markov2.currentSlot {
            let table = markov2.table
            for r in 0..<table.size(slot) {
                if let i = add(table.key(slot, r)) {
                    let f = features.pointer + i * F
                    f[Feature.markov2Context] = 1 / Float(1 + r)
                    f[Feature.markov2Share] = table.share(slot, r)
                    if r == 0 { f[Feature.markov2Top] = 1 }
                }
            }
        }
        if let slot = markov1.currentSlot {
            let table = markov1.table
            for r in 0..<table.size(slot) {
                if let i = add(table.key(slot, r)) {
                    features.pointer[i * F + Feature.markov1Rank] = 1 / Float(1 + r)
                    features.pointer[i * F + Feature.markov1Share] = table.share(slot, r)
                }
            }
        }
        for (rank, key) in recency.recent.prefix(8).enumerated() {
            if let i = add(key) {
                features.pointer[i * F + Feature.recencyRank] = 1 / Float(1 + rank)
                if rank == 1 { features.pointer[i * F + Feature.isBeforeLast] = 1 }
            }
        }
        for (rank, key) in popularity.top.prefix(8).enumerated() {
            if let i = add(key) {
                features.pointer[i * F + Feature.popularityRank] = 1 / Float(1 + rank)
                features.pointer[i * F + Feature.popularityShare] = Float(popularity.share(of: key)).squareRoot()
            }
        }
        if let last = lastTable.last, let i = add(last) { features.pointer[i * F + Feature.isLast] = 1 }

        // Scores: s_c = f_c · (w + U h).
        let w = store.value(scorerW), u = store.value(scorerU), h = runner.state
        for f in 0..<F { mix.pointer[f] = w[f] + Kernels.dot(u + f * hidden, h, hidden) }
        var maxScore = -Float.infinity
        for c in candidates.indices {
            scores[c] = Kernels.dot(features.pointer + c * F, mix.pointer, F)
            maxScore = max(maxScore, scores[c])
        }
        var sum: Float = 0
        for c in candidates.indices {
            probabilities[c] = expf(scores[c] - maxScore)
            sum += probabilities[c]
        }
        for c in candidates.indices { probabilities[c] /= sum }
        // Re-ranker order: candidates by descending score (stable: table order breaks ties).
        rerankerOrder.removeAll(keepingCapacity: true)
        for c in candidates.indices {
            var position = rerankerOrder.count
            rerankerOrder.append(c)
            while position > 0 && scores[rerankerOrder[position - 1]] < scores[c] {
                rerankerOrder[position] = rerankerOrder[position - 1]
                position -= 1
            }
            rerankerOrder[position] = c
        }
        for i in rerankerOrder.indices { rerankerOrder[i] = candidates[rerankerOrder[i]] }
        rankings[0].removeAll(keepingCapacity: true)
        rankings[0].append(contentsOf: rerankerOrder.prefix(5))
    }

    /// Softmax cross-entropy over the candidates published before this observation.
    private func trainScorer(target: Int) {
        let F = featureCount
        let hidden = runner.cell.hiddenSize
        let q = mixGradient.pointer
        mixGradient.zero()
        for c in candidates.indices {
            let g = probabilities[c] - (c == target ? 1 : 0)
            Kernels.axpy(g, features.pointer + c * F, q, F)
        }
        Kernels.axpy(1, q, store.gradient(scorerW), F)
        Kernels.outerAccumulate(q, rows: F, runner.state, n8: hidden, store.gradient(scorerU))
        hiddenGradient.zero()
        Kernels.matvecTransposedAccumulate(store.value(scorerU), rows: F, n8: hidden, q, hiddenGradient.pointer)
        runner.addHiddenGradient(hiddenGradient.pointer)
    }

    private func updateCommandProbabilities() {
        let hidden = runner.cell.hiddenSize
        let w = store.value(commandW), b = store.value(commandB), h = hiddenSnapshot.pointer
        var maxLogit = -Float.infinity
        for c in 0..<Self.commandVocabulary {
            commandProbabilities[c] = b[c] + Kernels.dot(w + c * hidden, h, hidden)
            maxLogit = max(maxLogit, commandProbabilities[c])
        }
        var sum: Float = 0
        for c in 0..<Self.commandVocabulary {
            commandProbabilities[c] = expf(commandProbabilities[c] - maxLogit)
            sum += commandProbabilities[c]
        }
        for c in 0..<Self.commandVocabulary { commandProbabilities[c] /= sum }
    }

    /// Next-command head: softmax cross-entropy on the hidden state (back-propagated into the cell).
    private func trainCommandHead(target: Int) {
        let hidden = runner.cell.hiddenSize
        let gw = store.gradient(commandW), gb = store.gradient(commandB)
        let w = store.value(commandW)
        hiddenGradient.zero()
        for c in 0..<Self.commandVocabulary {
            let g = commandProbabilities[c] - (c == target ? 1 : 0)
            gb[c] += g
            Kernels.axpy(g, hiddenSnapshot.pointer, gw + c * hidden, hidden)
            Kernels.axpy(g, w + c * hidden, hiddenGradient.pointer, hidden)
        }
        runner.addHiddenGradient(hiddenGradient.pointer)
    }

    private func updateLoad(timeMillis: Int64, written: [Int]) {
        let length = max(1, configuration.loadWindowMillis)
        let window = timeMillis >= 0 ? timeMillis / length : (timeMillis - length + 1) / length
        if let current = loadWindow, window > current {
            requestForecaster.close(Double(windowRequests))
            churnForecaster.close(Double(windowChurn))
            // Empty windows in between (bounded, so a clock jump does not loop for long).
            var gap = min(window - current - 1, 64)
            while gap > 0 {
                requestForecaster.close(0)
                churnForecaster.close(0)
                gap -= 1
            }
            windowRequests = 0
            windowChurn = 0
            loadWindow = window
        } else if loadWindow == nil {
            loadWindow = window
        }
        windowRequests += 1
        let marker = loadWindow ?? 0
        for key in written where writtenWindow[key] != marker {
            writtenWindow[key] = marker
            windowChurn += 1
        }
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
