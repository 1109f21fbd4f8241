#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import UnderstudyKit

/// The configuration parameters CONFIG GET and SET know, with Redis 7.0's defaults and validation.
///
/// Values live in the state's "config" map (parameter name → value), so every replica agrees on them and they
/// survive a snapshot; a parameter at its default has no entry, so equal configurations are equal bytes.
public enum KVConfig {
    enum Kind {
        case integer(min: Int64, max: Int64)
        case memory
        case bool
        case choice([String])
        case text
        case immutable
    }

    struct Parameter {
        let name: String
        let alias: String?
        let kind: Kind
        let defaultValue: String
    }

    static let int32Max = Int64(Int32.max)

    static let parameters: [Parameter] = [
        Parameter(name: "maxmemory", alias: nil, kind: .memory, defaultValue: "0"),
        Parameter(name: "maxmemory-policy", alias: nil, kind: .choice([
            "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru", "allkeys-lfu",
            "allkeys-random", "noeviction",
        ]), defaultValue: "noeviction"),
        Parameter(name: "maxmemory-samples", alias: nil, kind: .integer(min: 1, max: int32Max), defaultValue: "5"),
        Parameter(name: "maxmemory-eviction-tenacity", alias: nil, kind: .integer(min: 0, max: 100), defaultValue: "10"),
        Parameter(name: "appendonly", alias: nil, kind: .bool, defaultValue: "no"),
        Parameter(name: "appendfsync", alias: nil, kind: .choice(["everysec", "always", "no"]), defaultValue: "everysec"),
        Parameter(name: "save", alias: nil, kind: .text, defaultValue: ""),
        Parameter(name: "databases", alias: nil, kind: .immutable, defaultValue: "1"),
        Parameter(name: "timeout", alias: nil, kind: .integer(min: 0, max: int32Max), defaultValue: "0"),
        Parameter(name: "hz", alias: nil, kind: .integer(min: 0, max: int32Max), defaultValue: "10"),
        Parameter(name: "lfu-log-factor", alias: nil, kind: .integer(min: 0, max: int32Max), defaultValue: "10"),
        Parameter(name: "lfu-decay-time", alias: nil, kind: .integer(min: 0, max: int32Max), defaultValue: "1"),
        Parameter(name: "proto-max-bulk-len", alias: nil, kind: .immutable, defaultValue: "536870912"),
        Parameter(name: "hash-max-listpack-entries", alias: "hash-max-ziplist-entries",
                  kind: .integer(min: 0, max: .max), defaultValue: "512"),
        Parameter(name: "hash-max-listpack-value", alias: "hash-max-ziplist-value", kind: .memory, defaultValue: "64"),
        Parameter(name: "set-max-intset-entries", alias: nil, kind: .integer(min: 0, max: .max), defaultValue: "512"),
        Parameter(name: "zset-max-listpack-entries", alias: "zset-max-ziplist-entries",
                  kind: .integer(min: 0, max: .max), defaultValue: "128"),
        Parameter(name: "zset-max-listpack-value", alias: "zset-max-ziplist-value", kind: .memory, defaultValue: "64"),
        Parameter(name: "list-max-listpack-size", alias: "list-max-ziplist-size",
                  kind: .integer(min: Int64(Int32.min), max: int32Max), defaultValue: "-2"),
        Parameter(name: "list-compress-depth", alias: nil, kind: .integer(min: 0, max: int32Max), defaultValue: "0"),
        Parameter(name: "lazyfree-lazy-eviction", alias: nil, kind: .bool, defaultValue: "no"),
        Parameter(name: "lazyfree-lazy-expire", alias: nil, kind: .bool, defaultValue: "no"),
        Parameter(name: "lazyfree-lazy-server-del", alias: nil, kind: .bool, defaultValue: "no"),
        Parameter(name: "lazyfree-lazy-user-del", alias: nil, kind: .bool, defaultValue: "no"),
        Parameter(name: "activerehashing", alias: nil, kind: .bool, defaultValue: "yes"),
        Parameter(name: "slowlog-log-slower-than", alias: nil, kind: .integer(min: -1, max: .max), defaultValue: "10000"),
        Parameter(name: "slowlog-max-len", alias: nil, kind: .integer(min: 0, max: .max), defaultValue: "128"),
        Parameter(name: "latency-monitor-threshold", alias: nil, kind: .integer(min: 0, max: .max), defaultValue: "0"),
    ]

    /// Lower-case name or alias → parameter.
    static let byName: [String: Parameter] = {
        var t: [String: Parameter] = [:]
        for p in parameters {
            t[p.name] = p
            if let alias = p.alias { t[alias] = p }
        }
        return t
    }()

    /// The default value of a parameter (by canonical name).
    static func defaultValue(_ name: String) -> [UInt8] { Array(byName[name]!.defaultValue.utf8) }

    /// Redis's `memtoull`: digits, then an optional unit (b, k, kb, m, mb, g, gb; any case).
    static func parseMemory(_ b: [UInt8]) -> UInt64? {
        if b.first == UInt8(ascii: "-") { return nil }
        let digits = b.prefix { $0 >= 48 && $0 <= 57 }
        let unit = String(decoding: b[digits.count...], as: UTF8.self).lowercased()
        let multipliers: [String: UInt64] = [
            "": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1_000_000, "mb": 1 << 20, "g": 1_000_000_000, "gb": 1 << 30,
        ]
        guard let mul = multipliers[unit], digits.count < 128 else { return nil }
        var value: UInt64 = 0
        for d in digits {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(d - 48))
            if o1 || o2 { return nil }
            value = s
        }
        return value &* mul
    }

    /// The value to store for `raw`, or the reason it is refused.
    static func validate(_ p: Parameter, _ raw: [UInt8]) -> Result<[UInt8], ConfigRefusal> {
        switch p.kind {
        case .immutable:
            return .failure(.init(text: "can't set immutable config"))
        case .text:
            return .success(raw)
        case .bool:
            let v = String(decoding: raw, as: UTF8.self).lowercased()
            guard v == "yes" || v == "no" else { return .failure(.init(text: "argument must be 'yes' or 'no'")) }
            return .success(Array(v.utf8))
        case .choice(let options):
            let v = String(decoding: raw, as: UTF8.self).lowercased()
            guard options.contains(v) else {
                return .failure(.init(text: "argument(s) must be one of the following: " + options.joined(separator: ", ")))
            }
            return .success(Array(v.utf8))
        case .memory:
            guard let v = parseMemory(raw) else { return .failure(.init(text: "argument must be a memory value")) }
            return .success(Array(String(v).utf8))
        case .integer(let min, let max):
            guard var v = RedisNumber.parseInt(raw) else {
                return .failure(.init(text: "argument couldn't be parsed into an integer"))
            }
            guard v >= min && v <= max else {
                return .failure(.init(text: "argument must be between \(min) and \(max) inclusive"))
            }
            // Redis keeps hz between 1 and 500.
            if p.name == "hz" { v = Swift.min(500, Swift.max(1, v)) }
            return .success(Array(String(v).utf8))
        }
    }

    struct ConfigRefusal: Error { let text: String }
}

extension KVStorage {
    /// A configuration value (by canonical name), without recording a read.
    func configValue(_ name: String) -> [UInt8] { config.peek(Array(name.utf8)) ?? KVConfig.defaultValue(name) }

    /// A numeric configuration value (by canonical name).
    func configInt(_ name: String) -> Int64 { RedisNumber.parseInt(configValue(name)) ?? 0 }

    mutating func configCommand(_ a: [[UInt8]]) -> Reply {
        let sub = lower(a[1])
        switch sub {
        case "get":
            if a.count < 3 { return .arity("config|get") }
            // As Redis does: a pattern without glob characters is looked up and answered under the name as given;
            // a glob lists every matching name, aliases included, each once.
            var out: [[UInt8]] = []
            var answered = Set<[UInt8]>()
            for pattern in a.dropFirst(2) {
                if !pattern.contains(where: { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "[") }) {
                    let given = Array(pattern.prefix { $0 != 0 })
                    guard !answered.contains(given), let p = KVConfig.byName[lower(given)] else { continue }
                    answered.insert(given)
                    out += [given, config.get(Array(p.name.utf8)) ?? Array(p.defaultValue.utf8)]
                    continue
                }
                for p in KVConfig.parameters {
                    for name in [p.name] + (p.alias.map { [$0] } ?? []) {
                        let n = Array(name.utf8)
                        guard !answered.contains(n), globMatch(pattern, n, nocase: true) else { continue }
                        answered.insert(n)
                        out += [n, config.get(Array(p.name.utf8)) ?? Array(p.defaultValue.utf8)]
                    }
                }
            }
            return .bulks(out)
        case "set":
            if a.count < 4 { return .arity("config|set") }
            if a.count % 2 == 1 { return .syntax }
            // The first problem found is the one reported, as Redis does. An alias is a parameter of its own name
            // sharing the value: naming both in one call is not a duplicate, and the later one wins.
            var unknown: [UInt8]?
            var refusal: (name: [UInt8], text: String)?
            var chosen: [(name: String, KVConfig.Parameter, [UInt8])] = []
            var j = 2
            while j < a.count {
                defer { j += 2 }
                let name = lower(a[j])
                guard let p = KVConfig.byName[name] else {
                    if unknown == nil && refusal == nil { unknown = a[j] }
                    continue
                }
                if unknown != nil || refusal != nil { continue }
                if case .immutable = p.kind {
                    refusal = (a[j], "can't set immutable config")
                    continue
                }
                if chosen.contains(where: { $0.name == name }) {
                    refusal = (a[j], "duplicate parameter")
                    continue
                }
                chosen.append((name, p, a[j + 1]))
            }
            if let unknown {
                return .error("ERR Unknown option or number of arguments for CONFIG SET - '\(String(decoding: unknown, as: UTF8.self))'")
            }
            if let refusal {
                return .error("ERR CONFIG SET failed (possibly related to argument '\(String(decoding: refusal.name, as: UTF8.self))') - \(refusal.text)")
            }
            var values: [(String, [UInt8])] = []
            for (name, p, raw) in chosen {
                switch KVConfig.validate(p, raw) {
                case .failure(let r):
                    return .error("ERR CONFIG SET failed (possibly related to argument '\(name)') - \(r.text)")
                case .success(let v): values.append((p.name, v))
                }
            }
            for (name, v) in values {
                let key = Array(name.utf8)
                if v == KVConfig.defaultValue(name) {
                    if config.peek(key) != nil { config.remove(key) }
                } else if config.peek(key) != v {
                    config.set(key, v)
                }
            }
            return .ok
        case "resetstat":
            if a.count != 2 { return .arity("config|resetstat") }
            return .ok
        default:
            return .error("ERR unknown subcommand '\(String(decoding: a[1].prefix(128), as: UTF8.self))'. Try CONFIG HELP.")
        }
    }
}
