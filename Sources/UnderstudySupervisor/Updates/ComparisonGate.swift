import Foundation

/// The live comparison's verdict, Diffy style: the same-version shadow's disagreements with the primary are
/// the noise floor, and a command class is flagged only when the candidate differs significantly more often.
/// The prediction engine's surprise score is one more signal: while the traffic is unlike what the engine has
/// learned (mean calibrated surprise above ``UpdateGateConfiguration/surpriseLimit``), the noise measured in the
/// window is less trustworthy, so the gate compares for longer before it decides. Pure: no I/O.
public enum ComparisonGate {
    /// What the gate does at the end of a comparison window.
    public enum Verdict: Equatable, Sendable {
        /// Every command class is within the noise.
        case pass
        /// Unusual traffic: compare for another window first.
        case extend(String)
        /// These command classes differ beyond the noise.
        case reject([DeployReport.FlaggedCommand])
    }

    /// The command classes whose candidate difference rate is above the noise by both thresholds.
    ///
    /// - Parameters:
    ///   - candidate: Per command class, the candidate's replies compared and differing in the window.
    ///   - noise: The same for the same-version shadow over the same window.
    public static func flagged(
        candidate: [String: ComparisonStats], noise: [String: ComparisonStats], gate: UpdateGateConfiguration
    ) -> [DeployReport.FlaggedCommand] {
        var flagged: [DeployReport.FlaggedCommand] = []
        for (command, c) in candidate where c.compared > 0 && c.differed > 0 {
            let n = noise[command] ?? ComparisonStats()
            let candidateRate = Double(c.differed) / Double(c.compared)
            let noiseRate = n.compared > 0 ? Double(n.differed) / Double(n.compared) : 0
            if candidateRate > noiseRate * gate.relativeThreshold && candidateRate - noiseRate > gate.absoluteThreshold {
                flagged.append(.init(
                    command: command, candidateCompared: c.compared, candidateDiffered: c.differed,
                    noiseCompared: n.compared, noiseDiffered: n.differed))
            }
        }
        return flagged.sorted { $0.command < $1.command }
    }

    /// The verdict at the end of a window.
    ///
    /// A candidate that differs beyond the noise is rejected whatever the traffic. Otherwise, while the mean
    /// surprise is above the limit and extensions remain, the comparison goes on for another window.
    public static func verdict(
        candidate: [String: ComparisonStats], noise: [String: ComparisonStats], surprise: Double?,
        extensionsSoFar: Int, gate: UpdateGateConfiguration
    ) -> Verdict {
        let flagged = flagged(candidate: candidate, noise: noise, gate: gate)
        if !flagged.isEmpty { return .reject(flagged) }
        if let surprise, surprise.isFinite, surprise > gate.surpriseLimit, extensionsSoFar < gate.surpriseExtensions {
            return .extend(String(
                format: "traffic unusual for the prediction engine (mean surprise %.2f above %.2f): comparing another window",
                surprise, gate.surpriseLimit))
        }
        return .pass
    }
}
