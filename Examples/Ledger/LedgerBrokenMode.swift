#if canImport(Glibc)
import Glibc
#endif

/// Deliberately broken behaviours of the ledger, for tests of the update gate.
///
/// Switched on only by BOTH the environment variable `UNDERSTUDY_LEDGER_BROKEN=<mode>` AND the argument
/// `--i-know-this-is-broken`; either alone is ignored with a warning on standard error (as kv's modes).
/// ledger-v2 takes every mode; ledger-v1 none.
public enum LedgerBrokenMode: String, Sendable, CaseIterable {
    /// Transfers of more than 500 credit the recipient one unit too many (money appears).
    case wrongArithmetic = "wrong-arithmetic"
    /// Every transfer also leaves a stray record in the state; no reply changes.
    case drift = "drift"
    /// `migrate(from:)` crashes.
    case crashInMigrate = "crash-in-migrate"

    /// The environment variable naming the mode.
    public static let environmentVariable = "UNDERSTUDY_LEDGER_BROKEN"
    /// The argument that must accompany it.
    public static let confirmationArgument = "--i-know-this-is-broken"

    /// Reads the switch.
    /// - Parameters:
    ///   - arguments: the command line.
    ///   - environment: the environment (default: the process's).
    ///   - accepted: the modes this executable takes.
    /// - Returns: the mode, or nil when not switched on by both.
    public static func fromEnvironment(
        arguments: [String], environment: [String: String]? = nil, accepting accepted: Set<LedgerBrokenMode> = Set(allCases)
    ) -> LedgerBrokenMode? {
        func warn(_ message: String) {
            let line = Array((message + "\n").utf8)
            _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        }
        let value = environment.map { $0[environmentVariable] } ?? getenv(environmentVariable).map { String(cString: $0) }
        let confirmed = arguments.contains(confirmationArgument)
        switch (value, confirmed) {
        case (nil, false):
            return nil
        case (nil, true):
            warn("ledger: \(confirmationArgument) given without \(environmentVariable); running normally")
            return nil
        case (let v?, false):
            warn("ledger: \(environmentVariable)=\(v) ignored without \(confirmationArgument); running normally")
            return nil
        case (let v?, true):
            guard let mode = LedgerBrokenMode(rawValue: v), accepted.contains(mode) else {
                let known = allCases.filter { accepted.contains($0) }.map(\.rawValue).joined(separator: ", ")
                warn("ledger: \(environmentVariable) mode '\(v)' is not available in this version (available: \(known.isEmpty ? "none" : known)); running normally")
                return nil
            }
            warn("ledger: DELIBERATELY BROKEN mode '\(v)' is on")
            return mode
        }
    }
}
