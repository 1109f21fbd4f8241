#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import UnderstudyKit

/// Deliberately broken behaviours of the key-value example, for tests of the update gate and of the
/// supervisor's survival of crashing and hanging workers.
///
/// Switched on only by BOTH the environment variable `UNDERSTUDY_KV_BROKEN=<mode>` AND the argument
/// `--i-know-this-is-broken`; either alone is ignored with a warning on standard error. kv-v2 takes every
/// mode; kv-v1 takes only those in ``version1Modes``.
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
    /// `SET poison:crash:<any> <v>` kills the process with a trap; `SET poison:hang:<any> <v>` never returns
    /// (it spins on the CPU). Every other command, and SET of any other key, behaves normally.
    case poison = "poison"

    /// The modes kv-v1 takes (the others concern migration to, or behaviour of, version 2).
    public static let version1Modes: Set<BrokenMode> = [.poison]

    /// The environment variable naming the mode.
    public static let environmentVariable = "UNDERSTUDY_KV_BROKEN"
    /// The argument that must accompany it.
    public static let confirmationArgument = "--i-know-this-is-broken"

    /// Reads the switch.
    /// - Parameters:
    ///   - arguments: the command line.
    ///   - environment: the environment (default: the process's).
    ///   - accepted: the modes this executable takes (default: all); any other is ignored with a warning.
    ///   - warn: where warnings go (default: standard error).
    /// - Returns: the mode, or nil when not switched on by both.
    public static func fromEnvironment(
        arguments: [String],
        environment: [String: String]? = nil,
        accepting accepted: Set<BrokenMode> = Set(allCases),
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
            guard accepted.contains(mode) else {
                let known = allCases.filter { accepted.contains($0) }.map(\.rawValue).joined(separator: ", ")
                warn("kv: \(environmentVariable) mode '\(v)' is not available in this version (available: \(known)); running normally")
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

    /// What the poison mode does with a SET of a key.
    public enum PoisonAction: Sendable, Equatable {
        /// The process traps (dies of a signal).
        case crash
        /// The request never returns; the thread spins on the CPU.
        case hang
    }

    static let crashPrefix = Array("poison:crash:".utf8)
    static let hangPrefix = Array("poison:hang:".utf8)

    /// What the poison mode does with `SET key ...`: `.crash` for keys starting "poison:crash:", `.hang` for
    /// keys starting "poison:hang:", nil (behave normally) for every other key. Case-sensitive, binary-safe.
    /// - Parameter key: the key of the SET command.
    /// - Returns: the action, or nil.
    public static func poisonAction(forSetKey key: [UInt8]) -> PoisonAction? {
        if key.starts(with: crashPrefix) { return .crash }
        if key.starts(with: hangPrefix) { return .hang }
        return nil
    }

    /// Spins counted here, so the optimizer cannot remove the hang's loop (an atomic write is a side effect).
    static let hangSpins = Atomic<UInt64>(0)

    /// Carries out a poison action: traps, or spins forever. Never returns.
    /// - Parameter action: what to do.
    public static func poison(_ action: PoisonAction) -> Never {
        switch action {
        case .crash:
            fatalError("kv: deliberately broken: poison (SET of a poison:crash: key)")
        case .hang:
            while true { hangSpins.wrappingAdd(1, ordering: .relaxed) }
        }
    }
}
