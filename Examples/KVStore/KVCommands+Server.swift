import UnderstudyKit
import UnderstudyWire

/// The Redis version this service answers as.
public let kvRedisVersion = "7.0.15"

extension KVStorage {
    mutating func serverCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "ping":
            if a.count > 2 { return .arity("ping") }
            return a.count == 2 ? .bulk(a[1]) : .simple("PONG")
        case "echo": return .bulk(a[1])
        case "quit": return .ok
        case "select":
            guard let db = RedisNumber.parseInt(a[1]) else { return .notInteger }
            guard db >= Int64(Int32.min), db <= Int64(Int32.max) else {
                return .error("ERR value is out of range, value must between -2147483648 and 2147483647")
            }
            return db == 0 ? .ok : .error("ERR DB index is out of range")
        case "hello": return cmdHello(a)
        case "command": return cmdCommand(a, &env)
        case "client": return cmdClient(a, &env)
        case "info": return cmdInfo(a, &env)
        case "config": return configCommand(a)
        case "dbsize": return .integer(Int64(keyCount))
        case "flushdb", "flushall":
            if a.count > 2 { return .syntax }
            if a.count == 2 && !eq(a[1], "sync") && !eq(a[1], "async") { return .syntax }
            removeAllKeys()
            return .ok
        case "time":
            let ms = env.now
            return .array([.text(String(ms / 1000)), .text(String((ms % 1000) * 1000))])
        case "object": return cmdObject(a, &env)
        default: return .error("ERR unknown command '\(name)'")
        }
    }

    func cmdHello(_ a: [[UInt8]]) -> Reply {
        var j = 1
        if a.count >= 2 {
            guard let ver = RedisNumber.parseInt(a[1]) else {
                return .error("ERR Protocol version is not an integer or out of range")
            }
            // This server speaks RESP2 only: it answers HELLO 3 the way a server without RESP3 does.
            if ver != 2 { return .error("NOPROTO unsupported protocol version") }
            j = 2
        }
        while j < a.count {
            let more = a.count - 1 - j
            if eq(a[j], "auth") && more >= 2 {
                j += 3
            } else if eq(a[j], "setname") && more >= 1 {
                j += 2
            } else {
                return .error("ERR Syntax error in HELLO option '\(String(decoding: a[j], as: UTF8.self))'")
            }
        }
        return .array([
            .text("server"), .text("redis"), .text("version"), .text(kvRedisVersion), .text("proto"), .integer(2),
            .text("id"), .integer(1), .text("mode"), .text("standalone"), .text("role"), .text("master"),
            .text("modules"), .emptyArray,
        ])
    }

    func commandInfo(_ name: String, _ arity: Int) -> Reply {
        let noKeys: Set<String> = [
            "ping", "echo", "quit", "select", "hello", "command", "client", "info", "config", "dbsize", "flushdb",
            "flushall", "time", "keys", "scan", "randomkey", "object", "lmpop", "zunion", "zinter", "zdiff", "zintercard",
            "sintercard", "bitop", "multi", "exec", "discard", "unwatch",
        ]
        let (first, last, step): (Int64, Int64, Int64)
        if noKeys.contains(name) {
            (first, last, step) = (0, 0, 0)
        } else if ["mset", "msetnx"].contains(name) {
            (first, last, step) = (1, -1, 2)
        } else if ["mget", "del", "unlink", "exists", "sinter", "sunion", "sdiff", "sinterstore", "sunionstore",
                   "sdiffstore", "watch"].contains(name) {
            (first, last, step) = (1, -1, 1)
        } else if ["rename", "renamenx", "lmove", "rpoplpush", "smove", "copy", "zrangestore", "lcs"].contains(name) {
            (first, last, step) = (1, 2, 1)
        } else {
            (first, last, step) = (1, 1, 1)
        }
        return .array([
            .text(name), .integer(Int64(arity)), .emptyArray, .integer(first), .integer(last), .integer(step),
            .emptyArray, .emptyArray, .emptyArray, .emptyArray,
        ])
    }

    func cmdCommand(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let table = KVCommandTable.commands.filter { env.version2 || !$0.value.v2Only }
        if a.count == 1 {
            return .array(table.keys.sorted().map { commandInfo($0, table[$0]!.arity) })
        }
        let sub = lower(a[1])
        switch sub {
        case "count":
            if a.count != 2 { return .arity("command|count") }
            return .integer(Int64(table.count))
        case "info":
            let names = a.count == 2 ? table.keys.sorted() : a.dropFirst(2).map { lower($0) }
            return .array(names.map { n in table[n].map { commandInfo(n, $0.arity) } ?? .nullArray })
        case "docs":
            return .emptyArray
        case "list":
            return .bulks(table.keys.sorted().map { Array($0.utf8) })
        default:
            return .error("ERR unknown subcommand '\(String(decoding: a[1].prefix(128), as: UTF8.self))'. Try COMMAND HELP.")
        }
    }

    mutating func cmdClient(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let sub = lower(a[1])
        switch sub {
        case "unblock":
            return cmdClientUnblock(a, &env)
        case "setname":
            if a.count != 3 { return .arity("client|setname") }
            if a[2].contains(where: { $0 < 33 || $0 > 126 }) {
                return .error("ERR Client names cannot contain spaces, newlines or special characters.")
            }
            return .ok
        case "getname":
            if a.count != 2 { return .arity("client|getname") }
            return .null
        case "id":
            if a.count != 2 { return .arity("client|id") }
            return .integer(1)
        case "info":
            return .text("id=1 addr=worker fd=0 name= db=0 cmd=client|info\n")
        default:
            return .error("ERR unknown subcommand '\(String(decoding: a[1].prefix(128), as: UTF8.self))'. Try CLIENT HELP.")
        }
    }

    /// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]`: the blocked request of that connection (the supervisor's
    /// `CLIENT ID`, which is also the connection of every input it journals) is answered now, as a timeout (a
    /// null) or with Redis's UNBLOCKED error; 1 when the client was blocked, else 0. Journaled like any command,
    /// so every replica unblocks the same request at the same point.
    mutating func cmdClientUnblock(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        if a.count < 3 || a.count > 4 { return .arity("client|unblock") }
        guard let id = RedisNumber.parseInt(a[2]) else { return .notInteger }
        var asError = false
        if a.count == 4 {
            if eq(a[3], "error") {
                asError = true
            } else if !eq(a[3], "timeout") {
                return .error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
            }
        }
        guard let sequence = blocking.sequence(ofConnection: id) else { return .integer(0) }
        blocking.remove(sequence)
        let reply: Reply = asError ? .error("UNBLOCKED client unblocked via CLIENT UNBLOCK") : .nullArray
        env.context.reply(to: sequence, reply.bytes)
        return .integer(1)
    }

    /// An estimate of the bytes the state occupies: keys, values and per-entry overhead.
    /// An estimate of the bytes the state occupies (INFO's `used_memory`): per key, its slot and share of the
    /// structure, a key too long to be stored inline, the value's bytes and an expiry's entry.
    ///
    /// Exact over up to ``exactEstimateKeys`` keys; above that, 1 024 keys at evenly spaced ranks (O(log n) each)
    /// stand for the rest, so INFO costs the same at 10 thousand and 10 million keys instead of a walk of the whole
    /// keyspace that stalls every client. The ranks depend only on the key count, so every replica answers alike.
    public func estimatedMemory() -> Int {
        func cost(_ k: [UInt8], _ v: KVValue, _ exp: Int64) -> Int {
            Self.estimatedBytesPerKey + (k.count > 15 ? 32 + k.count : 0) + v.byteEstimate + (exp == kvNoExpiry ? 0 : 57)
        }
        let n = keyCount
        if n <= Self.exactEstimateKeys {
            var total = 0
            forEachKey { k, v, exp in total += cost(k, v, exp) }
            return total
        }
        var sampled = 0
        for i in 0..<Self.estimateSamples {
            let (k, v, exp) = entry(atRank: i * n / Self.estimateSamples)
            sampled += cost(k, v, exp)
        }
        return Int((Double(sampled) / Double(Self.estimateSamples) * Double(n)).rounded())
    }

    /// Up to this many keys, INFO's memory estimate visits every key.
    static var exactEstimateKeys: Int { 4_096 }
    /// Above ``exactEstimateKeys``, how many keys the estimate samples.
    static var estimateSamples: Int { 1_024 }

    mutating func cmdInfo(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let wanted = Set(a.dropFirst().map { lower($0) })
        let all = wanted.isEmpty || wanted.contains("all") || wanted.contains("everything") || wanted.contains("default")
        var out = ""
        if all || wanted.contains("server") {
            out += "# Server\r\nredis_version:\(kvRedisVersion)\r\nredis_mode:standalone\r\n"
            out += "understudy_service:kv\r\nunderstudy_kv_version:\(env.version2 ? 2 : 1)\r\n"
            out += "uptime_in_seconds:0\r\nunix_time_millis:\(env.now)\r\n\r\n"
        }
        if all || wanted.contains("clients") {
            // Connections live in the supervisor; the service knows the clients blocked in its state.
            out += "# Clients\r\nblocked_clients:\(blocking.count)\r\n\r\n"
        }
        if all || wanted.contains("memory") {
            let used = estimatedMemory()
            out += "# Memory\r\nused_memory:\(used)\r\nused_memory_human:\(human(used))\r\n"
            out += "maxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n"
        }
        if all || wanted.contains("keyspace") {
            out += "# Keyspace\r\n"
            var volatile = 0
            forEachVolatileKey { _, _ in volatile += 1 }
            if keyCount > 0 { out += "db0:keys=\(keyCount),expires=\(volatile),avg_ttl=0\r\n" }
        }
        while out.hasSuffix("\r\n\r\n") { out.removeLast(2) }
        return .text(out)
    }

    func human(_ n: Int) -> String {
        let d = Double(n)
        if d < 1024 { return "\(n)B" }
        if d < 1024 * 1024 { return String(Int(d / 1024 * 100)) .withDecimal + "K" }
        if d < 1024 * 1024 * 1024 { return String(Int(d / 1024 / 1024 * 100)).withDecimal + "M" }
        return String(Int(d / 1024 / 1024 / 1024 * 100)).withDecimal + "G"
    }

    mutating func cmdObject(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let sub = lower(a[1])
        if sub == "help" {
            return .bulks([
                "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", "ENCODING <key>",
                "FREQ <key>", "IDLETIME <key>", "REFCOUNT <key>", "HELP",
            ].map { Array($0.utf8) })
        }
        guard ["encoding", "freq", "idletime", "refcount"].contains(sub) else {
            return .error("ERR unknown subcommand '\(String(decoding: a[1].prefix(128), as: UTF8.self))'. Try OBJECT HELP.")
        }
        if a.count != 3 { return .arity("object|\(sub)") }
        guard let v = lookup(a[2], &env, touch: false) else { return .null }
        switch sub {
        case "encoding": return .text(encodingName(v))
        case "refcount": return .integer(1)
        default:
            let info = accessInfo(a[2], now: env.now) ?? (0, Int(KVStateV2.initialFrequency))
            return sub == "freq" ? .integer(Int64(info.frequency)) : .integer(info.idleMillis / 1000)
        }
    }

    /// The encoding Redis 7.0 would report for a value of this shape under the configured thresholds (Redis
    /// never converts back to a compact encoding; this answers from the current shape).
    func encodingName(_ v: KVValue) -> String {
        switch v {
        case .string(let b):
            if b.count <= 20, RedisNumber.parseInt(b) != nil { return "int" }
            return b.count <= 44 ? "embstr" : "raw"
        case .list: return "quicklist"
        case .hash(let h):
            let entries = configInt("hash-max-listpack-entries"), value = configInt("hash-max-listpack-value")
            // The count first: the pass over the entries is only for a collection within it.
            let small = Int64(h.count) <= entries
                && h.fields.entries().allSatisfy { Int64($0.key.byteCount) <= value && Int64($0.value.count) <= value }
            return small ? "listpack" : "hashtable"
        case .set(let s):
            let ints = Int64(s.count) <= configInt("set-max-intset-entries")
                && s.members.entries().allSatisfy { RedisNumber.parseInt($0.key.bytes) != nil }
            return ints ? "intset" : "hashtable"
        case .zset(let z):
            let entries = configInt("zset-max-listpack-entries"), value = configInt("zset-max-listpack-value")
            let small = Int64(z.count) <= entries && z.scores.entries().allSatisfy { Int64($0.key.byteCount) <= value }
            return small ? "listpack" : "skiplist"
        }
    }

    /// Active expiry: deletes up to `limit` expired keys, choosing them in key order so every replica deletes
    /// the same ones. Returns how many were deleted.
    @discardableResult
    public mutating func expireCycle(now: Int64, limit: Int = 200) -> Int {
        var expired: [[UInt8]] = []
        forEachVolatileKey { k, t in if now > t { expired.append(k) } }
        if expired.count > limit {
            expired.sort(by: bytesLess)
            expired.removeLast(expired.count - limit)
        }
        for k in expired { delete(k) }
        return expired.count
    }
}

extension String {
    fileprivate var withDecimal: String {
        let padded = count < 3 ? String(repeating: "0", count: 3 - count) + self : self
        return String(padded.dropLast(2)) + "." + String(padded.suffix(2))
    }
}
