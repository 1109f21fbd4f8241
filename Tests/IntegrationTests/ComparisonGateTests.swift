import Testing
import UnderstudySupervisor

/// The deploy gate's verdict on a live comparison: the shadow's disagreements are noise, the surprise score
/// lengthens the comparison on unusual traffic.
@Suite("Comparison gate")
struct ComparisonGateTests {
    let gate = UpdateGateConfiguration()  // relative 2×, absolute 0.01, surprise limit 3, 2 extensions

    static func stats(_ pairs: [String: (Int, Int)]) -> [String: ComparisonStats] {
        pairs.mapValues { ComparisonStats(compared: $0.0, differed: $0.1) }
    }

    @Test("differences the shadow shows too are noise; a class far above the noise is flagged")
    func noiseFiltering() {
        // RANDOMKEY-like noise: the shadow differs as often as the candidate.
        let candidate = Self.stats(["GET": (1000, 0), "SRANDMEMBER": (200, 150), "INCR": (500, 40)])
        let noise = Self.stats(["GET": (1000, 0), "SRANDMEMBER": (200, 140), "INCR": (500, 0)])
        let flagged = ComparisonGate.flagged(candidate: candidate, noise: noise, gate: gate)
        #expect(flagged.map(\.command) == ["INCR"])
        #expect(flagged.first?.candidateDiffered == 40)
        #expect(flagged.first?.noiseCompared == 500)
    }

    @Test("both thresholds must be exceeded")
    func thresholds() {
        // 3× the noise but only 0.4 percentage points above it: within the absolute threshold.
        #expect(ComparisonGate.flagged(
            candidate: Self.stats(["GET": (1000, 6)]), noise: Self.stats(["GET": (1000, 2)]), gate: gate).isEmpty)
        // 5 points above the noise but not twice it.
        #expect(ComparisonGate.flagged(
            candidate: Self.stats(["GET": (100, 55)]), noise: Self.stats(["GET": (100, 50)]), gate: gate).isEmpty)
        // No noise measured for a class: any rate above the absolute threshold is flagged.
        #expect(ComparisonGate.flagged(
            candidate: Self.stats(["LPOP": (100, 5)]), noise: [:], gate: gate).map(\.command) == ["LPOP"])
    }

    @Test("unusual traffic extends the comparison a bounded number of times; a real difference rejects at once")
    func surprise() {
        let clean = Self.stats(["GET": (1000, 0)])
        #expect(ComparisonGate.verdict(candidate: clean, noise: clean, surprise: 0.4, extensionsSoFar: 0, gate: gate) == .pass)
        #expect(ComparisonGate.verdict(candidate: clean, noise: clean, surprise: nil, extensionsSoFar: 0, gate: gate) == .pass)
        guard case .extend(let why) = ComparisonGate.verdict(
            candidate: clean, noise: clean, surprise: 5, extensionsSoFar: 0, gate: gate)
        else {
            Issue.record("high surprise did not extend the comparison")
            return
        }
        #expect(why.contains("5.00"))
        #expect(ComparisonGate.verdict(candidate: clean, noise: clean, surprise: 5, extensionsSoFar: 1, gate: gate) != .pass)
        #expect(ComparisonGate.verdict(candidate: clean, noise: clean, surprise: 5, extensionsSoFar: 2, gate: gate) == .pass)
        let bad = Self.stats(["INCR": (500, 100)])
        guard case .reject(let flagged) = ComparisonGate.verdict(
            candidate: bad, noise: [:], surprise: 5, extensionsSoFar: 0, gate: gate)
        else {
            Issue.record("a candidate far above the noise was not rejected")
            return
        }
        #expect(flagged.map(\.command) == ["INCR"])
    }
}
