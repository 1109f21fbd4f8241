/// One observed request, as the supervisor sees it.
public struct Observation: Sendable, Hashable {
    /// The command name ("GET", "SET", "get", "write", …). Compared exactly.
    public var command: String
    /// The keys the request names, in order; the first is the one next-key prediction targets.
    public var keys: [[UInt8]]
    /// The keys whose state the request changed or read (from the state delta); used for write churn.
    public var touchedKeys: [[UInt8]]
    /// The journaled wall-clock time in milliseconds.
    public var timeMillis: Int64
    /// Whether the request writes state.
    public var isWrite: Bool

    /// Creates an observation.
    public init(command: String, keys: [[UInt8]], touchedKeys: [[UInt8]] = [], timeMillis: Int64, isWrite: Bool) {
        self.command = command
        self.keys = keys
        self.touchedKeys = touchedKeys
        self.timeMillis = timeMillis
        self.isWrite = isWrite
    }

    /// Creates an observation with string keys (UTF-8 bytes).
    public init(command: String, key: String?, timeMillis: Int64, isWrite: Bool) {
        self.init(command: command, keys: key.map { [Array($0.utf8)] } ?? [], timeMillis: timeMillis, isWrite: isWrite)
    }
}

/// Configuration of a `PredictionEngine`; every field has a documented default.
public struct PredictionEngineConfiguration: Sendable, Equatable {
    /// Recurrent cell of the re-ranker. Default `.gru`.
    public var cell: RecurrentCellKind
    /// Hidden size (rounded up to 8). Default 32.
    public var hiddenSize: Int
    /// Seed for weight initialisation. Default 1.
    public var seed: UInt64
    /// Optimiser for the re-ranker and heads. Default Adam, learning rate 0.005.
    public var optimizer: ParameterStore.Optimizer
    /// Global gradient-norm clip. Default 5.
    public var gradientClip: Float
    /// Truncated-BPTT window in observations; one optimiser step per window. Default 8.
    public var bpttWindow: Int
    /// Back-propagate and update only every k-th window (1 = every window). Default 1.
    public var trainEveryWindows: Int
    /// Most candidates the tables propose for re-ranking. Default 20.
    public var maxCandidates: Int
    /// Sliding window (scored observations) for windowed scores and the publishing guard. Default 1000.
    public var scoreWindow: Int
    /// Windowed top-1 margin a challenger must exceed before the engine switches what it publishes. Default 0.005.
    public var switchMargin: Double
    /// Length of a load-forecast window in milliseconds. Default 1000.
    public var loadWindowMillis: Int64
    /// Half-life of the popularity table, in observations. Default 5000.
    public var popularityHalfLife: Double
    /// Most distinct keys the engine remembers at once. Default 65 536; at least `minimumKeys`.
    ///
    /// Every distinct key costs the engine a few hundred bytes (interning, per-key state, count
    /// tables). When interning one more key would pass this bound, the engine starts a new *key
    /// generation*: it forgets every key and every count table and starts learning again from that
    /// key, keeping what is not about keys (the network's weights, scores, forecasters, commands).
    /// Order-2 Markov contexts (pairs of keys, which a random stream over n keys can make up to n²
    /// of) are bounded by twice this number; past it, the order-2 table alone starts over. So memory
    /// stays bounded however many distinct keys clients write and in whatever order.
    public var maximumKeys: Int

    /// The least accepted `maximumKeys`.
    public static let minimumKeys = 16

    /// Creates a configuration; see the properties for the defaults.
    public init(
        cell: RecurrentCellKind = .gru, hiddenSize: Int = 32, seed: UInt64 = 1,
        optimizer: ParameterStore.Optimizer = .adam(learningRate: 0.005), gradientClip: Float = 5,
        bpttWindow: Int = 8, trainEveryWindows: Int = 1, maxCandidates: Int = 20, scoreWindow: Int = 1000,
        switchMargin: Double = 0.005, loadWindowMillis: Int64 = 1000, popularityHalfLife: Double = 5000,
        maximumKeys: Int = 65_536
    ) {
        self.cell = cell
        self.hiddenSize = hiddenSize
        self.seed = seed
        self.optimizer = optimizer
        self.gradientClip = gradientClip
        self.bpttWindow = bpttWindow
        self.trainEveryWindows = trainEveryWindows
        self.maxCandidates = maxCandidates
        self.scoreWindow = scoreWindow
        self.switchMargin = switchMargin
        self.loadWindowMillis = loadWindowMillis
        self.popularityHalfLife = popularityHalfLife
        self.maximumKeys = maximumKeys
    }
}

/// Prequential scores of every predictor, as `PredictionEngine.report()` returns them.
public struct PredictionReport: Codable, Sendable, Equatable {
    /// One predictor's score.
    public struct PredictorScore: Codable, Sendable, Equatable {
        /// "engine" (what the engine published), "reranker" (the GRU re-ranker alone), or a baseline name.
        public var name: String
        /// Scored observations (those with a key, after the first).
        public var scored: Int
        /// Observations whose key was ranked first.
        public var top1Hits: Int
        /// Observations whose key was in the first five.
        public var top5Hits: Int
        /// top1Hits / scored (0 when nothing was scored).
        public var top1: Double
        /// top5Hits / scored.
        public var top5: Double
        /// Top-1 over the last `window` scored observations.
        public var windowTop1: Double
        /// Top-5 over the last `window` scored observations.
        public var windowTop5: Double
    }

    /// Observations seen.
    public var observations: Int
    /// Observations scored.
    public var scored: Int
    /// Sliding-window length (scored observations).
    public var window: Int
    /// Share of scored observations whose key had been seen before.
    public var seenShare: Double
    /// Share of scored observations whose key was among the re-ranker's candidates.
    public var candidateShare: Double
    /// Mean wall-clock microseconds spent in `observe` per observation.
    public var microsecondsPerObservation: Double
    /// The component whose ranking the engine publishes now ("reranker" or a baseline name).
    public var publishedSource: String
    /// Scores: "engine" first, then "reranker", then the baselines.
    public var predictors: [PredictorScore]
    /// Mean absolute error of the published request-count forecast over closed windows.
    public var requestForecastMeanAbsoluteError: Double
    /// Mean absolute error of the published write-churn forecast over closed windows.
    public var churnForecastMeanAbsoluteError: Double
    /// Top-1 accuracy of the next-command-class head.
    public var commandTop1: Double
    /// Key generations started: how many times the engine forgot every key because interning one
    /// more would have passed `PredictionEngineConfiguration.maximumKeys` (0 while it never did).
    public var keyGenerations: Int
    /// Distinct keys interned in the current key generation (at most `maximumKeys`).
    public var internedKeys: Int

    /// The score named `name`, if present.
    public func score(_ name: String) -> PredictorScore? { predictors.first { $0.name == name } }
}
