import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Drives one engine with the inputs the supervisor journals for clients' commands, WATCHes and EXECs.
final class WatchDriver<S: UnderstudyService> where S.State: KVStorage {
    var engine: ServiceEngine<S>
    var now: Int64 = 1_800_000_000_000

    init(_ service: S) { engine = ServiceEngine(service: service) }

    static func bytes(_ parts: [String]) -> [[UInt8]] { parts.map { Array($0.utf8) } }

    @discardableResult
    func apply(_ tag: UInt8, _ payload: [UInt8]) -> String {
        let seq = engine.lastSequence + 1
        let r = engine.apply(ApplyRequest(sequence: seq, time: now, seed: seq &* 7919, tag: tag, payload: payload))
        return String(decoding: r.response, as: UTF8.self)
    }

    /// A plain command (any connection without watches).
    @discardableResult
    func run(_ parts: String...) -> String { run(parts) }

    /// A plain command (any connection without watches).
    @discardableResult
    func run(_ parts: [String]) -> String { apply(InputTag.resp, CommandCodec.encode(Self.bytes(parts))) }

    @discardableResult
    func watch(_ connection: Int64, _ keys: [String]) -> String {
        apply(InputTag.connectionCommand,
              ConnectionInput.encode(connection: connection, body: CommandCodec.encode(Self.bytes(["WATCH"] + keys))))
    }

    @discardableResult
    func unwatch(_ connection: Int64) -> String {
        apply(InputTag.connectionCommand,
              ConnectionInput.encode(connection: connection, body: CommandCodec.encode(Self.bytes(["UNWATCH"]))))
    }

    /// The EXEC of a watching connection.
    @discardableResult
    func exec(_ connection: Int64, _ commands: [[String]] = [["PING"]]) -> String {
        apply(InputTag.connectionTransaction,
              ConnectionInput.encode(connection: connection, body: CommandCodec.encodeTransaction(commands.map(Self.bytes))))
    }

    func closed(_ connection: Int64) { apply(InputTag.connectionClosed, ConnectionInput.encode(connection: connection)) }

    func tick() { apply(InputTag.tick, []) }

    var watchEntries: Int { engine.state.watches.clients.count + engine.state.watches.keys.count }
}

let execNull = "*-1\r\n"
let execPong = "*1\r\n+PONG\r\n"

enum V1Scenario {
    static func make() -> WatchDriver<KVServiceV1> { WatchDriver(KVServiceV1()) }
}

enum V2Scenario {
    static func make() -> WatchDriver<KVServiceV2> { WatchDriver(KVServiceV2()) }
}

@Suite("WATCH in the service: decided from journaled inputs")
struct WatchTests {
    @Test("a change by another connection, or by the watcher itself, makes EXEC answer null; no change runs it",
          arguments: [false, true])
    func basics(version2: Bool) {
        func check<S>(_ d: WatchDriver<S>) {
            d.run("SET", "k", "1")
            #expect(d.watch(1, ["k"]) == "+OK\r\n")
            #expect(d.exec(1, [["GET", "k"]]) == "*1\r\n$1\r\n1\r\n")
            d.watch(1, ["k"])
            d.run("SET", "k", "2")
            #expect(d.exec(1, [["SET", "k", "3"]]) == execNull)
            #expect(d.run("GET", "k") == "$1\r\n2\r\n", "a discarded transaction runs nothing")
            // The watcher's own write counts (it arrives as a plain command).
            d.watch(1, ["k"])
            d.run("INCR", "k")
            #expect(d.exec(1) == execNull)
            // The watches ended with that EXEC: a later change does not matter.
            d.run("SET", "k", "x")
            #expect(d.exec(1) == execPong)
            // An empty transaction: *0 when clean, null when dirty.
            d.watch(1, ["k"])
            #expect(d.exec(1, []) == "*0\r\n")
            d.watch(1, ["k"])
            d.run("DEL", "k")
            #expect(d.exec(1, []) == execNull)
            #expect(d.watchEntries == 0)
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("a missing key that is created counts; deleting a missing key or reading does not", arguments: [false, true])
    func missingKeys(version2: Bool) {
        func check<S>(_ d: WatchDriver<S>) {
            d.watch(1, ["m"])
            d.run("DEL", "m")
            d.run("GET", "m")
            d.run("EXISTS", "m")
            #expect(d.exec(1) == execPong)
            d.watch(1, ["m"])
            d.run("RPUSH", "m", "a")
            #expect(d.exec(1) == execNull)
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("the commands Redis counts as modifications, and those it does not", arguments: [false, true])
    func whatCounts(version2: Bool) {
        // (setup, change, dirty?) — from redis-server 7.0's behaviour.
        let cases: [([String], [String], Bool)] = [
            (["SET", "k", "v"], ["SET", "k", "v"], true),
            (["HSET", "k", "f", "v"], ["HSET", "k", "f", "v"], true),
            (["SET", "k", "5"], ["INCRBY", "k", "0"], true),
            (["HSET", "k", "f", "1"], ["HINCRBY", "k", "f", "0"], true),
            (["RPUSH", "k", "a"], ["LSET", "k", "0", "a"], true),
            (["RPUSH", "k", "a"], ["LTRIM", "k", "0", "-1"], true),
            (["SET", "k", "5"], ["APPEND", "k", ""], true),
            (["SET", "k", "5"], ["SETRANGE", "k", "0", "5"], true),
            (["SET", "k", "5"], ["EXPIRE", "k", "100"], true),
            (["RPUSH", "k", "a"], ["RPOPLPUSH", "k", "k"], true),
            (["SET", "k", "5"], ["RENAME", "k", "k2"], true),
            (["SET", "k", "5"], ["GETDEL", "k"], true),
            (["SET", "k", "5"], ["SET", "k", "7", "XX"], true),
            (["SADD", "k", "a"], ["SADD", "k", "a"], false),
            (["SADD", "k", "a"], ["SREM", "k", "zz"], false),
            (["HSET", "k", "f", "v"], ["HDEL", "k", "zz"], false),
            (["RPUSH", "k", "a"], ["LREM", "k", "0", "zz"], false),
            (["ZADD", "k", "1", "a"], ["ZADD", "k", "1", "a"], false),
            (["ZADD", "k", "1", "a"], ["ZINCRBY", "k", "0", "a"], false),
            (["SET", "k", "\u{0}"], ["SETBIT", "k", "0", "0"], false),
            (["SET", "k", "5"], ["SETRANGE", "k", "0", ""], false),
            (["SET", "k", "5"], ["SETNX", "k", "6"], false),
            (["SET", "k", "5"], ["SET", "k", "6", "NX"], false),
            (["SET", "k", "5"], ["PERSIST", "k"], false),
            (["SET", "k", "5"], ["GETEX", "k"], false),
            (["SET", "k", "5"], ["RENAME", "k", "k"], false),
            (["SET", "k", "5"], ["OBJECT", "ENCODING", "k"], false),
            (["SET", "k", "abc"], ["HSET", "k", "f", "v"], false),
            (["RPUSH", "k", "a"], ["LTRIM", "nokey", "0", "1"], false),
        ]
        func check<S>(_ d: WatchDriver<S>) {
            for (setup, change, dirty) in cases {
                if change[0] == "OBJECT" && !version2 { continue }
                d.run("FLUSHALL")
                d.run(setup)
                d.watch(7, ["k"])
                d.run(change)
                #expect(d.exec(7) == (dirty ? execNull : execPong), "\(setup) then \(change)")
                #expect(d.watchEntries == 0)
            }
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("expiry: a key that expires after WATCH counts; one already expired at WATCH counts only if it comes back",
          arguments: [false, true])
    func expiry(version2: Bool) {
        func check<S>(_ d: WatchDriver<S>) {
            // Expires after WATCH, nothing deletes it: EXEC sees it expired.
            d.run("SET", "k", "v", "PX", "100")
            d.watch(1, ["k"])
            d.now += 200
            #expect(d.exec(1) == execNull)
            // Expires after WATCH and a read deletes it lazily.
            d.run("SET", "k", "v", "PX", "100")
            d.watch(1, ["k"])
            d.now += 200
            #expect(d.run("GET", "k") == "$-1\r\n")
            #expect(d.exec(1) == execNull)
            // Expires after WATCH and active expiry deletes it.
            d.run("SET", "k", "v", "PX", "100")
            d.watch(1, ["k"])
            d.now += 200
            d.tick()
            #expect(d.exec(1) == execNull)
            // Already expired when watched (and still stored): its deletion is no change...
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            #expect(d.exec(1) == execPong)
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            d.run("GET", "k")
            #expect(d.exec(1) == execPong)
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            d.tick()
            #expect(d.exec(1) == execPong)
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            d.run("FLUSHALL")
            #expect(d.exec(1) == execPong)
            // ...but a new value is.
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            d.run("SET", "k", "w")
            #expect(d.exec(1) == execNull)
            d.run("SET", "k", "v", "PX", "100")
            d.now += 200
            d.watch(1, ["k"])
            d.run("GET", "k")
            d.run("SET", "k", "w")
            #expect(d.exec(1) == execNull)
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("FLUSHALL and FLUSHDB touch watched keys that exist, not missing ones", arguments: [false, true])
    func flush(version2: Bool) {
        func check<S>(_ d: WatchDriver<S>) {
            d.run("SET", "other", "1")
            d.watch(1, ["m"])
            d.run("FLUSHALL")
            #expect(d.exec(1) == execPong)
            d.run("SET", "k", "1")
            d.watch(1, ["k", "m"])
            d.run("FLUSHDB")
            #expect(d.exec(1) == execNull)
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("many keys, repeats, nested WATCH, two watchers, UNWATCH, disconnect and reset; the state stays bounded",
          arguments: [false, true])
    func connections(version2: Bool) {
        func check<S>(_ d: WatchDriver<S>) {
            let keys = (0..<1000).map { "key:\($0)" }
            d.watch(1, keys + ["key:5", "key:5"])
            #expect(d.engine.state.watches.keys.count == 1000)
            #expect(d.engine.state.watches.watcher(1)?.keys.count == 1000)
            d.run("SET", "key:999", "x")
            // A dirty connection forgets its keys at once.
            #expect(d.engine.state.watches.keys.count == 0)
            // Nested WATCH: adds to the watch; once dirty, stays dirty.
            d.watch(1, ["other"])
            #expect(d.exec(1) == execNull)
            d.watch(2, ["a"])
            d.watch(2, ["b"])
            d.run("SET", "b", "1")
            #expect(d.exec(2) == execNull)
            // Two connections watch a key; the first one's transaction changes it.
            d.watch(3, ["shared"])
            d.watch(4, ["shared"])
            #expect(d.exec(3, [["SET", "shared", "3"]]) == "*1\r\n+OK\r\n")
            #expect(d.exec(4, [["SET", "shared", "4"]]) == execNull)
            // UNWATCH forgets, including dirtiness.
            d.watch(5, ["u"])
            d.run("SET", "u", "1")
            #expect(d.unwatch(5) == "+OK\r\n")
            #expect(d.exec(5) == execPong)
            // UNWATCH queued inside the transaction answers +OK.
            d.watch(5, ["u"])
            #expect(d.exec(5, [["UNWATCH"], ["GET", "u"]]) == "*2\r\n+OK\r\n$1\r\n1\r\n")
            // A disconnect forgets; so does the reset of a new supervisor process.
            d.watch(6, ["d"])
            d.watch(7, ["e", "f"])
            #expect(d.watchEntries == 5)
            d.closed(6)
            #expect(d.watchEntries == 3)
            d.apply(InputTag.connectionsReset, [])
            #expect(d.watchEntries == 0)
            // Malformed inputs are answered, never trapped on.
            #expect(d.apply(InputTag.connectionCommand, [1, 2]).hasPrefix("-ERR"))
            #expect(d.apply(InputTag.connectionTransaction, [1, 2]).hasPrefix("-ERR"))
            #expect(d.apply(InputTag.connectionCommand,
                            ConnectionInput.encode(connection: 1, body: CommandCodec.encode([Array("WATCH".utf8)])))
                == "-ERR wrong number of arguments for 'watch' command\r\n")
            #expect(d.watchEntries == 0)
        }
        if version2 { check(V2Scenario.make()) } else { check(V1Scenario.make()) }
    }

    @Test("watches survive a snapshot, a migration to v2 and a downgrade, with equal digests")
    func survivesMigration() throws {
        let v1 = V1Scenario.make()
        v1.run("SET", "k", "1")
        v1.run("SET", "j", "1", "PX", "100")
        v1.now += 200
        v1.watch(1, ["k", "j"])  // j: already expired when watched
        v1.watch(2, ["k"])
        v1.watch(3, ["z"])
        v1.run("SET", "z", "1")  // 3 is dirty

        // Snapshot v1 and restore into v2 (migration), as a deploy does.
        var out = ByteWriter()
        _ = v1.engine.handle(.snapshotRequest(streamID: 1), output: &out)
        var decoder = FrameDecoder()
        decoder.append(out.bytes)
        let v2 = V2Scenario.make()
        v2.now = v1.now
        var sink = ByteWriter()
        while let m = try decoder.next() { _ = v2.engine.handle(m, output: &sink) }
        #expect(v2.engine.lastSequence == v1.engine.lastSequence)
        #expect(KVServiceV2.downgradeState(v2.engine.state).digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
        #expect(v2.engine.state.watches.clients.count == 3)

        func same<S>(_ d: WatchDriver<S>) {
            d.tick()  // deletes j: it was expired when watched, so that is no change
            #expect(d.exec(1) == execPong)
            d.run("SET", "k", "2")
            #expect(d.exec(2) == execNull)
            #expect(d.exec(3) == execNull)
            #expect(d.watchEntries == 0)
        }
        same(v1)
        same(v2)
        #expect(KVServiceV2.downgradeState(v2.engine.state).digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
    }

    @Test("the table each version declares is its dispatch table, WATCH included")
    func declaredTable() throws {
        let t1 = try #require(KVServiceV1.commandTable)
        let t2 = try #require(KVServiceV2.commandTable)
        #expect(t1.supportsWatch && t2.supportsWatch)
        #expect(t1.arity(of: "copy") == nil && t2.arity(of: "copy") == -3)
        #expect(t1.arity(of: "get") == 2 && t1.arity(of: "set") == -3 && t1.arity(of: "watch") == -2)
        #expect(t2.arities.count == KVCommandTable.count(version2: true) + KVCommandTable.subcommands.count)
        #expect(t1.arity(of: "config|get") == -3 && t1.arity(of: "object|freq") == nil)
        // Every declared command and subcommand is dispatched: none answers "unknown command" or "subcommand".
        var state = KVStateV2()
        var context = RequestContext(sequence: 1, timeMillis: 1_800_000_000_000, seed: 1)
        for (name, arity) in t2.arities where !t2.arities.keys.contains(where: { $0.hasPrefix(name + "|") }) {
            let args = name.split(separator: "|").map(String.init)
            let full = args + Array(repeating: "x", count: max(0, abs(arity) - args.count))
            let reply = KVServiceCore.handle(.command(full), state: &state, context: &context, version2: true, broken: nil)
            #expect(!String(decoding: reply, as: UTF8.self).hasPrefix("-ERR unknown"), "\(name): \(String(decoding: reply, as: UTF8.self))")
            #expect(t2.refusal(full.map { Array($0.utf8) }) == nil, "\(name)")
        }
    }
}
