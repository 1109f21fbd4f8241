import ArgumentParser
import Foundation
import UnderstudyPrediction

/// `understudy predict`: replays a request trace through the prediction engine and its baselines.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a CSV trace prequentially and score the prediction engine against its baselines.",
        discussion: """
            The trace is CSV with a header line, then 'timestamp_or_index,op,key,size' per line \
            (op: get, set, read, write, access, …; size may be -1). Each request is first predicted by \
            every predictor, scored (top-1, top-5), then learnt from, in a single pass. A malformed line \
            is an error naming its line number unless --skip-malformed is given.
            """)

    @Option(name: .long, help: "The CSV trace to replay.")
    var trace: String

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    @Option(name: .long, help: "Hidden size of the recurrent re-ranker.")
    var hidden = 32

    @Option(name: .long, help: "Seed for the re-ranker's initial weights.")
    var seed: UInt64 = 1

    @Flag(name: .long, help: "Use an LSTM instead of a GRU.")
    var lstm = false

    @Flag(name: .long, help: "Skip malformed lines (and report how many) instead of failing.")
    var skipMalformed = false

    func validate() throws {
        guard (1...1024).contains(hidden) else { throw ValidationError("--hidden must be between 1 and 1024") }
    }

    func run() throws {
        // A TraceError (missing file, malformed line) is printed as "Error: …" with exit status 1.
        let result = try TraceReplay.run(
            path: trace, hidden: hidden, seed: seed, cell: lstm ? .lstm : .gru, skipMalformed: skipMalformed)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(result)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("trace: \(trace)")
        print("requests: \(result.requests)" + (result.skippedLines > 0 ? " (skipped \(result.skippedLines) malformed lines)" : ""))
        print("key seen before: \(percent(result.seen))   key among candidates: \(percent(result.candidates))")
        print("µs per observation: \(String(format: "%.2f", result.microsecondsPerObservation))")
        print("")
        print(pad("predictor", 12) + pad("top1", 9) + pad("top5", 9) + pad("top1 2nd½", 11) + "top5 2nd½")
        for p in result.predictors {
            print(pad(p.name, 12) + pad(percent(p.top1), 9) + pad(percent(p.top5), 9)
                + pad(percent(p.top1SecondHalf), 11) + percent(p.top5SecondHalf))
        }
    }

    private func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
