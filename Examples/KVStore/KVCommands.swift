import UnderstudyKit
import UnderstudyWire

/// What a command may know besides the state: the request context and the version's features.
public struct KVEnvironment {
    /// The request context (time and deterministic random numbers).
    public var context: RequestContext
    /// True in version 2 (COPY, LMPOP and OBJECT exist).
    public var version2: Bool
    /// The broken behaviour switched on, if any (tests of the update gate only).
    public var broken: BrokenMode?
    /// The current time in ms.
    public var now: Int64 { context.timeMillis }
    /// The client connection of a connection-scoped input (nil for a plain command or a transaction).
    public var connection: Int64?
    /// True where a blocking command may block: it came alone, as a connection-scoped input.
    public var canBlock = false
    /// Set when the command blocked: its reply is deferred.
    public var blocked = false

    /// Creates an environment.
    public init(context: RequestContext, version2: Bool, broken: BrokenMode? = nil) {
        self.context = context
        self.version2 = version2
        self.broken = broken
    }
}

/// The command table: lower-case name → (Redis arity, version-2-only).
public enum KVCommandTable {
    /// Arity as Redis defines it: n > 0 exactly n arguments (with the name), n < 0 at least -n.
    public static let commands: [String: (arity: Int, v2Only: Bool)] = {
        var t: [String: (Int, Bool)] = [:]
        let v1: [(String, Int)] = [
            ("ping", -1), ("echo", 2), ("quit", -1), ("select", 2), ("hello", -1), ("command", -1),
            ("client", -2), ("info", -1), ("config", -2), ("dbsize", 1), ("flushdb", -1), ("flushall", -1),
            ("time", 1), ("multi", 1), ("exec", 1), ("discard", 1), ("watch", -2), ("unwatch", 1),
            ("get", 2), ("set", -3), ("setnx", 3), ("setex", 4), ("psetex", 4), ("mget", -2), ("mset", -3),
            ("msetnx", -3), ("getset", 3), ("getdel", 2), ("getex", -2), ("append", 3), ("strlen", 2),
            ("getrange", 4), ("setrange", 4), ("incr", 2), ("decr", 2), ("incrby", 3), ("decrby", 3),
            ("incrbyfloat", 3), ("substr", 4), ("setbit", 4), ("getbit", 3), ("bitcount", -2), ("bitpos", -3),
            ("bitop", -4), ("bitfield", -2), ("bitfield_ro", -2), ("lcs", -3),
            ("del", -2), ("unlink", -2), ("exists", -2), ("type", 2), ("rename", 3), ("renamenx", 3),
            ("keys", 2), ("scan", -2), ("randomkey", 1), ("expire", -3), ("pexpire", -3), ("expireat", -3),
            ("pexpireat", -3), ("ttl", 2), ("pttl", 2), ("expiretime", 2), ("pexpiretime", 2), ("persist", 2),
            ("lpush", -3), ("rpush", -3), ("lpushx", -3), ("rpushx", -3), ("lpop", -2), ("rpop", -2),
            ("llen", 2), ("lrange", 4), ("lindex", 3), ("lset", 4), ("lrem", 4), ("ltrim", 4), ("linsert", 5),
            ("lpos", -3), ("lmove", 5), ("rpoplpush", 3),
            ("hset", -4), ("hsetnx", 4), ("hget", 3), ("hmset", -4), ("hmget", -3), ("hdel", -3),
            ("hexists", 3), ("hlen", 2), ("hkeys", 2), ("hvals", 2), ("hgetall", 2), ("hincrby", 4),
            ("hincrbyfloat", 4), ("hstrlen", 3), ("hrandfield", -2),
            ("sadd", -3), ("srem", -3), ("smembers", 2), ("sismember", 3), ("smismember", -3), ("scard", 2),
            ("spop", -2), ("srandmember", -2), ("sinter", -2), ("sunion", -2), ("sdiff", -2),
            ("sinterstore", -3), ("sunionstore", -3), ("sdiffstore", -3), ("smove", 4), ("sscan", -3), ("hscan", -3),
            ("sintercard", -3),
            ("zadd", -4), ("zincrby", 4), ("zrem", -3), ("zcard", 2), ("zscore", 3), ("zmscore", -3), ("zrank", 3),
            ("zrevrank", 3), ("zcount", 4), ("zlexcount", 4), ("zrange", -4), ("zrangestore", -5), ("zrevrange", -4),
            ("zrangebyscore", -4), ("zrevrangebyscore", -4), ("zrangebylex", -4), ("zrevrangebylex", -4),
            ("zremrangebyrank", 4), ("zremrangebyscore", 4), ("zremrangebylex", 4), ("zpopmin", -2), ("zpopmax", -2),
            ("zrandmember", -2), ("zunion", -3), ("zinter", -3), ("zdiff", -3), ("zunionstore", -4),
            ("zinterstore", -4), ("zdiffstore", -4), ("zintercard", -3), ("zscan", -3),
            ("blpop", -3), ("brpop", -3), ("brpoplpush", 4), ("blmove", 6), ("bzpopmin", -3), ("bzpopmax", -3),
        ]
        for (n, a) in v1 { t[n] = (a, false) }
        for (n, a) in [("copy", -3), ("lmpop", -4), ("object", -2), ("zmpop", -4), ("blmpop", -5), ("bzmpop", -5)] {
            t[n] = (a, true)
        }
        return t
    }()

    /// The number of commands a version knows.
    public static func count(version2: Bool) -> Int {
        commands.values.filter { version2 || !$0.v2Only }.count
    }

    /// The subcommands the commands with subcommands dispatch (Redis's arities), by `command|subcommand`.
    public static let subcommands: [String: (arity: Int, v2Only: Bool)] = {
        var t: [String: (Int, Bool)] = [:]
        for (n, a) in [
            ("config|get", -3), ("config|set", -4), ("config|resetstat", 2), ("client|setname", 3),
            ("client|getname", 2), ("client|id", 2), ("client|info", 2), ("client|unblock", -3), ("command|count", 2), ("command|info", -2),
            ("command|docs", -2), ("command|list", -2),
        ] { t[n] = (a, false) }
        for (n, a) in [("object|encoding", 3), ("object|freq", 3), ("object|idletime", 3), ("object|refcount", 3),
                       ("object|help", 2)] { t[n] = (a, true) }
        return t
    }()

    /// The table a version declares in its greeting: every command and subcommand it dispatches, with its arity.
    public static func declared(version2: Bool) -> CommandTable {
        CommandTable(commands.merging(subcommands) { a, _ in a }.filter { version2 || !$0.value.v2Only }.mapValues(\.arity))
    }
}

func lower(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self).lowercased() }

func eq(_ b: [UInt8], _ s: StaticString) -> Bool {
    guard b.count == s.utf8CodeUnitCount else { return false }
    let p = s.utf8Start
    for i in 0..<b.count {
        var c = b[i]
        if c >= 65 && c <= 90 { c += 32 }
        var d = p[i]
        if d >= 65 && d <= 90 { d += 32 }
        if c != d { return false }
    }
    return true
}

/// Redis's "unknown command" error, byte for byte (the same text the supervisor answers while queueing).
func unknownCommand(_ args: [[UInt8]]) -> [UInt8] { CommandTable.unknownCommandError(args) }

extension KVStorage {
    /// Executes one command and returns its RESP2 reply bytes.
    public mutating func execute(_ args: [[UInt8]], env: inout KVEnvironment) -> [UInt8] {
        guard let first = args.first else { return Array("-ERR empty command\r\n".utf8) }
        let name = lower(first)
        guard let spec = KVCommandTable.commands[name], env.version2 || !spec.v2Only else {
            return unknownCommand(args)
        }
        if (spec.arity > 0 && args.count != spec.arity) || args.count < -spec.arity {
            return Reply.arity(name).bytes
        }
        let reply = dispatch(name, args, &env)
        if !watches.keys.isEmpty { signalUnchangedModification(name, args, reply) }
        return reply.bytes
    }

    /// Commands Redis counts as modifying their key even when the value stays the same (HSET of the same value,
    /// INCRBY 0, LSET, a no-op LTRIM, APPEND of nothing, SETRANGE of the same bytes, EXPIRE to the same time, a
    /// one-element rotation): the storage notices changed values, these are signalled here for WATCH.
    mutating func signalUnchangedModification(_ name: String, _ a: [[UInt8]], _ reply: Reply) {
        if case .error = reply { return }
        switch name {
        case "hset", "hmset", "hincrby", "hincrbyfloat", "incr", "decr", "incrby", "decrby", "incrbyfloat", "lset",
            "ltrim", "append":
            break
        case "setrange":
            guard !a[3].isEmpty else { return }
        case "expire", "pexpire", "expireat", "pexpireat":
            guard reply == .integer(1) else { return }
        case "rpoplpush", "lmove":
            guard a[1] == a[2], case .bulk(_?) = reply else { return }
        default:
            return
        }
        // Only a key that exists now: a missing key's LTRIM changes nothing, and a deletion was already seen.
        guard watches.isWatched(a[1]), read(a[1]) != nil else { return }
        signalModified(a[1])
    }

    /// Executes a MULTI/EXEC transaction's commands and returns the array of their replies.
    public mutating func executeTransaction(_ commands: [[[UInt8]]], env: inout KVEnvironment) -> [UInt8] {
        var out = Array("*\(commands.count)\r\n".utf8)
        for c in commands { out.append(contentsOf: execute(c, env: &env)) }
        return out
    }

    mutating func dispatch(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        // connection and server
        case "ping", "echo", "quit", "select", "hello", "command", "client", "info", "config", "dbsize",
            "flushdb", "flushall", "time", "object":
            return serverCommand(name, a, &env)
        // transactions: the supervisor's connection handler answers these; only UNWATCH can be queued inside
        // MULTI, and by then EXEC has already forgotten the connection's watches
        case "unwatch": return .ok
        case "multi", "exec", "discard", "watch":
            return .error("ERR '\(name)' is answered by the client connection, not by the service")
        // strings
        case "get": return cmdGet(a, &env)
        case "set": return cmdSet(a, &env)
        case "setnx":
            return setGeneric(a[1], a[2], nx: true, expire: nil, seconds: false, absolute: false, name: "setnx",
                              okReply: .integer(1), abortReply: .integer(0), &env)
        case "setex", "psetex":
            return setGeneric(a[1], a[3], expire: a[2], seconds: name == "setex", absolute: false, name: name, &env)
        case "mget": return cmdMget(a, &env)
        case "mset", "msetnx": return cmdMset(a, nx: name == "msetnx", &env)
        case "getset": return cmdGetset(a, &env)
        case "getdel": return cmdGetdel(a, &env)
        case "getex": return cmdGetex(a, &env)
        case "append": return cmdAppend(a, &env)
        case "strlen": return cmdStrlen(a, &env)
        case "getrange", "substr": return cmdGetrange(a, &env)
        case "setbit", "getbit", "bitcount", "bitpos", "bitop", "bitfield", "bitfield_ro", "lcs":
            return bitCommand(name, a, &env)
        case "setrange": return cmdSetrange(a, &env)
        case "incr": return incrDecr(a[1], 1, &env)
        case "decr": return incrDecr(a[1], -1, &env)
        case "incrby":
            guard let n = RedisNumber.parseInt(a[2]) else { return .notInteger }
            return incrDecr(a[1], n, &env)
        case "decrby":
            guard let n = RedisNumber.parseInt(a[2]) else { return .notInteger }
            if n == .min { return .error("ERR decrement would overflow") }
            return incrDecr(a[1], -n, &env)
        case "incrbyfloat": return cmdIncrbyfloat(a, &env)
        // keys
        case "del", "unlink": return cmdDel(a, &env)
        case "exists": return cmdExists(a, &env)
        case "type": return cmdType(a, &env)
        case "rename", "renamenx": return cmdRename(a, nx: name == "renamenx", &env)
        case "keys": return cmdKeys(a, &env)
        case "scan": return cmdScan(a, &env)
        case "randomkey": return cmdRandomkey(&env)
        case "expire": return expireGeneric(a, base: env.now, seconds: true, name: name, &env)
        case "pexpire": return expireGeneric(a, base: env.now, seconds: false, name: name, &env)
        case "expireat": return expireGeneric(a, base: 0, seconds: true, name: name, &env)
        case "pexpireat": return expireGeneric(a, base: 0, seconds: false, name: name, &env)
        case "ttl": return ttlGeneric(a, ms: false, absolute: false, &env)
        case "pttl": return ttlGeneric(a, ms: true, absolute: false, &env)
        case "expiretime": return ttlGeneric(a, ms: false, absolute: true, &env)
        case "pexpiretime": return ttlGeneric(a, ms: true, absolute: true, &env)
        case "persist": return cmdPersist(a, &env)
        case "copy": return cmdCopy(a, &env)
        case "blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop":
            return blockingCommand(name, a, &env)
        case "zmpop": return cmdZmpop(a, &env)
        default:
            return collectionCommand(name, a, &env)
        }
    }

    // MARK: lookup helpers

    /// Reads a live key: lazily deletes it when expired; records an access unless `touch` is false.
    mutating func lookup(_ key: [UInt8], _ env: inout KVEnvironment, touch: Bool = true) -> KVValue? {
        guard let (v, exp) = read(key) else { return nil }
        if exp != kvNoExpiry && env.now > exp {
            delete(key)
            return nil
        }
        if touch { noteAccess(key, context: &env.context) }
        return v
    }

    /// The type of a live key without keeping a reference to its value (so a following in-place
    /// mutation does not copy the collection).
    mutating func kind(_ key: [UInt8], _ env: inout KVEnvironment, touch: Bool = true) -> KVKind? {
        switch lookup(key, &env, touch: touch) {
        case nil: return nil
        case .string?: return .string
        case .list?: return .list
        case .hash?: return .hash
        case .set?: return .set
        case .zset?: return .zset
        }
    }

    /// Deletes the key when it has expired; true when the key is live afterwards.
    mutating func expireIfNeeded(_ key: [UInt8], _ env: KVEnvironment) -> Bool {
        let exp = peekExpiry(key)
        if exp != kvNoExpiry && env.now > exp {
            delete(key)
            return false
        }
        return true
    }

    /// A string value, nil when missing; `.wrongType` via the error.
    mutating func getString(_ key: [UInt8], _ env: inout KVEnvironment) -> Result<[UInt8]?, ReplyError> {
        switch lookup(key, &env) {
        case nil: return .success(nil)
        case .string(let b)?: return .success(b)
        default: return .failure(ReplyError(.wrongType))
        }
    }
}

/// The type of a value.
enum KVKind { case string, list, hash, set, zset }

/// A reply that aborts a command.
struct ReplyError: Error {
    var reply: Reply
    init(_ reply: Reply) { self.reply = reply }
}

/// The optional `COUNT n` after the keys of LMPOP, ZMPOP and their blocking forms, read from `start` on: the
/// count (1 when absent), or the error Redis answers.
func mpopCount(_ a: [[UInt8]], from start: Int) -> Result<Int64, ReplyError> {
    var count: Int64 = -1
    var j = start
    while j < a.count {
        let more = a.count - 1 - j
        if count == -1 && eq(a[j], "count") && more > 0 {
            j += 1
            guard let c = RedisNumber.parseInt(a[j]), c >= 1 else {
                return .failure(ReplyError(.error("ERR count should be greater than 0")))
            }
            count = c
        } else {
            return .failure(ReplyError(.syntax))
        }
        j += 1
    }
    return .success(count == -1 ? 1 : count)
}

let maxStringLength = 512 * 1024 * 1024
