#if canImport(Glibc)
import Glibc
#endif
import UnderstudyKit

/// Deliberately broken behaviours of kv-v2, for tests of the update gate.
///
/// Switched on only by BOTH the environment variable `UNDERSTUDY_KV_BROKEN=<mode>` AND the argument
/// `--i-know-this-is-broken`; either alone is ignored with a warning on standard error.
public enum BrokenMode: String, Sendable, CaseIterable {
    /// `migrate(from:)` crashes.
    case crashInMigrate = "crash-in-migrate"
    /// INCR/INCRBY answer (and store) one too many past 1000.
    case wrongIncr = "wrong-incr"
    /// GET replies depend on the process (pid for "nd:" keys, and every tenth GET per process).
    case nondeterministic = "nondeterministic"
    /// Every request sleeps about 2 ms.
    case slow = "slow"
    /// SET also writes "drift:"+key without changing the reply.
    case drift = "drift"

    /// The environment variable naming the mode.
    public static let environmentVariable = "UNDERSTUDY_KV_BROKEN"
    /// The argument that must accompany it.
    public static let confirmationArgument = "--i-know-this-is-broken"

    /// Reads the switch.
    /// - Parameters:
    ///   - arguments: the command line.
    ///   - environment: the environment (default: the process's).
    ///   - warn: where warnings go (default: standard error).
    /// - Returns: the mode, or nil when not switched on by both.
    public static func fromEnvironment(
        arguments: [String],
        environment: [String: String]? = nil,
        warn: (String) -> Void = { message in
            var line = Array((message + "\n").utf8)
            _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        }
    ) -> BrokenMode? {
        let value: String?
        if let environment {
            value = environment[environmentVariable]
        } else {
            value = getenv(environmentVariable).map { String(cString: $0) }
        }
        let confirmed = arguments.contains(confirmationArgument)
        switch (value, confirmed) {
        case (nil, false):
            return nil
        case (nil, true):
            warn("kv: \(confirmationArgument) given without \(environmentVariable); running normally")
            return nil
        case (let v?, false):
            warn("kv: \(environmentVariable)=\(v) ignored without \(confirmationArgument); running normally")
            return nil
        case (let v?, true):
            guard let mode = BrokenMode(rawValue: v) else {
                warn("kv: unknown \(environmentVariable) mode '\(v)' (known: \(allCases.map(\.rawValue).joined(separator: ", "))); running normally")
                return nil
            }
            warn("kv: DELIBERATELY BROKEN mode '\(v)' is on")
            return mode
        }
    }

    nonisolated(unsafe) static var getCounter = 0

    static func nondeterministicGet(key: [UInt8], value: [UInt8]?) -> Reply {
        getCounter += 1
        if key.starts(with: Array("nd:".utf8)) {
            return .bulk((value ?? []) + Array(":\(getpid())".utf8))
        }
        if getCounter % 10 == 0 { return .bulk(Array("nondeterministic-\(getpid())".utf8)) }
        return .bulk(value)
    }
}
