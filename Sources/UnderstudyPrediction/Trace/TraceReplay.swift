/// The outcome of replaying a trace prequentially (what `understudy predict` prints).
public struct TraceReplayResult: Codable, Sendable, Equatable {
    /// One predictor's scores.
    public struct Predictor: Codable, Sendable, Equatable {
        /// "engine", "reranker" or a baseline name.
        public var name: String
        /// Top-1 over the whole trace (0…1).
        public var top1: Double
        /// Top-5 over the whole trace.
        public var top5: Double
        /// Top-1 over the second half of the trace.
        public var top1SecondHalf: Double
        /// Top-5 over the second half.
        public var top5SecondHalf: Double

        enum CodingKeys: String, CodingKey {
            case name, top1, top5
            case top1SecondHalf = "top1_second_half"
            case top5SecondHalf = "top5_second_half"
        }
    }

    /// Requests replayed.
    public var requests: Int
    /// Share of scored requests whose key had been seen before.
    public var seen: Double
    /// Share of scored requests whose key was among the candidates the tables proposed.
    public var candidates: Double
    /// Mean microseconds the engine spent per observation.
    public var microsecondsPerObservation: Double
    /// Scores, "engine" first.
    public var predictors: [Predictor]
    /// Malformed lines skipped (only with `skipMalformed`); not part of the JSON output.
    public var skippedLines: Int = 0

    enum CodingKeys: String, CodingKey {
        case requests, seen, candidates
        case microsecondsPerObservation = "us_per_observation"
        case predictors
    }
}

/// Replays a trace through a `PredictionEngine`, prequentially and in a single pass.
public enum TraceReplay {
    /// Reads the trace at `path` and replays it.
    /// - Parameters:
    ///   - path: a CSV trace (`timestamp_or_index,op,key,size`, header first).
    ///   - hidden: the re-ranker's hidden size.
    ///   - seed: the weight-initialisation seed.
    ///   - cell: GRU (default) or LSTM.
    ///   - skipMalformed: skip and count malformed lines instead of failing.
    /// - Throws: `TraceError`.
    public static func run(
        path: String, hidden: Int = 32, seed: UInt64 = 1, cell: RecurrentCellKind = .gru, skipMalformed: Bool = false
    ) throws -> TraceReplayResult {
        let (records, skipped) = try TraceCSV.read(path: path, skipMalformed: skipMalformed)
        var result = replay(records, configuration: .init(cell: cell, hiddenSize: hidden, seed: seed))
        result.skippedLines = skipped
        return result
    }

    /// Replays parsed records.
    public static func replay(_ records: [TraceRecord], configuration: PredictionEngineConfiguration)
        -> TraceReplayResult
    {
        let engine = PredictionEngine(configuration: configuration)
        var middle: PredictionReport?
        for (index, record) in records.enumerated() {
            if index == records.count / 2 { middle = engine.report() }
            engine.observe(command: record.op, key: record.key, timeMillis: record.timeMillis, isWrite: record.isWrite)
        }
        let report = engine.report()
        let half = middle ?? report
        let predictors = report.predictors.map { p -> TraceReplayResult.Predictor in
            let m = half.score(p.name)
            let n = p.scored - (m?.scored ?? 0)
            func rate(_ hits: Int) -> Double { n > 0 ? Double(hits) / Double(n) : 0 }
            return .init(
                name: p.name, top1: p.top1, top5: p.top5,
                top1SecondHalf: rate(p.top1Hits - (m?.top1Hits ?? 0)),
                top5SecondHalf: rate(p.top5Hits - (m?.top5Hits ?? 0)))
        }
        return TraceReplayResult(
            requests: records.count, seen: report.seenShare, candidates: report.candidateShare,
            microsecondsPerObservation: report.microsecondsPerObservation, predictors: predictors)
    }
}
