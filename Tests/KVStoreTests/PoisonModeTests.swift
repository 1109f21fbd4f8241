import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

@Suite("Broken mode poison")
struct PoisonModeTests {
    static let confirmed = ["kv", "--i-know-this-is-broken"]
    static let poisonEnvironment = ["UNDERSTUDY_KV_BROKEN": "poison"]

    @Test("both versions take poison; kv-v1 refuses the modes that concern version 2")
    func parsing() {
        var warnings: [String] = []
        #expect(BrokenMode.fromEnvironment(arguments: Self.confirmed, environment: Self.poisonEnvironment,
                                           warn: { warnings.append($0) }) == .poison)
        #expect(BrokenMode.fromEnvironment(arguments: Self.confirmed, environment: Self.poisonEnvironment,
                                           accepting: BrokenMode.version1Modes, warn: { warnings.append($0) }) == .poison)
        #expect(warnings.count == 2 && warnings.allSatisfy { $0.contains("DELIBERATELY BROKEN mode 'poison'") })
        // Either switch alone leaves it off.
        #expect(BrokenMode.fromEnvironment(arguments: ["kv"], environment: Self.poisonEnvironment,
                                           accepting: BrokenMode.version1Modes, warn: { _ in }) == nil)
        #expect(BrokenMode.fromEnvironment(arguments: Self.confirmed, environment: [:],
                                           accepting: BrokenMode.version1Modes, warn: { _ in }) == nil)
        for mode in BrokenMode.allCases where !BrokenMode.version1Modes.contains(mode) {
            warnings = []
            #expect(BrokenMode.fromEnvironment(
                arguments: Self.confirmed, environment: ["UNDERSTUDY_KV_BROKEN": mode.rawValue],
                accepting: BrokenMode.version1Modes, warn: { warnings.append($0) }) == nil)
            #expect(warnings == [
                "kv: UNDERSTUDY_KV_BROKEN mode '\(mode.rawValue)' is not available in this version (available: poison); running normally",
            ])
        }
    }

    @Test("only SET keys starting poison:crash: or poison:hang: are poisoned", arguments: [
        ("poison:crash:", BrokenMode.PoisonAction.crash), ("poison:crash:x", .crash), ("poison:crash:\u{0}\r\n", .crash),
        ("poison:hang:", .hang), ("poison:hang:42", .hang),
        ("poison:crash", nil), ("poison:hang", nil), ("poison:", nil), ("Poison:crash:x", nil), ("POISON:HANG:x", nil),
        ("xpoison:crash:x", nil), (" poison:hang:x", nil), ("poison:crashx", nil), ("", nil), ("k", nil),
    ] as [(String, BrokenMode.PoisonAction?)])
    func predicate(key: String, action: BrokenMode.PoisonAction?) {
        #expect(BrokenMode.poisonAction(forSetKey: Array(key.utf8)) == action)
    }

    /// Everything a poisoned worker may still be asked, with its poison keys everywhere but in SET.
    static let harmless: [[String]] = [
        ["SET", "a", "1"], ["GET", "a"], ["SET", "poison", "x"], ["SET", "poison:crashed", "x"],
        ["SET", "poison:hangs:x", "y"], ["GET", "poison:crash:x"], ["GET", "poison:hang:x"],
        ["SETNX", "poison:crash:x", "v"], ["MSET", "poison:hang:x", "v", "b", "2"], ["GETSET", "poison:crash:y", "v"],
        ["SETEX", "poison:crash:z", "100", "v"], ["APPEND", "poison:hang:x", "w"], ["GET", "poison:hang:x"],
        ["RPUSH", "poison:crash:l", "a"], ["SADD", "poison:hang:s", "m"], ["HSET", "poison:crash:h", "f", "v"],
        ["SET", "poison", "poison:crash:x"], ["INCR", "poison:n"], ["KEYS", "poison:*"], ["DBSIZE"],
        ["DEL", "poison:crash:x"], ["EXISTS", "poison:crash:x", "poison:hang:x"],
    ]

    static func replies<S: UnderstudyService>(_ service: S) -> ([String], DigestReport) {
        var e = ServiceEngine(service: service)
        var out: [String] = []
        for (i, c) in harmless.enumerated() {
            out.append(String(decoding: e.apply(request(UInt64(i + 1), 1_800_000_000_000, c)).response, as: UTF8.self))
        }
        return (out, e.state.digest(sequence: 0))
    }

    @Test("a poisoned worker answers every other command exactly as a healthy one")
    func harmlessCommands() {
        let (v1, v1Digest) = Self.replies(KVServiceV1())
        let (poisoned1, poisoned1Digest) = Self.replies(KVServiceV1(broken: .poison))
        let (v2, v2Digest) = Self.replies(KVServiceV2())
        let (poisoned2, poisoned2Digest) = Self.replies(KVServiceV2(broken: .poison))
        #expect(poisoned1 == v1)
        #expect(poisoned2 == v2)
        #expect(v1 == v2)
        #expect(poisoned1Digest == v1Digest)
        #expect(poisoned2Digest == v2Digest)
        #expect(v1[1] == "$1\r\n1\r\n" && v1[12] == "$2\r\nvw\r\n")
    }

    @Test("SET of a poison:crash: key kills kv-v1 and kv-v2 with a signal")
    func crash() async {
        let r1 = await #expect(processExitsWith: .failure) {
            var e = ServiceEngine(service: KVServiceV1(broken: .poison))
            _ = e.apply(request(1, 1, ["SET", "poison:crash:1", "v"]))
        }
        let r2 = await #expect(processExitsWith: .failure) {
            var e = ServiceEngine(service: KVServiceV2(broken: .poison))
            _ = e.apply(request(1, 1, ["SET", "ok", "v"]))
            _ = e.apply(request(2, 1, ["SET", "poison:crash:", "v", "EX", "10"]))
        }
        for result in [r1, r2] {
            guard case .signal? = result?.exitStatus else {
                Issue.record("expected death by a signal, got \(String(describing: result?.exitStatus))")
                continue
            }
        }
    }

    @Test("SET of a poison:hang: key never returns (the alarm signal ends it)")
    func hang() async {
        let r1 = await #expect(processExitsWith: .signal(SIGALRM)) {
            var e = ServiceEngine(service: KVServiceV1(broken: .poison))
            alarm(1)
            _ = e.apply(request(1, 1, ["SET", "poison:hang:x", "v"]))
        }
        let r2 = await #expect(processExitsWith: .signal(SIGALRM)) {
            var e = ServiceEngine(service: KVServiceV2(broken: .poison))
            alarm(1)
            _ = e.apply(request(1, 1, ["SET", "poison:hang:", ""]))
        }
        _ = (r1, r2)
    }
}
