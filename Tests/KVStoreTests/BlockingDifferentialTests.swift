import Foundation
import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

#if canImport(Glibc)
import Glibc
#endif

extension RESPClient {
    /// The next reply's bytes, or nil when none is complete within `timeoutMillis`.
    func readReply(timeoutMillis: Int32) throws -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = wallMillis() + Int64(timeoutMillis)
        while true {
            var i = offset
            if RESPValue.parse(buffer, &i) != nil {
                let reply = Array(buffer[offset..<i])
                offset = i
                return reply
            }
            let left = deadline - wallMillis()
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, Int32(max(0, left))) <= 0 { return nil }
            buffer.removeFirst(offset)
            offset = 0
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { throw HarnessError("read failed (\(n)) waiting for a reply") }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }
}

/// Several clients against redis-server and, in lockstep, one input stream against both versions in-process:
/// blocking commands, the writes that wake them, transactions, timeouts and disconnects. Every reply — immediate or
/// deferred — must be the one redis-server sent to the same client. Blocking commands go connection-scoped, as the
/// supervisor sends them.
@Suite("Blocking commands against redis-server, several clients", .serialized,
       .enabled(if: RedisServer.isAvailable, "redis-server is not installed; install it to run the differential tests"))
struct BlockingDifferentialTests {
    struct Scenario {
        var random: DeterministicRandom
        let version2: Bool
        let lists = ["bl:a", "bl:b", "bl:c", "bm"]
        let zsets = ["bz:a", "bz:b", "bm"]
        var counter = 0

        init(seed: UInt64, version2: Bool) {
            random = DeterministicRandom(seed: seed)
            self.version2 = version2
        }

        mutating func pick<T>(_ items: [T]) -> T { items[Int(random.next() % UInt64(items.count))] }
        mutating func chance(_ percent: UInt64) -> Bool { random.next() % 100 < percent }
        mutating func keys(_ pool: [String]) -> [String] {
            let n = 1 + Int(random.next() % 3)
            return (0..<n).map { _ in pick(pool) }
        }
        mutating func element() -> String {
            counter += 1
            return "e\(counter)"
        }
        mutating func end() -> String { pick(["LEFT", "RIGHT", "left"]) }
        mutating func timeout() -> String { pick(["0", "0", "100", "0.0", "1e3"]) }

        /// A blocking command (its timeout never passes during the run unless `timeout` is given).
        mutating func blocking(timeout fixed: String? = nil) -> [String] {
            let t = fixed ?? timeout()
            var kinds = ["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BZPOPMIN", "BZPOPMAX"]
            if version2 { kinds += ["BLMPOP", "BZMPOP"] }
            switch pick(kinds) {
            case "BLPOP": return ["BLPOP"] + keys(lists) + [t]
            case "BRPOP": return ["BRPOP"] + keys(lists) + [t]
            case "BRPOPLPUSH": return ["BRPOPLPUSH", pick(lists), pick(lists), t]
            case "BLMOVE": return ["BLMOVE", pick(lists), pick(lists), end(), end(), t]
            case "BZPOPMIN": return ["BZPOPMIN"] + keys(zsets) + [t]
            case "BZPOPMAX": return ["BZPOPMAX"] + keys(zsets) + [t]
            case "BLMPOP":
                let k = keys(lists)
                return ["BLMPOP", t, String(k.count)] + k + [end()] + (chance(50) ? ["COUNT", String(1 + random.next() % 3)] : [])
            default:
                let k = keys(zsets)
                return ["BZMPOP", t, String(k.count)] + k + [pick(["MIN", "max"])] + (chance(50) ? ["COUNT", String(1 + random.next() % 3)] : [])
            }
        }

        /// A command that never blocks.
        mutating func plain() -> [String] {
            switch random.next() % 20 {
            case 0, 1, 2: return ["RPUSH", pick(lists)] + (0..<(1 + random.next() % 3)).map { _ in element() }
            case 3, 4: return ["LPUSH", pick(lists)] + (0..<(1 + random.next() % 2)).map { _ in element() }
            case 5, 6: return ["ZADD", pick(zsets)] + (0..<(1 + random.next() % 3)).flatMap { _ in [String(random.next() % 5), element()] }
            case 7: return ["LMOVE", pick(lists), pick(lists), end(), end()]
            case 8: return ["RPOPLPUSH", pick(lists), pick(lists)]
            case 9, 10: return [pick(["LPOP", "RPOP"]), pick(lists), "2"]
            case 11: return [pick(["ZPOPMIN", "ZPOPMAX"]), pick(zsets), "2"]
            case 12, 13, 14: return ["DEL"] + keys(lists + zsets)
            case 15: return ["SET", "bm", "string"]
            case 16: return ["RENAME", pick(lists), pick(lists)]
            case 17: return ["LRANGE", pick(lists), "0", "-1"]
            case 18: return ["ZRANGE", pick(zsets), "0", "-1", "WITHSCORES"]
            default: return version2 ? [pick(["LMPOP", "ZMPOP"]), "1", pick(lists), "LEFT"] : ["LLEN", pick(lists)]
            }
        }
    }

    struct Mismatch: CustomStringConvertible {
        var step: Int
        var what: String
        var description: String { "step \(step): \(what)" }
    }

    /// What a run exercised.
    struct Coverage {
        var blocked = 0
        var served = 0
        var timedOut = 0
        var disconnected = 0
        var transactions = 0
    }

    /// Runs `steps` steps over `clientCount` clients; returns the differences.
    static func run(
        seed: UInt64, steps: Int, version2: Bool, clientCount: Int = 6, server: RedisServer, coverage: inout Coverage
    ) throws -> [Mismatch] {
        let control = try server.connect()
        _ = try control.call("FLUSHALL")
        var clients = try (0..<clientCount).map { _ in try server.connect() }
        var v1 = ServiceEngine(service: KVServiceV1())
        var v2 = ServiceEngine(service: KVServiceV2())
        var scenario = Scenario(seed: seed, version2: version2)
        var mismatches: [Mismatch] = []
        var sequence: UInt64 = 0
        /// Client index → the sequence number of its blocked command.
        var blocked: [Int: UInt64] = [:]
        /// Client index → its connection's id (as the supervisor numbers connections).
        var connectionIDs = (0..<clientCount).map { Int64($0 + 1) }
        var nextConnection = Int64(clientCount + 1)
        /// The payload of a command from client `c`: connection-scoped when it may block, as the supervisor sends it.
        func input(_ c: Int, _ command: [String]) -> (UInt8, [UInt8]) {
            let body = CommandCodec.encode(command.map { Array($0.utf8) })
            guard Self.blockingNames.contains(command[0].uppercased()) else { return (InputTag.resp, body) }
            return (InputTag.connectionCommand, ConnectionInput.encode(connection: connectionIDs[c], body: body))
        }
        var clientOf: [UInt64: Int] = [:]
        func note(_ step: Int, _ what: String) {
            if mismatches.count < 30 { mismatches.append(Mismatch(step: step, what: what)) }
        }
        func redisNow() throws -> Int64 { redisMillis(try control.call("TIME")) ?? wallMillis() }
        /// Applies one input to both engines; returns version 2's result (version 1's must agree).
        func apply(_ step: Int, tag: UInt8, payload: [UInt8], time: Int64) -> ApplyResult {
            sequence += 1
            let r = ApplyRequest(sequence: sequence, time: time, seed: sequence &* 7919, tag: tag, payload: payload)
            let b = v2.apply(r)
            if !version2 {
                let a = v1.apply(r)
                if a.response != b.response || a.pending != b.pending || a.deferredReplies != b.deferredReplies {
                    note(step, "v1 and v2 differ: \(a) vs \(b)")
                }
            }
            return b
        }
        /// Reads redis-server's deferred replies for `result` and checks that no other blocked client got one.
        func settle(_ step: Int, _ result: ApplyResult) throws {
            for d in result.deferredReplies {
                guard let c = clientOf.removeValue(forKey: d.sequence) else {
                    note(step, "a deferred reply to unknown sequence \(d.sequence)")
                    continue
                }
                blocked[c] = nil
                if d.response == Array("*-1\r\n".utf8) { coverage.timedOut += 1 } else { coverage.served += 1 }
                guard let theirs = try clients[c].readReply(timeoutMillis: 1000) else {
                    note(step, "client \(c): ours answered \(RESPValue.parseAll(d.response)), redis-server did not")
                    continue
                }
                if let diff = compareReplies(d.response, theirs, .exact) { note(step, "client \(c), deferred: \(diff)") }
            }
            // Everything redis-server wrote for this step precedes the reply to a later command.
            _ = try control.call("PING")
            for (c, _) in blocked {
                if let extra = try clients[c].readReply(timeoutMillis: 0) {
                    note(step, "client \(c): redis-server answered \(RESPValue.parseAll(extra)), ours still blocks")
                    blocked[c] = nil
                }
            }
        }

        for step in 0..<steps where mismatches.count < 30 {
            let free = (0..<clientCount).filter { blocked[$0] == nil }
            let c = scenario.pick(free)
            let roll = scenario.random.next() % 100
            if roll < 2, let victim = blocked.keys.min(), let seq = blocked[victim] {
                coverage.disconnected += 1
                // A blocked client goes away: redis-server unblocks it; the supervisor journals the close. Its next
                // connection has a new id.
                let before = try blockedCount(control)
                clients[victim] = try server.connect()
                blocked[victim] = nil
                clientOf[seq] = nil
                var waited = 0
                while try blockedCount(control) != before - 1 && waited < 500 {
                    usleep(2000)
                    waited += 1
                }
                let r = apply(step, tag: InputTag.connectionClosed, payload: ConnectionInput.encode(connection: connectionIDs[victim]), time: try redisNow())
                connectionIDs[victim] = nextConnection
                nextConnection += 1
                if !r.deferredReplies.isEmpty || !r.response.isEmpty { note(step, "a close replied \(r)") }
                continue
            }
            if roll == 2 && free.count > 1 {
                // A short timeout: block, let it pass on redis-server's clock, then a journaled tick.
                let command = scenario.blocking(timeout: "0.05")
                let (tag, payload) = input(c, command)
                let r = apply(step, tag: tag, payload: payload, time: try redisNow())
                try clients[c].send([command.map { Array($0.utf8) }])
                if r.pending {
                    blocked[c] = r.sequence
                    clientOf[r.sequence] = c
                } else if let theirs = try clients[c].readReply(timeoutMillis: 5000) {
                    if let d = compareReplies(r.response, theirs, .exact) { note(step, "client \(c) \(command): \(d)") }
                }
                usleep(250_000)
                let tick = apply(step, tag: InputTag.tick, payload: [], time: try redisNow())
                try settle(step, tick)
                continue
            }
            let command: [String]
            var transaction: [[String]]?
            if roll < 40 && free.count > 1 {
                command = scenario.blocking()
            } else if roll < 40 {
                let n = 2 + Int(scenario.random.next() % 3)
                transaction = (0..<n).map { _ in scenario.chance(25) ? scenario.blocking() : scenario.plain() }
                command = ["EXEC"]
            } else {
                command = scenario.plain()
            }
            let time = try redisNow()
            let r: ApplyResult
            if let transaction {
                let bytes = transaction.map { $0.map { Array($0.utf8) } }
                r = apply(step, tag: InputTag.respTransaction, payload: CommandCodec.encodeTransaction(bytes), time: time)
                coverage.transactions += 1
                try clients[c].send([[Array("MULTI".utf8)]] + bytes + [[Array("EXEC".utf8)]])
                for _ in 0..<(transaction.count + 1) { _ = try clients[c].readReply(timeoutMillis: 5000) }
            } else {
                let (tag, payload) = input(c, command)
                r = apply(step, tag: tag, payload: payload, time: time)
                try clients[c].send([command.map { Array($0.utf8) }])
            }
            if r.pending {
                coverage.blocked += 1
                blocked[c] = r.sequence
                clientOf[r.sequence] = c
            } else if let theirs = try clients[c].readReply(timeoutMillis: 5000) {
                if let d = compareReplies(r.response, theirs, .exact) {
                    note(step, "client \(c) \(transaction.map { "MULTI \($0)" } ?? command.joined(separator: " ")): \(d)")
                }
            } else {
                note(step, "client \(c) \(command): ours answered, redis-server blocked")
            }
            try settle(step, r)
        }
        // The same requests are still blocked on both sides, and the data agrees.
        if try blockedCount(control) != blocked.count || v2.state.blocking.count != blocked.count {
            note(steps, "blocked at the end: redis-server \(try blockedCount(control)), ours \(v2.state.blocking.count), tracked \(blocked.count)")
        }
        for key in scenario.lists + scenario.zsets {
            let probes: [[String]] = [["TYPE", key], ["LRANGE", key, "0", "-1"], ["ZRANGE", key, "0", "-1", "WITHSCORES"]]
            let theirs = try control.pipeline(probes.map { $0.map { Array($0.utf8) } })
            for (probe, reply) in zip(probes, theirs) {
                let ours = apply(steps, tag: InputTag.resp, payload: CommandCodec.encode(probe.map { Array($0.utf8) }), time: try redisNow())
                if let d = compareReplies(ours.response, reply, .exact) { note(steps, "final \(probe.joined(separator: " ")): \(d)") }
            }
        }
        return mismatches
    }

    static let blockingNames: Set<String> = ["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP"]

    static func blockedCount(_ control: RESPClient) throws -> Int {
        let info = String(decoding: try control.call("INFO", "clients"), as: UTF8.self)
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("blocked_clients:") }) else { return -1 }
        return Int(line.dropFirst("blocked_clients:".count)) ?? -1
    }

    func againstRedis(seeds: ClosedRange<UInt64>, steps: Int, version2: Bool) throws {
        let exe = try #require(RedisServer.executable, "redis-server is not installed")
        let server = try RedisServer(executable: exe)
        defer { server.stop() }
        var all: [Mismatch] = []
        var coverage = Coverage()
        for seed in seeds {
            all += try Self.run(seed: seed, steps: steps, version2: version2, server: server, coverage: &coverage)
        }
        #expect(all.isEmpty, "\(all.count) differences:\n\(all.prefix(30).map(\.description).joined(separator: "\n"))")
        // The runs reached what they are about.
        let total = steps * seeds.count
        #expect(coverage.blocked >= total / 8 && coverage.served >= total / 16, "\(coverage)")
        #expect(coverage.timedOut >= 3 && coverage.disconnected >= 3 && coverage.transactions >= total / 20, "\(coverage)")
    }

    @Test("v1 and v2 serve six clients' blocking commands as redis-server does (3 × 1500 steps)")
    func version1Commands() throws {
        try againstRedis(seeds: 1...3, steps: 1500, version2: false)
    }

    @Test("v2 with BLMPOP, BZMPOP, LMPOP and ZMPOP serves six clients as redis-server does (3 × 1500 steps)")
    func version2Commands() throws {
        try againstRedis(seeds: 11...13, steps: 1500, version2: true)
    }
}
