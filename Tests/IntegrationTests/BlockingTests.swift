import Foundation
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// Clients that each sent a blocking command and wait for its reply, one connection each.
// Safety of @unchecked Sendable: the clients are used by one thread at a time — every use is inside one `io`
// block that the test awaits before the next one starts.
final class BlockedClients: @unchecked Sendable {
    var clients: [RESPClient] = []
}

/// The number of clients blocked in the service (`INFO clients`).
func blockedClients(port: Int) async throws -> Int {
    let info = try await io {
        let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
        return text(try c.call("INFO", "clients")) ?? ""
    }
    guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("blocked_clients:") }),
          let n = Int(line.dropFirst("blocked_clients:".count))
    else { throw HarnessError("no blocked_clients in INFO: \(info)") }
    return n
}

func bulk(_ s: String) -> RESPValue { .bulk(Array(s.utf8)) }

extension EndToEnd {
    @Suite("Blocking commands through the supervisor")
    struct BlockingIntegrationTests {
        static let clientCount = 20

        /// Opens `count` clients that each send `BLPOP key 0`, one after the other: each is blocked in the service
        /// before the next sends, so they are served in this order.
        static func block(port: Int, count: Int = clientCount, key: String) async throws -> BlockedClients {
            let blocked = BlockedClients()
            let before = try await blockedClients(port: port)
            for i in 0..<count {
                try await io {
                    let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                    try c.sendRaw(RESPClient.encode(["BLPOP", key, "0"]))
                    blocked.clients.append(c)
                }
                let reached = await eventually(timeout: 30, every: 0.01) {
                    try await blockedClients(port: port) == before + i + 1
                }
                if !reached { throw HarnessError("client \(i) did not block") }
            }
            return blocked
        }

        /// Pushes one element per client after the event, in one command; each client must get exactly one reply —
        /// its own element, in the order the clients blocked — and nothing after it (its next command's reply is
        /// the next thing on its connection).
        static func pushAndCheck(_ s: SupervisorProcess, _ blocked: BlockedClients, key: String) async throws {
            let port = s.port
            let elements = (0..<blocked.clients.count).map { "after-\($0)" }
            let pushed = try await io {
                try RESPClient(host: "127.0.0.1", port: port).call(["RPUSH", key] + elements)
            }
            #expect(pushed == .integer(Int64(elements.count)))
            let replies: [[RESPValue]] = try await io {
                try blocked.clients.map { c in [try c.readReply(), try c.call("PING")] }
            }
            for (i, pair) in replies.enumerated() {
                #expect(pair == [.array([bulk(key), bulk(elements[i])]), .simple("PONG")], "client \(i): \(pair.map(\.display))")
            }
            let left = try await io { try RESPClient(host: "127.0.0.1", port: port).call("LLEN", key) }
            #expect(left == .integer(0))
            #expect(try await blockedClients(port: port) == 0)
            #expect(try s.status().pendingReplies == 0)
        }

        @Test("20 clients in BLPOP across a swap: each gets exactly one reply, from the pushes after it")
        func acrossSwap() async throws {
            let dir = try TempDirectory("block-swap")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "0.2"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let blocked = try await Self.block(port: s.port, key: "jobs")
            #expect(try s.status().pendingReplies == Self.clientCount)
            let before = try #require(try s.primary())
            let swap = try await understudy(["swap"] + s.cliTarget)
            #expect(swap.status == 0 && swap.stdout.contains("swap ok"), "\(swap)")
            #expect(try s.primary()?.id != before.id)
            try await Self.pushAndCheck(s, blocked, key: "jobs")
            let replyDiscrepancies = try s.discrepancies().recent.filter { $0.kind == .reply }
            #expect(replyDiscrepancies.isEmpty, "\(replyDiscrepancies.prefix(5))")
            #expect(await s.stop() == 0)
        }

        @Test("20 clients in BLPOP across a failover (SIGKILL of the primary): each gets exactly one reply, from the pushes after it")
        func acrossFailover() async throws {
            let dir = try TempDirectory("block-failover")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let blocked = try await Self.block(port: s.port, key: "jobs")
            let before = try #require(try s.primary())
            #expect(kill(before.pid, SIGKILL) == 0)
            let promoted = await eventually(timeout: 60) {
                guard let p = try s.primary() else { return false }
                return p.id != before.id && p.phase == "live"
            }
            #expect(promoted, "no new primary: \(String(describing: try? s.status()))")
            try await Self.pushAndCheck(s, blocked, key: "jobs")
            #expect(await s.stop() == 0)
        }

        @Test("20 clients in BLPOP across a deploy kv-v1 → kv-v2: each gets exactly one reply, from the pushes after it")
        func acrossDeploy() async throws {
            let dir = try TempDirectory("block-deploy")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let blocked = try await Self.block(port: s.port, key: "jobs")
            // The comparison phase needs traffic besides the blocked clients.
            let load = Load(port: s.port, clients: 2)
            let deploy = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "200"] + s.cliTarget)
            #expect(deploy.status == 0 && deploy.stdout.contains("accepted"), "\(deploy)")
            let report = try await load.stop()
            #expect(report.errors == 0, "\(report.errorSamples)")
            #expect(try s.status().version == "2.0.0")
            try await Self.pushAndCheck(s, blocked, key: "jobs")
            let replyDiscrepancies = try s.discrepancies().recent.filter { $0.kind == .reply }
            #expect(replyDiscrepancies.isEmpty, "\(replyDiscrepancies.prefix(5))")
            // Version 2's own blocking command (the version-1 probation instance does not know it: a difference
            // the comparison rightly reports, so it comes after the check above).
            let lmpop: [RESPValue] = try await io {
                let c = try s.client()
                try c.sendRaw(RESPClient.encode(["BLMPOP", "1", "1", "v2list", "LEFT", "COUNT", "2"]))
                let other = try s.client()
                _ = try other.call("RPUSH", "v2list", "a", "b", "c")
                return [try c.readReply(), try other.call("LRANGE", "v2list", "0", "-1")]
            }
            #expect(lmpop == [.array([bulk("v2list"), .array([bulk("a"), bulk("b")])]), .array([bulk("c")])])
            #expect(await s.stop() == 0)
        }

        @Test("BLPOP k 0.2 answers a null after at least 0.2 s; a client's commands behind a blocked one wait for it")
        func timeoutAndOrder() async throws {
            let dir = try TempDirectory("block-timeout")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let port = s.port
            // Generous read timeouts: on a loaded machine the journal's writes can stall for a while.
            let (reply, seconds): (RESPValue, Double) = try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                let started = Date()
                let r = try c.call("BLPOP", "k", "0.2")
                return (r, Date().timeIntervalSince(started))
            }
            #expect(reply == .array(nil))
            #expect(seconds >= 0.2 && seconds < 20, "took \(seconds) s")
            // Pipelined behind a blocked BLPOP, an INCR is not executed until the BLPOP is answered (as in Redis).
            let blocked = BlockedClients()
            try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                try c.sendRaw(RESPClient.encode(["BLPOP", "w", "0"]) + RESPClient.encode(["INCR", "behind"]))
                blocked.clients.append(c)
            }
            #expect(await eventually(timeout: 30, every: 0.01) { try await blockedClients(port: port) == 1 })
            try await Task.sleep(for: .milliseconds(200))
            let results: [RESPValue] = try await io {
                let other = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                let before = try other.call("GET", "behind")
                _ = try other.call("RPUSH", "w", "x")
                let c = blocked.clients[0]
                return [before, try c.readReply(), try c.readReply(), try other.call("GET", "behind")]
            }
            #expect(results == [.bulk(nil), .array([bulk("w"), bulk("x")]), .integer(1), bulk("1")])
            #expect(await s.stop() == 0)
        }

        @Test("CLIENT UNBLOCK from another connection answers a blocked client by its CLIENT ID, and what it pipelined runs next")
        func clientUnblock() async throws {
            let dir = try TempDirectory("block-unblock")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let port = s.port
            let blocked = BlockedClients()
            let ids: [Int64] = try await io {
                try (0..<2).map { _ in
                    let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                    guard case .integer(let id) = try c.call("CLIENT", "ID") else { throw HarnessError("no CLIENT ID") }
                    try c.sendRaw(RESPClient.encode(["BLPOP", "never", "0"]) + RESPClient.encode(["PING"]))
                    blocked.clients.append(c)
                    return id
                }
            }
            #expect(ids[0] != ids[1])
            #expect(await eventually(timeout: 30, every: 0.01) { try await blockedClients(port: port) == 2 })
            let results: [RESPValue] = try await io {
                let other = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 120)
                let first = try other.call("CLIENT", "UNBLOCK", String(ids[0]))
                let second = try other.call("CLIENT", "UNBLOCK", String(ids[1]), "ERROR")
                let again = try other.call("CLIENT", "UNBLOCK", String(ids[1]))
                return [first, second, again]
                    + (try blocked.clients.flatMap { [try $0.readReply(), try $0.readReply()] })
            }
            #expect(results == [.integer(1), .integer(1), .integer(0),
                                .array(nil), .simple("PONG"),
                                .error("UNBLOCKED client unblocked via CLIENT UNBLOCK"), .simple("PONG")])
            #expect(try await blockedClients(port: port) == 0)
            #expect(await s.stop() == 0)
        }

        @Test("a client that disconnects while blocked takes no element pushed later; nothing it pipelined runs; nothing is left behind")
        func disconnect() async throws {
            let dir = try TempDirectory("block-disconnect")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let port = s.port
            try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port)
                try c.sendRaw(RESPClient.encode(["BLPOP", "gone", "0"]) + RESPClient.encode(["SET", "dropped", "1"]))
            }
            // The client is gone as soon as the block above ends; wait for its journaled close to reach the service.
            let forgotten = await eventually(timeout: 30, every: 0.02) {
                try await blockedClients(port: port) == 0 && (try s.status().pendingReplies ?? -1) == 0
            }
            #expect(forgotten)
            let results: [RESPValue] = try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port)
                return [try c.call("RPUSH", "gone", "x"), try c.call("LRANGE", "gone", "0", "-1"), try c.call("EXISTS", "dropped")]
            }
            #expect(results == [.integer(1), .array([bulk("x")]), .integer(0)])
            // Behind a BLPOP that has data, what the client pipelined runs even though it left at once (as in Redis).
            try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port)
                _ = try c.call("RPUSH", "have", "1")
                try c.sendRaw(RESPClient.encode(["BLPOP", "have", "0"]) + RESPClient.encode(["SET", "ran", "1"]))
            }
            #expect(await eventually(timeout: 30, every: 0.02) {
                try await io { try RESPClient(host: "127.0.0.1", port: port).call("GET", "ran") } == bulk("1")
            })
            // Blocked and disconnected many times over: still nothing left.
            for _ in 0..<3 {
                let clients = try await Self.block(port: port, count: 5, key: "churn")
                clients.clients.removeAll()
                #expect(await eventually(timeout: 30, every: 0.02) {
                    try await blockedClients(port: port) == 0 && (try s.status().pendingReplies ?? -1) == 0
                })
            }
            #expect(try await io { try RESPClient(host: "127.0.0.1", port: port).call("RPUSH", "churn", "y") } == .integer(1))
            #expect(await s.stop() == 0)
        }

        @Test("blocked clients of a supervisor that restarts are forgotten: they take nothing pushed after the restart")
        func restart() async throws {
            let dir = try TempDirectory("block-restart")
            defer { dir.remove() }
            let data = dir.path + "/data"
            let first = try await SupervisorProcess.start(dataDirectory: data, arguments: ["--fsync", "always"])
            defer { first.cleanup() }
            let blocked = try await Self.block(port: first.port, count: 3, key: "r")
            await first.kill9()
            blocked.clients.removeAll()
            first.cleanup()
            let second = try await SupervisorProcess.start(dataDirectory: data, arguments: ["--fsync", "always"])
            defer { second.cleanup() }
            let port = second.port
            #expect(await eventually(timeout: 30, every: 0.02) { try await blockedClients(port: port) == 0 })
            let results: [RESPValue] = try await io {
                let c = try RESPClient(host: "127.0.0.1", port: port)
                return [try c.call("RPUSH", "r", "x"), try c.call("LLEN", "r")]
            }
            #expect(results == [.integer(1), .integer(1)])
            #expect(await second.stop() == 0)
        }
    }
}
