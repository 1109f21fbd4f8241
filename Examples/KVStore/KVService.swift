#if canImport(Glibc)
import Glibc
#endif
import UnderstudyKit
import UnderstudyWire

/// The request handling shared by both versions.
public enum KVServiceCore {
    /// The service name both versions share (so they may swap).
    public static let name = "kv"

    /// Reply comparison rules: replies whose order could depend on hashing, and clock reads.
    public static let comparisonRules: [String: ComparisonRule] = {
        var r: [String: ComparisonRule] = [:]
        for c in ["KEYS", "SMEMBERS", "HKEYS", "HVALS", "HGETALL", "SINTER", "SUNION", "SDIFF", "SCAN", "HRANDFIELD",
                  "SRANDMEMBER", "SPOP", "CONFIG", "COMMAND"] {
            r[c] = .orderInsensitive
        }
        for c in ["TIME", "INFO", "HELLO", "CLIENT"] { r[c] = .ignore }
        return r
    }()

    /// The blocking commands of version 1 (version 2 adds BLMPOP and BZMPOP).
    public static let blockingCommandsV1 = ["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"]

    /// Lower-case names of every blocking command (a version that lacks one answers it as unknown).
    static let blockingNames: Set<String> = Set((blockingCommandsV1 + ["BLMPOP", "BZMPOP"]).map { $0.lowercased() })

    /// Handles one request against any ``KVStorage``.
    ///
    /// Blocked requests whose deadline is before the input's time are answered first (as Redis times clients out
    /// between commands); then the input runs; then the requests blocked on keys it created are served.
    public static func handle<S: KVStorage>(
        _ request: ServiceRequest, state: inout S, context: inout RequestContext, version2: Bool, broken: BrokenMode?
    ) -> [UInt8] {
        if broken == .slow { usleep(2000) }
        var env = KVEnvironment(context: context, version2: version2, broken: broken)
        defer { context = env.context }
        state.blocking.ready = []
        state.timeOutBlocked(&env)
        let reply = handleInput(request, state: &state, env: &env)
        state.serveReadyKeys(&env)
        if env.blocked {
            env.context.deferReply()
            return []
        }
        return reply
    }

    static func handleInput<S: KVStorage>(_ request: ServiceRequest, state: inout S, env: inout KVEnvironment) -> [UInt8] {
        switch request.tag {
        case InputTag.resp:
            guard let args = try? CommandCodec.decode(request.payload) else {
                return Array("-ERR Protocol error: malformed command payload\r\n".utf8)
            }
            return state.execute(args, env: &env)
        case InputTag.respTransaction:
            guard let commands = try? CommandCodec.decodeTransaction(request.payload) else {
                return Array("-ERR Protocol error: malformed transaction payload\r\n".utf8)
            }
            return state.executeTransaction(commands, env: &env)
        case InputTag.connectionCommand:
            guard let (connection, body) = try? ConnectionInput.decode(request.payload),
                  let args = try? CommandCodec.decode(body), let first = args.first
            else {
                return Array("-ERR Protocol error: malformed connection command payload\r\n".utf8)
            }
            switch lower(first) {
            case "watch":
                if args.count < 2 { return Reply.arity("watch").bytes }
                return state.watchKeys(connection: connection, args.dropFirst(), now: env.now).bytes
            case "unwatch":
                if args.count != 1 { return Reply.arity("unwatch").bytes }
                state.watches.unwatch(connection: connection)
                return Reply.ok.bytes
            case let name where blockingNames.contains(name):
                // A blocking command on its own: it may block, holding its connection's request.
                env.connection = connection
                env.canBlock = true
                defer { env.canBlock = false }
                return state.execute(args, env: &env)
            default:
                return Array("-ERR '\(lower(first))' is not a connection command\r\n".utf8)
            }
        case InputTag.connectionTransaction:
            guard let (connection, body) = try? ConnectionInput.decode(request.payload),
                  let commands = try? CommandCodec.decodeTransaction(body)
            else {
                return Array("-ERR Protocol error: malformed transaction payload\r\n".utf8)
            }
            // Redis's EXEC: a watched key that changed aborts with a null reply; the watches go either way.
            guard state.execAllowed(connection: connection, now: env.now) else { return Reply.nullArray.bytes }
            return state.executeTransaction(commands, env: &env)
        case InputTag.connectionClosed:
            if let (connection, _) = try? ConnectionInput.decode(request.payload) {
                state.watches.unwatch(connection: connection)
                state.blocking.remove(connection: connection)
            }
            return []
        case InputTag.connectionsReset:
            state.watches.removeAll()
            state.blocking.removeAll()
            return []
        case InputTag.tick:
            state.expireCycle(now: env.now)
            return []
        default:
            return Array("-ERR unsupported input tag \(request.tag)\r\n".utf8)
        }
    }

    static func cmd(_ parts: String...) -> ServiceRequest { .command(parts) }

    static func step(_ parts: [String], _ expected: String) -> ValidationStep {
        ValidationStep(.command(parts), expect: Array(expected.utf8))
    }

    /// The validation suite both versions run (keys prefixed "__validation:").
    public static let validationSuite: [ValidationCase] = {
        let p = "__validation:"
        return [
            ValidationCase(name: "set-get", steps: [
                step(["DEL", p + "s"], ":0\r\n"),
                step(["SET", p + "s", "hello"], "+OK\r\n"),
                step(["GET", p + "s"], "$5\r\nhello\r\n"),
                step(["APPEND", p + "s", " world"], ":11\r\n"),
                step(["GETRANGE", p + "s", "-5", "-1"], "$5\r\nworld\r\n"),
                step(["SET", p + "s", "x", "NX"], "$-1\r\n"),
                step(["STRLEN", p + "s"], ":11\r\n"),
            ]),
            ValidationCase(name: "incr", steps: [
                step(["SET", p + "n", "998"], "+OK\r\n"),
                step(["INCR", p + "n"], ":999\r\n"),
                step(["INCR", p + "n"], ":1000\r\n"),
                step(["INCR", p + "n"], ":1001\r\n"),
                step(["INCRBY", p + "n", "10"], ":1011\r\n"),
                step(["GET", p + "n"], "$4\r\n1011\r\n"),
                step(["DECRBY", p + "n", "11"], ":1000\r\n"),
                step(["INCR", p + "s-not-int"], ":1\r\n"),
                step(["SET", p + "f", "abc"], "+OK\r\n"),
                step(["INCR", p + "f"], "-ERR value is not an integer or out of range\r\n"),
            ]),
            ValidationCase(name: "list", steps: [
                step(["DEL", p + "l"], ":0\r\n"),
                step(["RPUSH", p + "l", "a", "b", "c"], ":3\r\n"),
                step(["LPUSH", p + "l", "z"], ":4\r\n"),
                step(["LRANGE", p + "l", "0", "-1"], "*4\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
                step(["LPOP", p + "l"], "$1\r\nz\r\n"),
                step(["RPOP", p + "l", "2"], "*2\r\n$1\r\nc\r\n$1\r\nb\r\n"),
                step(["LLEN", p + "l"], ":1\r\n"),
            ]),
            ValidationCase(name: "hash", steps: [
                step(["HSET", p + "h", "f1", "v1", "f2", "v2"], ":2\r\n"),
                step(["HGET", p + "h", "f1"], "$2\r\nv1\r\n"),
                step(["HINCRBY", p + "h", "c", "5"], ":5\r\n"),
                step(["HLEN", p + "h"], ":3\r\n"),
                step(["HDEL", p + "h", "f1", "nope"], ":1\r\n"),
                step(["GET", p + "h"], "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
            ]),
            ValidationCase(name: "set", steps: [
                step(["SADD", p + "a", "1", "2", "3"], ":3\r\n"),
                step(["SADD", p + "b", "2", "3", "4"], ":3\r\n"),
                step(["SINTER", p + "a", p + "b"], "*2\r\n$1\r\n2\r\n$1\r\n3\r\n"),
                step(["SISMEMBER", p + "a", "1"], ":1\r\n"),
                step(["SCARD", p + "b"], ":3\r\n"),
            ]),
            ValidationCase(name: "expiry", steps: [
                step(["SET", p + "e", "v", "EX", "100"], "+OK\r\n"),
                step(["TTL", p + "e"], ":100\r\n"),
                step(["PERSIST", p + "e"], ":1\r\n"),
                step(["TTL", p + "e"], ":-1\r\n"),
                step(["PEXPIRE", p + "e", "-1"], ":1\r\n"),
                step(["EXISTS", p + "e"], ":0\r\n"),
                step(["TTL", p + "missing"], ":-2\r\n"),
            ]),
        ]
    }()
}

/// Version 1 of the key-value service (schema 1).
public struct KVServiceV1: UnderstudyService {
    public typealias State = KVStateV1
    public static var name: String { KVServiceCore.name }
    public static var version: String { "1.0.0" }
    public static var schemaVersion: UInt32 { 1 }
    public static var comparisonRules: [String: ComparisonRule] { KVServiceCore.comparisonRules }
    public static var commandTable: CommandTable? { KVCommandTable.declared(version2: false) }
    public static var blockingCommands: [String] { KVServiceCore.blockingCommandsV1 }

    /// The deliberately broken behaviour, if switched on (one of ``BrokenMode/version1Modes``).
    public let broken: BrokenMode?

    /// Creates the service.
    /// - Parameter broken: a deliberately broken behaviour from ``BrokenMode/version1Modes``, or nil.
    public init(broken: BrokenMode? = nil) {
        precondition(broken.map { BrokenMode.version1Modes.contains($0) } ?? true,
                     "kv 1.0.0 does not take broken mode \(broken.map(\.rawValue) ?? "")")
        self.broken = broken
    }

    public func makeInitialState() -> KVStateV1 { KVStateV1() }

    public func handle(_ request: ServiceRequest, state: inout KVStateV1, context: inout RequestContext) -> [UInt8] {
        KVServiceCore.handle(request, state: &state, context: &context, version2: false, broken: broken)
    }

    public var validationSuite: [ValidationCase] { KVServiceCore.validationSuite }
}

/// Version 2 of the key-value service (schema 2: one entry record per key with access metadata;
/// adds COPY, LMPOP and OBJECT).
public struct KVServiceV2: UnderstudyService {
    public typealias State = KVStateV2
    public static var name: String { KVServiceCore.name }
    public static var version: String { "2.0.0" }
    public static var schemaVersion: UInt32 { 2 }
    public static var minimumMigratableSchema: UInt32 { 1 }
    public static var supportsDowngrade: Bool { true }
    public static var comparisonRules: [String: ComparisonRule] {
        var r = KVServiceCore.comparisonRules
        r["OBJECT"] = .exact
        return r
    }
    public static var commandTable: CommandTable? { KVCommandTable.declared(version2: true) }
    public static var blockingCommands: [String] { KVServiceCore.blockingCommandsV1 + ["BLMPOP", "BZMPOP"] }

    /// The deliberately broken behaviour, if switched on (see ``BrokenMode``).
    public let broken: BrokenMode?

    /// Creates the service.
    public init(broken: BrokenMode? = nil) { self.broken = broken }

    public func makeInitialState() -> KVStateV2 { KVStateV2() }

    public func handle(_ request: ServiceRequest, state: inout KVStateV2, context: inout RequestContext) -> [UInt8] {
        KVServiceCore.handle(request, state: &state, context: &context, version2: true, broken: broken)
    }

    /// Builds a schema-2 state from a schema-1 snapshot (maps "data", "expires" and "config", the watches, and the
    /// blocked requests, which keep waiting).
    public func migrate(from snapshot: StateSnapshot) throws -> KVStateV2 {
        if broken == .crashInMigrate { fatalError("kv: deliberately broken: crash-in-migrate") }
        guard snapshot.schemaVersion == 1 else {
            throw MigrationError("kv 2.0.0 migrates from schema 1, not \(snapshot.schemaVersion)")
        }
        var old = KVStateV1()
        try snapshot.decodeMap("data", into: &old.data)
        try snapshot.decodeMap("expires", into: &old.expires)
        try snapshot.decodeMap("config", into: &old.config)
        try snapshot.decodeMap("watch.clients", into: &old.watches.clients)
        try snapshot.decodeMap("watch.keys", into: &old.watches.keys)
        try old.blocking.decode(from: snapshot)
        return Self.upgrade(old)
    }

    /// Converts a schema-1 state to schema 2 (access metadata starts unknown).
    public static func upgrade(_ old: KVStateV1) -> KVStateV2 {
        var new = KVStateV2()
        old.data.forEach { k, v in
            new.entries.set(k, KVEntry(value: v, expireAt: old.expires.peek(k) ?? kvNoExpiry, lastAccess: 0,
                                       frequency: KVStateV2.initialFrequency))
        }
        old.expires.forEach { k, t in if old.data.peek(k) != nil { new.volatile.set(k, t) } }
        old.config.forEach { k, v in new.config.set(k, v) }
        new.watches = old.watches
        new.blocking = old.blocking
        _ = new.drainTouchedKeys()
        return new
    }

    /// Converts the state to schema 1 (access metadata is dropped).
    public func downgrade(_ state: KVStateV2) throws -> (any TrackedState)? { Self.downgradeState(state) }

    /// The schema-1 state for a schema-2 state.
    public static func downgradeState(_ state: KVStateV2) -> KVStateV1 {
        var old = KVStateV1()
        state.entries.forEach { k, e in
            old.data.set(k, e.value)
            if e.expireAt != kvNoExpiry { old.expires.set(k, e.expireAt) }
        }
        state.config.forEach { k, v in old.config.set(k, v) }
        old.watches = state.watches
        old.blocking = state.blocking
        _ = old.drainTouchedKeys()
        return old
    }

    public var validationSuite: [ValidationCase] {
        var suite = KVServiceCore.validationSuite
        let p = "__validation:"
        suite.append(ValidationCase(name: "v2-copy-lmpop", steps: [
            KVServiceCore.step(["RPUSH", p + "src", "a", "b"], ":2\r\n"),
            KVServiceCore.step(["COPY", p + "src", p + "dst"], ":1\r\n"),
            KVServiceCore.step(["LMPOP", "1", p + "dst", "LEFT", "COUNT", "5"],
                               "*2\r\n$16\r\n__validation:dst\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
            KVServiceCore.step(["OBJECT", "ENCODING", p + "src"], "$9\r\nquicklist\r\n"),
        ]))
        return suite
    }
}
