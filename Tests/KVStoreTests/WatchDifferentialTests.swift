import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// WATCH / MULTI / EXEC against redis-server with several clients: the same commands go to redis-server over
/// their own connections and to both versions in-process, as the supervisor's front-end journals them.
@Suite("WATCH and MULTI differential against redis-server", .serialized,
       .enabled(if: RedisServer.isAvailable, "redis-server is not installed; install it to run the differential tests"))
struct WatchDifferentialTests {
    /// Both versions, fed the journaled inputs the front-end would send.
    struct Replicas {
        var v1 = ServiceEngine(service: KVServiceV1())
        var v2 = ServiceEngine(service: KVServiceV2())
        var sequence: UInt64 = 0

        mutating func apply(_ tag: UInt8, _ payload: [UInt8], at time: Int64) -> (v1: [UInt8], v2: [UInt8]) {
            sequence += 1
            let r = ApplyRequest(sequence: sequence, time: time, seed: sequence &* 7919, tag: tag, payload: payload)
            return (v1.apply(r).response, v2.apply(r).response)
        }
    }

    /// One client: its redis-server connection and the front-end state the supervisor keeps for it.
    final class Client {
        var redis: RESPClient
        var id: Int64
        var watching = false
        var inMulti = false
        var queued: [[[UInt8]]] = []
        var failed = false
        init(redis: RESPClient, id: Int64) {
            self.redis = redis
            self.id = id
        }
    }

    final class Run {
        let server: RedisServer
        let clock: RESPClient
        var replicas = Replicas()
        var mismatches: [String] = []
        var nextID: Int64 = 1
        var outcomes: [String: Int] = [:]
        let table = KVCommandTable.declared(version2: false)

        init(server: RedisServer) throws {
            self.server = server
            clock = try server.connect()
        }

        func client() throws -> Client {
            nextID += 1
            return Client(redis: try server.connect(), id: nextID)
        }

        func now() throws -> Int64 {
            redisMillis(try clock.call("TIME")) ?? wallMillis()
        }

        func record(_ what: String, _ ours: (v1: [UInt8], v2: [UInt8]), _ theirs: [UInt8], _ mode: Comparison = .exact) {
            for (version, reply) in [("v1", ours.v1), ("v2", ours.v2)] {
                if let d = compareReplies(reply, theirs, mode), mismatches.count < 30 {
                    mismatches.append("\(version) \(what): \(d)".unicodeScalars.map {
                        $0.value < 32 || $0.value == 127 ? "." : String($0)
                    }.joined())
                }
            }
        }

        static func args(_ parts: [String]) -> [[UInt8]] { parts.map { Array($0.utf8) } }

        /// A command from `c`, handled as the front-end handles it.
        func send(_ c: Client, _ parts: [String], _ mode: Comparison = .exact) throws {
            let args = Self.args(parts)
            let time = try now()
            let theirs = try c.redis.pipeline([args])[0]
            let what = "client \(c.id) \(parts.joined(separator: " "))"
            let name = parts[0].uppercased()
            let ok = (v1: Array("+OK\r\n".utf8), v2: Array("+OK\r\n".utf8))
            func connectionCommand(_ command: [[UInt8]]) -> (v1: [UInt8], v2: [UInt8]) {
                replicas.apply(InputTag.connectionCommand,
                               ConnectionInput.encode(connection: c.id, body: CommandCodec.encode(command)), at: time)
            }
            switch name {
            case "WATCH":
                if c.inMulti {
                    let e = Array("-ERR WATCH inside MULTI is not allowed\r\n".utf8)
                    record(what, (e, e), theirs)
                } else {
                    c.watching = true
                    record(what, connectionCommand(args), theirs)
                }
            case "UNWATCH" where !c.inMulti:
                if c.watching {
                    c.watching = false
                    record(what, connectionCommand(args), theirs)
                } else {
                    record(what, ok, theirs)
                }
            case "EXEC" where !c.inMulti, "DISCARD" where !c.inMulti:
                let e = Array("-ERR \(name) without MULTI\r\n".utf8)
                record(what, (e, e), theirs)
            case "MULTI":
                c.inMulti = true
                c.queued = []
                c.failed = false
                record(what, ok, theirs)
            case "DISCARD":
                c.inMulti = false
                if c.watching {
                    c.watching = false
                    record(what, connectionCommand(Self.args(["UNWATCH"])), theirs)
                } else {
                    record(what, ok, theirs)
                }
            case "EXEC":
                c.inMulti = false
                let ours: (v1: [UInt8], v2: [UInt8])
                if c.failed {
                    if c.watching { _ = connectionCommand(Self.args(["UNWATCH"])) }
                    let abort = Array("-EXECABORT Transaction discarded because of previous errors.\r\n".utf8)
                    ours = (abort, abort)
                } else if c.watching {
                    ours = replicas.apply(
                        InputTag.connectionTransaction,
                        ConnectionInput.encode(connection: c.id, body: CommandCodec.encodeTransaction(c.queued)), at: time)
                } else {
                    ours = replicas.apply(InputTag.respTransaction, CommandCodec.encodeTransaction(c.queued), at: time)
                }
                c.watching = false
                outcomes[String(decoding: theirs.prefix(3), as: UTF8.self), default: 0] += 1
                record(what, ours, theirs, mode)
            default:
                if c.inMulti {
                    if let refusal = table.refusal(args) {
                        c.failed = true
                        record(what, (refusal, refusal), theirs)
                    } else {
                        c.queued.append(args)
                        let q = Array("+QUEUED\r\n".utf8)
                        record(what, (q, q), theirs)
                    }
                } else {
                    record(what, replicas.apply(InputTag.resp, CommandCodec.encode(args), at: time), theirs, mode)
                }
            }
        }

        /// The client disconnects (a watching one's disconnect is journaled) and comes back as a new connection.
        func reconnect(_ c: Client) throws {
            if c.watching {
                _ = replicas.apply(InputTag.connectionClosed, ConnectionInput.encode(connection: c.id), at: try now())
            }
            let fresh = try client()
            c.redis = fresh.redis
            c.id = fresh.id
            c.watching = false
            c.inMulti = false
        }
    }

    /// Commands whose replies depend on when redis-server's active expiry runs (the keys this test lets expire).
    static let timingDependent: Set<String> = ["DBSIZE", "KEYS", "SCAN", "RANDOMKEY"]

    static func command(_ g: inout CommandGenerator, exactOnly: Bool = false) -> ([String], Comparison) {
        while true {
            let (c, mode) = g.next()
            if timingDependent.contains(c[0]) { continue }
            if exactOnly, case .exact = mode {} else if exactOnly { continue }
            return (c, mode)
        }
    }

    static func runRounds(seed: UInt64, rounds: Int) throws -> (mismatches: [String], outcomes: [String: Int]) {
        let exe = try #require(RedisServer.executable)
        let server = try RedisServer(executable: exe)
        defer { server.stop() }
        let run = try Run(server: server)
        var rng = SeededRNG(seed: seed)
        var g = CommandGenerator(seed: seed, includeV2: false, now: wallMillis)
        let a = try run.client()
        let b = try run.client()
        let d = try run.client()
        func key() -> String { rng.chance(0.8) ? g.key() : "x\(rng.int(3))" }

        for _ in 0..<rounds {
            // Keys that expire: already expired when watched, or expiring before EXEC.
            let shortLived = rng.chance(0.2)
            if shortLived {
                try run.send(b, ["SET", "x\(rng.int(3))", "v", "PX", rng.chance(0.5) ? "1" : "20"])
                usleep(3000)
            }
            try run.send(a, ["WATCH"] + (0..<(1 + rng.int(3))).map { _ in key() })
            if rng.chance(0.3) { try run.send(a, ["WATCH", key()]) }
            if rng.chance(0.4) { try run.send(d, ["WATCH"] + (0..<(1 + rng.int(2))).map { _ in key() }) }
            for _ in 0..<rng.int(4) {
                let (c, mode) = command(&g)
                try run.send(rng.chance(0.15) ? a : b, c, mode)
            }
            if shortLived && rng.chance(0.5) {
                try run.send(b, [rng.pick(["GET", "EXISTS", "TYPE"]), "x\(rng.int(3))"])
            }
            if rng.chance(0.05) { try run.send(b, [rng.pick(["FLUSHALL", "FLUSHDB"])]) }
            if rng.chance(0.05) { try run.send(a, ["UNWATCH"]) }
            if shortLived { usleep(25_000) }
            try run.send(a, ["MULTI"])
            if rng.chance(0.05) { try run.send(a, ["WATCH", key()]) }
            for _ in 0..<rng.int(4) {
                switch rng.int(20) {
                case 0: try run.send(a, ["NOPE", key()])
                case 1: try run.send(a, [rng.pick(["GET", "SET", "INCR", "HSET"])])
                case 2: try run.send(a, ["UNWATCH"])
                default: try run.send(a, command(&g, exactOnly: true).0)
                }
                if rng.chance(0.3) {
                    let (c, mode) = command(&g)
                    try run.send(b, c, mode)
                }
            }
            if rng.chance(0.1) {
                try run.send(a, ["DISCARD"])
            } else {
                try run.send(a, ["EXEC"])
            }
            if rng.chance(0.5) {
                try run.send(d, ["MULTI"])
                try run.send(d, ["PING"])
                try run.send(d, ["EXEC"])
            } else if rng.chance(0.2) {
                try run.reconnect(d)
            }
            // Tidy the expiring keys on both sides (their deletion by expiry is timing-dependent in redis-server).
            if shortLived {
                let time = try run.now()
                _ = try b.redis.call("DEL", "x0", "x1", "x2")
                _ = run.replicas.apply(InputTag.resp, CommandCodec.encode(Run.args(["DEL", "x0", "x1", "x2"])), at: time)
            }
            if !run.mismatches.isEmpty { break }
        }
        // Every connection's watches are gone once it has EXECed, UNWATCHed or left; the state stays bounded.
        try run.send(d, ["UNWATCH"])
        for (name, s) in [("v1", run.replicas.v1.state.watches), ("v2", run.replicas.v2.state.watches)]
        where !s.clients.isEmpty || !s.keys.isEmpty {
            run.mismatches.append("\(name) keeps \(s.clients.count) watchers and \(s.keys.count) watched keys at the end")
        }
        return (run.mismatches, run.outcomes)
    }

    /// Named sequences of (client, command), replayed against redis-server and both versions.
    static let scenarios: [(String, [(Int, [String])])] = {
        let many = (0..<200).map { "many:\($0)" }
        return [
            ("no change", [(0, ["SET", "k", "1"]), (0, ["WATCH", "k"]), (1, ["GET", "k"]), (0, ["MULTI"]),
                           (0, ["INCR", "k"]), (0, ["EXEC"])]),
            ("another client's change", [(0, ["WATCH", "k"]), (1, ["SET", "k", "2"]), (0, ["MULTI"]), (0, ["INCR", "k"]),
                                         (0, ["EXEC"]), (0, ["GET", "k"])]),
            ("the watcher's own change", [(0, ["WATCH", "k"]), (0, ["SET", "k", "3"]), (0, ["MULTI"]), (0, ["EXEC"])]),
            ("a change between MULTI and EXEC", [(0, ["WATCH", "k"]), (0, ["MULTI"]), (0, ["INCR", "k"]),
                                                 (1, ["DEL", "k"]), (0, ["EXEC"]), (0, ["EXISTS", "k"])]),
            ("200 keys, one changed", [(0, ["WATCH"] + many), (1, ["SET", "many:150", "x"]), (0, ["MULTI"]),
                                       (0, ["GET", "many:150"]), (0, ["EXEC"]), (0, ["WATCH"] + many), (0, ["MULTI"]),
                                       (0, ["MGET", "many:0", "many:150"]), (0, ["EXEC"])]),
            ("a missing key, created", [(0, ["DEL", "m"]), (0, ["WATCH", "m"]), (1, ["DEL", "m"]), (0, ["MULTI"]),
                                        (0, ["EXEC"]), (0, ["WATCH", "m"]), (1, ["LPUSH", "m", "a"]), (0, ["MULTI"]),
                                        (0, ["EXEC"])]),
            ("nested WATCH", [(0, ["WATCH", "a"]), (0, ["WATCH", "b", "a"]), (1, ["SET", "b", "1"]), (0, ["WATCH", "c"]),
                              (0, ["MULTI"]), (0, ["PING"]), (0, ["EXEC"])]),
            ("WATCH after MULTI", [(0, ["WATCH", "k"]), (0, ["MULTI"]), (0, ["WATCH", "j"]), (0, ["GET", "k"]),
                                   (1, ["SET", "j", "1"]), (0, ["EXEC"])]),
            ("two watchers, one transaction changes the key", [(0, ["WATCH", "t"]), (1, ["WATCH", "t"]), (0, ["MULTI"]),
                                                               (0, ["SET", "t", "0"]), (0, ["EXEC"]), (1, ["MULTI"]),
                                                               (1, ["SET", "t", "1"]), (1, ["EXEC"]), (1, ["GET", "t"])]),
            ("UNWATCH, DISCARD and EXEC without MULTI", [
                (0, ["WATCH", "u"]), (1, ["SET", "u", "1"]), (0, ["UNWATCH"]), (0, ["MULTI"]), (0, ["EXEC"]),
                (0, ["WATCH", "u"]), (1, ["SET", "u", "2"]), (0, ["MULTI"]), (0, ["DISCARD"]), (0, ["MULTI"]),
                (0, ["EXEC"]), (0, ["WATCH", "u"]), (0, ["EXEC"]), (1, ["SET", "u", "3"]), (0, ["MULTI"]),
                (0, ["EXEC"]),
            ]),
            ("EXECABORT beats a null reply; runtime errors stay per command", [
                (0, ["WATCH", "e"]), (1, ["SET", "e", "x"]), (0, ["MULTI"]), (0, ["INCR"]), (0, ["FOO", "bar"]),
                (0, ["CONFIG", "NOPE"]), (0, ["EXEC"]), (0, ["WATCH", "e"]), (0, ["MULTI"]), (0, ["INCR", "e"]),
                (0, ["SET", "f", "1"]), (0, ["EXEC"]), (0, ["GET", "f"]),
            ]),
            ("an empty transaction", [(0, ["WATCH", "k"]), (0, ["MULTI"]), (0, ["EXEC"]), (0, ["WATCH", "k"]),
                                      (1, ["SET", "k", "e"]), (0, ["MULTI"]), (0, ["EXEC"])]),
            ("FLUSHALL", [(0, ["SET", "k", "1"]), (0, ["WATCH", "nope"]), (1, ["FLUSHALL"]), (0, ["MULTI"]), (0, ["EXEC"]),
                          (0, ["SET", "k", "1"]), (0, ["WATCH", "k"]), (1, ["FLUSHDB"]), (0, ["MULTI"]), (0, ["EXEC"])]),
            ("expiry", [(1, ["SET", "x", "v", "PX", "1"]), (0, ["SLEEP"]), (0, ["WATCH", "x"]), (0, ["MULTI"]),
                        (0, ["EXEC"]), (1, ["SET", "x", "v", "PX", "20"]), (0, ["WATCH", "x"]), (0, ["SLEEP"]),
                        (0, ["MULTI"]), (0, ["EXEC"]), (1, ["SET", "x", "v", "PX", "1"]), (0, ["SLEEP"]),
                        (0, ["WATCH", "x"]), (1, ["SET", "x", "w"]), (0, ["MULTI"]), (0, ["EXEC"])]),
        ]
    }()

    @Test("named sequences with two clients: no change, changes by others and by the watcher, many keys, missing keys, nested WATCH, WATCH after MULTI, EXECABORT, FLUSHALL, expiry")
    func scenarios() throws {
        let exe = try #require(RedisServer.executable)
        let server = try RedisServer(executable: exe)
        defer { server.stop() }
        let run = try Run(server: server)
        for (name, steps) in Self.scenarios {
            let clients = [try run.client(), try run.client()]
            for (who, command) in steps {
                if command == ["SLEEP"] {
                    usleep(30_000)
                } else {
                    try run.send(clients[who], command)
                }
            }
            #expect(run.mismatches.isEmpty, "\(name):\n\(run.mismatches.joined(separator: "\n"))")
            run.mismatches = []
        }
        #expect(run.replicas.v1.state.watches.clients.isEmpty && run.replicas.v2.state.watches.clients.isEmpty)
    }

    @Test("three clients, 3000 rounds of WATCH, commands, MULTI with queueing errors, EXEC and DISCARD")
    func rounds() throws {
        for seed in [11, 12] as [UInt64] {
            let (mismatches, outcomes) = try Self.runRounds(seed: seed, rounds: 1500)
            #expect(mismatches.isEmpty, "seed \(seed): \(mismatches.joined(separator: "\n"))")
            // The rounds reach every outcome: a transaction run, a null reply, EXECABORT.
            #expect(outcomes["*-1", default: 0] > 50 && outcomes["-EX", default: 0] > 20, "\(outcomes)")
            #expect(outcomes.filter { $0.key.hasPrefix("*") && $0.key != "*-1" }.values.reduce(0, +) > 300, "\(outcomes)")
        }
    }
}
