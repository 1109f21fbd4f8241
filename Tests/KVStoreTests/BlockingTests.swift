import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Drives an engine input by input with journaled times, as a worker is driven. Blocking commands go as the
/// supervisor sends them: connection-scoped, each from a new connection unless one is given.
struct BlockingRig<S: UnderstudyService> {
    var engine: ServiceEngine<S>
    var time: Int64 = 1_800_000_000_000
    var nextConnection: Int64 = 1
    /// The connection of each blocking command, by sequence number.
    var connections: [UInt64: Int64] = [:]

    init(_ service: S) { engine = ServiceEngine(service: service) }

    var next: UInt64 { engine.lastSequence + 1 }

    static var blocking: Set<String> {
        ["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP"]
    }

    /// Applies a command `after` milliseconds after the previous input.
    @discardableResult
    mutating func run(_ parts: String..., after: Int64 = 1, connection: Int64? = nil) -> ApplyResult {
        run(parts, after: after, connection: connection)
    }

    @discardableResult
    mutating func run(_ parts: [String], after: Int64 = 1, connection: Int64? = nil) -> ApplyResult {
        time += after
        guard Self.blocking.contains(parts[0].uppercased()) else { return engine.apply(request(next, time, parts)) }
        let c = connection ?? nextConnection
        if connection == nil { nextConnection += 1 }
        let body = CommandCodec.encode(parts.map { Array($0.utf8) })
        let r = engine.apply(ApplyRequest(
            sequence: next, time: time, seed: 3, tag: InputTag.connectionCommand,
            payload: ConnectionInput.encode(connection: c, body: body)))
        connections[r.sequence] = c
        return r
    }

    /// A command as a plain input (not connection-scoped).
    @discardableResult
    mutating func plain(_ parts: String...) -> ApplyResult {
        time += 1
        return engine.apply(request(next, time, parts))
    }

    /// A MULTI/EXEC transaction.
    @discardableResult
    mutating func transaction(_ commands: [[String]], after: Int64 = 1) -> ApplyResult {
        time += after
        let payload = CommandCodec.encodeTransaction(commands.map { $0.map { Array($0.utf8) } })
        return engine.apply(ApplyRequest(sequence: next, time: time, seed: 7, tag: InputTag.respTransaction, payload: payload))
    }

    /// A clock tick `after` milliseconds later.
    @discardableResult
    mutating func tick(after: Int64) -> ApplyResult {
        time += after
        return engine.apply(ApplyRequest(sequence: next, time: time, seed: 0, tag: InputTag.tick, payload: []))
    }

    /// The connection that sent the blocking command of sequence `seq` closed.
    @discardableResult
    mutating func close(sequence seq: UInt64) -> ApplyResult {
        time += 1
        return engine.apply(ApplyRequest(
            sequence: next, time: time, seed: 0, tag: InputTag.connectionClosed,
            payload: ConnectionInput.encode(connection: connections[seq] ?? -1)))
    }

    /// A new supervisor process: no earlier connection exists.
    @discardableResult
    mutating func reset() -> ApplyResult {
        time += 1
        return engine.apply(ApplyRequest(sequence: next, time: time, seed: 0, tag: InputTag.connectionsReset, payload: []))
    }
}

func text(_ r: [UInt8]) -> String { String(decoding: r, as: UTF8.self) }

/// The deferred replies of a result as (sequence, text) pairs.
func deferred(_ r: ApplyResult) -> [(UInt64, String)] { r.deferredReplies.map { ($0.sequence, text($0.response)) } }

func same(_ a: [(UInt64, String)], _ b: [(UInt64, String)]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
}

@Suite("Blocking commands")
struct BlockingTests {
    @Test("BLPOP on a list with data answers at once; on a missing key it blocks and the push answers it in the same step")
    func blockAndWake() {
        var rig = BlockingRig(KVServiceV1())
        rig.run("RPUSH", "k", "a", "b")
        let now = rig.run("BLPOP", "k", "0")
        #expect(!now.pending && text(now.response) == "*2\r\n$1\r\nk\r\n$1\r\na\r\n")
        rig.run("DEL", "k")
        let blocked = rig.run("BLPOP", "k", "0")
        #expect(blocked.pending && blocked.response.isEmpty && blocked.deferredReplies.isEmpty)
        let push = rig.run("LPUSH", "k", "x")
        // The pusher sees the length after its push; the blocked client gets the element; the list is gone.
        #expect(text(push.response) == ":1\r\n")
        #expect(same(deferred(push), [(blocked.sequence, "*2\r\n$1\r\nk\r\n$1\r\nx\r\n")]))
        #expect(text(rig.run("EXISTS", "k").response) == ":0\r\n")
        #expect(rig.engine.state.blocking.count == 0)
    }

    @Test("CLIENT UNBLOCK answers the blocked request of a connection (TIMEOUT: a null; ERROR: UNBLOCKED) and only once",
          arguments: [false, true])
    func clientUnblock(version2: Bool) {
        func check<S: UnderstudyService>(_ service: S) where S.State: KVStorage {
            var rig = BlockingRig(service)
            let blocked = rig.run(["BLPOP", "k", "0"], connection: 41)
            let other = rig.run(["BZPOPMIN", "z", "0"], connection: 42)
            #expect(blocked.pending && other.pending)
            // Not blocked, unknown, malformed.
            #expect(text(rig.plain("CLIENT", "UNBLOCK", "7").response) == ":0\r\n")
            #expect(text(rig.plain("CLIENT", "UNBLOCK", "x").response) == "-ERR value is not an integer or out of range\r\n")
            #expect(text(rig.plain("CLIENT", "UNBLOCK", "41", "LATER").response)
                    == "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n")
            // TIMEOUT (the default): the blocked client gets a null array, as if its timeout had passed.
            let unblock = rig.plain("CLIENT", "UNBLOCK", "41")
            #expect(text(unblock.response) == ":1\r\n")
            #expect(same(deferred(unblock), [(blocked.sequence, "*-1\r\n")]))
            #expect(text(rig.plain("CLIENT", "UNBLOCK", "41").response) == ":0\r\n")
            // A later push finds nobody waiting on k.
            let push = rig.run("RPUSH", "k", "a")
            #expect(deferred(push).isEmpty && text(rig.run("LLEN", "k").response) == ":1\r\n")
            // ERROR: Redis's UNBLOCKED error.
            let error = rig.plain("CLIENT", "UNBLOCK", "42", "error")
            #expect(text(error.response) == ":1\r\n")
            #expect(same(deferred(error), [(other.sequence, "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n")]))
            #expect(rig.engine.state.blocking.count == 0)
        }
        if version2 { check(KVServiceV2()) } else { check(KVServiceV1()) }
    }

    @Test("First blocked, first served, per key; the rest keep waiting")
    func serviceOrder() {
        var rig = BlockingRig(KVServiceV1())
        let first = rig.run("BRPOP", "q", "0").sequence
        let second = rig.run("BLPOP", "q", "0").sequence
        let third = rig.run("BLPOP", "q", "0").sequence
        let push = rig.run("RPUSH", "q", "a", "b")
        #expect(text(push.response) == ":2\r\n")
        #expect(same(deferred(push), [(first, "*2\r\n$1\r\nq\r\n$1\r\nb\r\n"), (second, "*2\r\n$1\r\nq\r\n$1\r\na\r\n")]))
        let later = rig.run("RPUSH", "q", "c")
        #expect(same(deferred(later), [(third, "*2\r\n$1\r\nq\r\n$1\r\nc\r\n")]))
        #expect(rig.engine.state.blocking.count == 0)
    }

    @Test("A request on several keys is served from the key that got data, and stops waiting on the others")
    func multipleKeys() {
        var rig = BlockingRig(KVServiceV1())
        let a = rig.run("BLPOP", "k1", "k2", "k1", "0").sequence
        let b = rig.run("BLPOP", "k2", "0").sequence
        let push = rig.run("RPUSH", "k2", "x", "y")
        #expect(same(deferred(push), [(a, "*2\r\n$2\r\nk2\r\n$1\r\nx\r\n"), (b, "*2\r\n$2\r\nk2\r\n$1\r\ny\r\n")]))
        let other = rig.run("RPUSH", "k1", "z")
        #expect(other.deferredReplies.isEmpty)
        #expect(text(rig.run("LRANGE", "k1", "0", "-1").response) == "*1\r\n$1\r\nz\r\n")
        // Keys created in one transaction are served in the order they were created.
        let c = rig.run("BLPOP", "m1", "m2", "0").sequence
        let exec = rig.transaction([["RPUSH", "m2", "two"], ["RPUSH", "m1", "one"]])
        #expect(same(deferred(exec), [(c, "*2\r\n$2\r\nm2\r\n$3\r\ntwo\r\n")]))
    }

    @Test("Timeouts fire on the first journaled input past the deadline, with a null array")
    func timeouts() {
        var rig = BlockingRig(KVServiceV1())
        let s = rig.run("BLPOP", "k", "0.2").sequence
        #expect(rig.tick(after: 100).deferredReplies.isEmpty)
        #expect(rig.tick(after: 100).deferredReplies.isEmpty)  // exactly at the deadline: not yet (as Redis)
        #expect(same(deferred(rig.tick(after: 1)), [(s, "*-1\r\n")]))
        #expect(rig.engine.state.blocking.count == 0)
        // A command past the deadline answers the timed-out request before it runs: the push is not taken.
        let t = rig.run("BZPOPMIN", "z", "0.05").sequence
        let u = rig.run("BRPOPLPUSH", "src", "dst", "1").sequence
        let push = rig.run("ZADD", "z", "1", "m", after: 100)
        #expect(same(deferred(push), [(t, "*-1\r\n")]))
        #expect(text(rig.run("ZCARD", "z").response) == ":1\r\n")
        // BRPOPLPUSH times out with a null array too (as redis-server 7 in RESP2).
        #expect(same(deferred(rig.tick(after: 1000)), [(u, "*-1\r\n")]))
        // Timeout 0 waits forever.
        let forever = rig.run("BLPOP", "f", "0")
        #expect(forever.pending && rig.tick(after: 10_000_000).deferredReplies.isEmpty)
    }

    @Test("Woken by LMOVE, RPOPLPUSH and a served BLMOVE whose destination someone else waits on")
    func wakeByMove() {
        var rig = BlockingRig(KVServiceV1())
        let a = rig.run("BLPOP", "dst", "0").sequence
        rig.run("RPUSH", "src", "1", "2")
        #expect(same(deferred(rig.run("LMOVE", "src", "dst", "LEFT", "RIGHT")), [(a, "*2\r\n$3\r\ndst\r\n$1\r\n1\r\n")]))
        let b = rig.run("BRPOP", "dst", "0").sequence
        #expect(same(deferred(rig.run("RPOPLPUSH", "src", "dst")), [(b, "*2\r\n$3\r\ndst\r\n$1\r\n2\r\n")]))
        // A chain: BLMOVE a → b is served by the push to a; its move creates b, which serves the BLPOP on b.
        let mover = rig.run("BLMOVE", "a", "b", "LEFT", "LEFT", "0").sequence
        let popper = rig.run("BLPOP", "b", "0").sequence
        let push = rig.run("RPUSH", "a", "x")
        #expect(same(deferred(push), [(mover, "$1\r\nx\r\n"), (popper, "*2\r\n$1\r\nb\r\n$1\r\nx\r\n")]))
        #expect(text(rig.run("EXISTS", "a", "b").response) == ":0\r\n")
        // A BLMOVE whose destination became the wrong type gets WRONGTYPE; the element stays for the next client.
        let wrong = rig.run("BLMOVE", "c", "s", "RIGHT", "LEFT", "0").sequence
        let next = rig.run("BLPOP", "c", "0").sequence
        rig.run("SET", "s", "string")
        let p = rig.run("RPUSH", "c", "e")
        #expect(same(deferred(p), [
            (wrong, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
            (next, "*2\r\n$1\r\nc\r\n$1\r\ne\r\n"),
        ]))
    }

    @Test("Sorted sets: BZPOPMIN, BZPOPMAX, BZMPOP woken by ZADD; list waiters ignore a sorted set and vice versa")
    func sortedSets() {
        var rig = BlockingRig(KVServiceV2())
        let min = rig.run("BZPOPMIN", "z", "0").sequence
        let max = rig.run("BZPOPMAX", "z", "0").sequence
        let list = rig.run("BLPOP", "z", "0").sequence
        let multi = rig.run("BZMPOP", "0", "2", "y", "z", "MIN", "COUNT", "5").sequence
        let add = rig.run("ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d")
        #expect(same(deferred(add), [
            (min, "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"),
            (max, "*3\r\n$1\r\nz\r\n$1\r\nd\r\n$1\r\n4\r\n"),
            (multi, "*2\r\n$1\r\nz\r\n*2\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n*2\r\n$1\r\nc\r\n$1\r\n3\r\n"),
        ]))
        // The list waiter still waits (the key became a sorted set, then was deleted by the pops).
        #expect(rig.engine.state.blocking.count == 1)
        #expect(same(deferred(rig.run("RPUSH", "z", "v")), [(list, "*2\r\n$1\r\nz\r\n$1\r\nv\r\n")]))
        // BLMPOP with COUNT and ZMPOP.
        let lm = rig.run("BLMPOP", "0", "1", "l", "RIGHT", "COUNT", "2").sequence
        #expect(same(deferred(rig.run("RPUSH", "l", "1", "2", "3")), [(lm, "*2\r\n$1\r\nl\r\n*2\r\n$1\r\n3\r\n$1\r\n2\r\n")]))
        rig.run("ZADD", "zz", "5", "e", "6", "f")
        #expect(text(rig.run("ZMPOP", "2", "none", "zz", "MAX", "COUNT", "9").response)
            == "*2\r\n$2\r\nzz\r\n*2\r\n*2\r\n$1\r\nf\r\n$1\r\n6\r\n*2\r\n$1\r\ne\r\n$1\r\n5\r\n")
        #expect(text(rig.run("ZMPOP", "1", "zz", "MIN").response) == "*-1\r\n")
    }

    @Test("Inside MULTI nothing blocks: a null at once; waiters are served after EXEC from what is left")
    func insideMulti() {
        var rig = BlockingRig(KVServiceV2())
        let exec = rig.transaction([
            ["BLPOP", "k", "0"], ["BRPOPLPUSH", "a", "b", "0"], ["BLMOVE", "a", "b", "LEFT", "LEFT", "0"],
            ["BLMPOP", "0", "1", "k", "LEFT"], ["BZPOPMIN", "z", "0"], ["BZMPOP", "0", "1", "z", "MAX"], ["BLPOP", "k", "x"],
        ])
        #expect(!exec.pending)
        #expect(text(exec.response) == "*7\r\n*-1\r\n$-1\r\n$-1\r\n*-1\r\n*-1\r\n*-1\r\n-ERR timeout is not a float or out of range\r\n")
        #expect(rig.engine.state.blocking.count == 0)
        let w = rig.run("BLPOP", "k", "0").sequence
        // Pushed and popped in the same transaction: nothing left for the waiter.
        let t1 = rig.transaction([["RPUSH", "k", "a"], ["LPOP", "k"]])
        #expect(t1.deferredReplies.isEmpty && text(t1.response) == "*2\r\n:1\r\n$1\r\na\r\n")
        let t2 = rig.transaction([["RPUSH", "k", "a", "b"], ["LPOP", "k"]])
        #expect(same(deferred(t2), [(w, "*2\r\n$1\r\nk\r\n$1\r\nb\r\n")]))
    }

    @Test("A closed connection's request takes nothing a later push brings; a reset forgets every request")
    func closedConnections() {
        var rig = BlockingRig(KVServiceV1())
        let gone = rig.run("BLPOP", "k", "0").sequence
        let stays = rig.run("BLPOP", "k", "5").sequence
        let c = rig.close(sequence: gone)
        #expect(c.response.isEmpty && c.deferredReplies.isEmpty && !c.pending)
        #expect(same(deferred(rig.run("RPUSH", "k", "a", "b")), [(stays, "*2\r\n$1\r\nk\r\n$1\r\na\r\n")]))
        #expect(text(rig.run("LRANGE", "k", "0", "-1").response) == "*1\r\n$1\r\nb\r\n")
        // Closing a connection that blocked nothing, or twice, changes nothing.
        #expect(rig.close(sequence: gone).deferredReplies.isEmpty)
        rig.run("BLPOP", "x", "0")
        rig.run("BZPOPMAX", "y", "1")
        rig.reset()
        #expect(rig.engine.state.blocking.count == 0)
        #expect(rig.engine.state.blocking.requests.isEmpty && rig.engine.state.blocking.waiters.isEmpty && rig.engine.state.blocking.meta.isEmpty)
        #expect(rig.run("RPUSH", "x", "1").deferredReplies.isEmpty)
        #expect(rig.tick(after: 5000).deferredReplies.isEmpty)
    }

    @Test("Sent as a plain command (not connection-scoped), a blocking command never blocks: a null, as on a timeout")
    func plainNeverBlocks() {
        var rig = BlockingRig(KVServiceV2())
        for (command, expected) in [
            (["BLPOP", "k", "0"], "*-1\r\n"), (["BLMOVE", "a", "b", "LEFT", "LEFT", "0"], "$-1\r\n"),
            (["BZMPOP", "0", "1", "z", "MIN"], "*-1\r\n"),
        ] {
            let r = rig.engine.apply(request(rig.next, rig.time, command))
            #expect(!r.pending && text(r.response) == expected)
        }
        #expect(rig.engine.state.blocking.count == 0)
        rig.run("RPUSH", "k", "v")
        #expect(text(rig.plain("BLPOP", "k", "0").response) == "*2\r\n$1\r\nk\r\n$1\r\nv\r\n")
    }

    @Test("Argument checks and error texts as redis-server 7.0's", arguments: [
        (["BLPOP", "k", "abc"], "-ERR timeout is not a float or out of range\r\n"),
        (["BLPOP", "k", "-1"], "-ERR timeout is negative\r\n"),
        (["BLPOP", "k", "-0.5"], "-ERR timeout is negative\r\n"),
        (["BLPOP", "k", "nan"], "-ERR timeout is not a float or out of range\r\n"),
        (["BLPOP", "k", "inf"], "-ERR timeout is negative\r\n"),
        (["BLPOP", "k", "1e400"], "-ERR timeout is negative\r\n"),
        (["BLPOP", "k", "9223372036854776"], "-ERR timeout is negative\r\n"),
        (["BLPOP", "k", ""], "-ERR timeout is not a float or out of range\r\n"),
        (["BLPOP", "k", " 1"], "-ERR timeout is not a float or out of range\r\n"),
        (["BLPOP", "k"], "-ERR wrong number of arguments for 'blpop' command\r\n"),
        (["BRPOPLPUSH", "a", "b"], "-ERR wrong number of arguments for 'brpoplpush' command\r\n"),
        (["BLMOVE", "a", "b", "LEFT", "UP", "x"], "-ERR syntax error\r\n"),
        (["BLMOVE", "a", "b", "LEFT", "LEFT", "x"], "-ERR timeout is not a float or out of range\r\n"),
        (["BLMPOP", "x", "0", "k", "LEFT"], "-ERR numkeys should be greater than 0\r\n"),
        (["BLMPOP", "x", "1", "k", "LEFT"], "-ERR timeout is not a float or out of range\r\n"),
        (["BLMPOP", "0", "2", "k", "LEFT"], "-ERR syntax error\r\n"),
        (["BLMPOP", "0", "1", "k", "UP"], "-ERR syntax error\r\n"),
        (["BLMPOP", "0", "1", "k", "LEFT", "COUNT", "0"], "-ERR count should be greater than 0\r\n"),
        (["BLMPOP", "0", "1", "k", "LEFT", "COUNT", "1", "COUNT", "1"], "-ERR syntax error\r\n"),
        (["BLMPOP", "0", "9223372036854775807", "k", "LEFT"], "-ERR syntax error\r\n"),
        (["BZPOPMIN", "k", "-1"], "-ERR timeout is negative\r\n"),
        (["BZMPOP", "0", "1", "k", "UP"], "-ERR syntax error\r\n"),
        (["BZMPOP", "0", "1", "k", "MIN", "COUNT", "-1"], "-ERR count should be greater than 0\r\n"),
        (["ZMPOP", "0", "k", "MIN"], "-ERR numkeys should be greater than 0\r\n"),
        (["ZMPOP", "1", "k"], "-ERR wrong number of arguments for 'zmpop' command\r\n"),
    ])
    func argumentChecks(command: [String], expected: String) {
        var rig = BlockingRig(KVServiceV2())
        let r = rig.run(command)
        #expect(!r.pending)
        #expect(text(r.response) == expected)
    }

    @Test("Wrong types answer WRONGTYPE at once, in the order of the keys")
    func wrongTypes() {
        var rig = BlockingRig(KVServiceV1())
        rig.run("SET", "s", "x")
        rig.run("RPUSH", "l", "1")
        let wrongType = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        #expect(text(rig.run("BLPOP", "none", "s", "0").response) == wrongType)
        #expect(text(rig.run("BLPOP", "l", "s", "0").response) == "*2\r\n$1\r\nl\r\n$1\r\n1\r\n")
        #expect(text(rig.run("BZPOPMIN", "s", "0").response) == wrongType)
        rig.run("RPUSH", "l", "1")
        #expect(text(rig.run("BLMOVE", "l", "s", "LEFT", "LEFT", "0").response) == wrongType)
        // The destination's type is not checked while the source is missing: it blocks.
        #expect(rig.run("BLMOVE", "missing", "s", "LEFT", "LEFT", "0").pending)
        // Version 1 has no BLMPOP, BZMPOP or ZMPOP.
        #expect(text(rig.run("BLMPOP", "0", "1", "k", "LEFT").response).hasPrefix("-ERR unknown command 'BLMPOP'"))
    }

    @Test("Blocked requests survive a snapshot and a v1 → v2 migration, and are served the same way; digests agree")
    func survivesMigration() throws {
        var v1 = BlockingRig(KVServiceV1())
        let a = v1.run("BLPOP", "k", "0").sequence
        let b = v1.run("BZPOPMAX", "z", "10").sequence
        let c = v1.run("BRPOPLPUSH", "k", "dst", "0").sequence
        var out = ByteWriter()
        _ = v1.engine.handle(.snapshotRequest(streamID: 1), output: &out)
        var decoder = FrameDecoder()
        out.bytes.withUnsafeBytes { decoder.append(buffer: $0) }
        var v2 = BlockingRig(KVServiceV2())
        v2.time = v1.time
        var restored = ByteWriter()
        while let m = try decoder.next() { _ = v2.engine.handle(m, output: &restored) }
        #expect(v2.engine.lastSequence == v1.engine.lastSequence)
        #expect(v2.engine.state.blocking.count == 3)
        #expect(KVServiceV2.downgradeState(v2.engine.state).digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
        for version in 0..<2 {
            let push = version == 0 ? v1.run("RPUSH", "k", "x", "y") : v2.run("RPUSH", "k", "x", "y")
            #expect(same(deferred(push), [(a, "*2\r\n$1\r\nk\r\n$1\r\nx\r\n"), (c, "$1\r\ny\r\n")]))
            let timeout = version == 0 ? v1.tick(after: 20_000) : v2.tick(after: 20_000)
            #expect(same(deferred(timeout), [(b, "*-1\r\n")]))
        }
        #expect(KVServiceV2.downgradeState(v2.engine.state).digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
    }

    @Test("Blocked requests are part of the digest: two replicas blocking differently differ")
    func inDigest() {
        var one = BlockingRig(KVServiceV1())
        var two = BlockingRig(KVServiceV1())
        one.run("BLPOP", "k", "0")
        two.run("BLPOP", "j", "0")
        #expect(one.engine.state.digest(sequence: 0) != two.engine.state.digest(sequence: 0))
        #expect(one.engine.state.digest(sequence: 0).entryCount == 2)
    }
}
