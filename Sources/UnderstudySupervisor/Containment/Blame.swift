#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a primary's death means for the input it was executing: the containment rule, as a pure function.
///
/// Deterministic replicas share every bug of the service, so an input that made the primary trap, exit or pass
/// the request deadline would do the same to every standby and every replay: it is quarantined. A kill from
/// outside (SIGKILL, SIGTERM, … — nothing to blame on the input) earns one retry on the promoted standby; a
/// second death on the same input quarantines it. A death while executing nothing blames nothing.
enum BlameVerdict: Equatable, Sendable {
    /// Nothing to blame: fail over (or restart) and carry on.
    case noInput
    /// Try the input once more, on the standby that takes over.
    case retry(sequence: UInt64)
    /// Never apply this input again.
    case quarantine(sequence: UInt64, reason: String)

    /// Signals that come from outside the process rather than from its own fault.
    static let outsideSignals: Set<Int32> = [SIGKILL, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]

    /// Judges a death.
    /// - Parameters:
    ///   - death: How the primary ended.
    ///   - earlierDeaths: How many instances already died executing the same input without blame (retries).
    static func judge(_ death: DeathReport, earlierDeaths: Int) -> BlameVerdict {
        guard let sequence = death.executing else { return .noInput }
        if case .deadline(_, let millis) = death.killedBySupervisor {
            return .quarantine(sequence: sequence, reason: "the primary passed the request deadline (\(millis) ms) on it and was killed")
        }
        if let signal = death.signal {
            // The signal that ended the process decides: a trap stays a trap even if the supervisor, seeing the
            // connection drop, sent a SIGKILL before the process was reaped. A SIGKILL the supervisor sent for
            // another reason (a broken stream) is no evidence against the input.
            if outsideSignals.contains(signal) {
                return earlierDeaths >= 1
                    ? .quarantine(sequence: sequence, reason: "two instances died executing it (the last by \(signalName(signal)))")
                    : .retry(sequence: sequence)
            }
            return .quarantine(sequence: sequence, reason: "the primary crashed executing it (\(signalName(signal)))")
        }
        if let status = death.exitStatus {
            return .quarantine(sequence: sequence, reason: "the primary exited with status \(status) executing it")
        }
        // Not reaped in time: no evidence against the input.
        return earlierDeaths >= 1
            ? .quarantine(sequence: sequence, reason: "two instances died executing it")
            : .retry(sequence: sequence)
    }
}
