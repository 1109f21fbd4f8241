import Foundation
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// Client connections that live across a swap, a failover or a deploy.
// Safety of @unchecked Sendable: the test uses them from one `io` thread at a time, each call awaited before the next.
private final class Clients: @unchecked Sendable {
    let all: [RESPClient]
    init(_ s: SupervisorProcess, count: Int) throws { all = try (0..<count).map { _ in try s.client() } }
    subscript(_ i: Int) -> RESPClient { all[i] }
}

extension EndToEnd {
    @Suite("WATCH and MULTI through the supervisor")
    struct WatchTests {
        static let execAbort = RESPValue.error("EXECABORT Transaction discarded because of previous errors.")

        /// `MULTI`, the commands, `EXEC`: the EXEC reply.
        static func transaction(_ c: RESPClient, _ commands: [[String]]) throws -> RESPValue {
            #expect(try c.call("MULTI") == .simple("OK"))
            for command in commands { #expect(try c.call(command) == .simple("QUEUED")) }
            return try c.call("EXEC")
        }

        @Test("a WATCH made before a swap holds after it: a change after the swap makes EXEC answer null, no change lets it run")
        func acrossSwap() async throws {
            let dir = try TempDirectory("watch-swap")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "0.2"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let c = try await io { try Clients(s, count: 3) }
            try await io { () throws in
                let (watcher, bystander, writer) = (c[0], c[1], c[2])
                #expect(try writer.call("SET", "w:changed", "1") == .simple("OK"))
                #expect(try watcher.call("WATCH", "w:changed", "w:missing") == .simple("OK"))
                #expect(try bystander.call("WATCH", "w:quiet") == .simple("OK"))
            }
            let before = try #require(try s.primary())
            let swap = try await understudy(["swap"] + s.cliTarget)
            #expect(swap.status == 0 && swap.stdout.contains("swap ok"), "\(swap)")
            #expect(try s.primary()?.id != before.id)
            try await io { () throws in
                let (watcher, bystander, writer) = (c[0], c[1], c[2])
                #expect(try writer.call("INCR", "w:changed") == .integer(2))
                #expect(try Self.transaction(watcher, [["SET", "w:changed", "from-watcher"]]) == .array(nil))
                #expect(try writer.call("GET", "w:changed") == .bulk(Array("2".utf8)))
                #expect(try Self.transaction(bystander, [["SET", "w:quiet", "set"]]) == .array([.simple("OK")]))
                #expect(try writer.call("GET", "w:quiet") == .bulk(Array("set".utf8)))
            }
            // Primary and shadow decided alike: no discrepancy.
            #expect(try s.discrepancies().recent.filter { $0.kind != .transfer }.isEmpty)
            #expect(await s.stop() == 0)
        }

        @Test("a WATCH made before the primary is SIGKILLed holds on the promoted shadow: EXEC without changes runs, with one answers null")
        func acrossFailover() async throws {
            let dir = try TempDirectory("watch-failover")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let c = try await io { try Clients(s, count: 3) }
            try await io { () throws in
                let (quiet, changed, writer) = (c[0], c[1], c[2])
                #expect(try writer.call("SET", "f:a", "1") == .simple("OK"))
                #expect(try quiet.call("WATCH", "f:a") == .simple("OK"))
                #expect(try changed.call("WATCH", "f:b") == .simple("OK"))
            }
            let first = try #require(try s.primary())
            #expect(kill(first.pid, SIGKILL) == 0)
            let promoted = await eventually(timeout: 30) {
                guard let p = try s.primary(), p.id != first.id, p.phase == "live" else { return false }
                return true
            }
            #expect(promoted)
            try await io { () throws in
                let (quiet, changed, writer) = (c[0], c[1], c[2])
                #expect(try writer.call("SET", "f:b", "x") == .simple("OK"))
                #expect(try Self.transaction(quiet, [["INCR", "f:a"]]) == .array([.integer(2)]))
                #expect(try Self.transaction(changed, [["SET", "f:b", "y"]]) == .array(nil))
                #expect(try writer.call("MGET", "f:a", "f:b") == .array([.bulk(Array("2".utf8)), .bulk(Array("x".utf8))]))
            }
            #expect(await s.waitForLiveShadow())
            #expect(await s.stop() == 0)
        }

        @Test("a WATCH made before a deploy of kv-v2 holds on the new version")
        func acrossDeploy() async throws {
            let dir = try TempDirectory("watch-deploy")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data", arguments: ["--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let c = try await io { try Clients(s, count: 3) }
            try await io { () throws in
                let (quiet, changed) = (c[0], c[1])
                #expect(try quiet.call("WATCH", "d:a") == .simple("OK"))
                #expect(try changed.call("WATCH", "d:b") == .simple("OK"))
            }
            let load = Load(port: s.port, clients: 2)
            let result = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "300"] + s.cliTarget)
            _ = try await load.stop()
            #expect(result.status == 0 && result.stdout.contains("accepted"), "\(result)")
            #expect(try s.primary()?.version == "2.0.0")
            try await io { () throws in
                let (quiet, changed, writer) = (c[0], c[1], c[2])
                #expect(try writer.call("SET", "d:b", "x") == .simple("OK"))
                #expect(try Self.transaction(quiet, [["SET", "d:a", "1"]]) == .array([.simple("OK")]))
                #expect(try Self.transaction(changed, [["SET", "d:b", "y"]]) == .array(nil))
            }
            #expect(await s.stop() == 0)
        }

        @Test("queueing errors abort EXEC; WATCH's errors; RESP3 is refused so EXEC's null stays *-1; a new supervisor process forgets the old one's watches")
        func frontEnd() async throws {
            let dir = try TempDirectory("watch-front")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            // The first connection of this process has the first client id; it watches and turns dirty.
            let c = try await io { try Clients(s, count: 2) }
            try await io { () throws in
                let (a, b) = (c[0], c[1])
                #expect(try a.call("WATCH", "r:k") == .simple("OK"))
                #expect(try b.call("SET", "r:k", "1") == .simple("OK"))
                // Queue-time errors: unknown command, wrong arity, unknown subcommand; runtime errors stay per command.
                #expect(try b.call("MULTI") == .simple("OK"))
                #expect(try b.call("SET", "r:x", "1") == .simple("QUEUED"))
                #expect(try b.call("NOPE", "a") == .error("ERR unknown command 'NOPE', with args beginning with: 'a' "))
                #expect(try b.call("GET") == .error("ERR wrong number of arguments for 'get' command"))
                #expect(try b.call("CONFIG", "NOPE") == .error("ERR unknown subcommand 'NOPE'. Try CONFIG HELP."))
                #expect(try b.call("EXEC") == Self.execAbort)
                #expect(try b.call("EXISTS", "r:x") == .integer(0))
                #expect(try Self.transaction(b, [["SET", "r:x", "a"], ["INCR", "r:x"]])
                    == .array([.simple("OK"), .error("ERR value is not an integer or out of range")]))
                // COPY is version 2's: version 1 refuses it while queueing.
                #expect(try b.call("MULTI") == .simple("OK"))
                #expect(try b.call("COPY", "r:x", "r:y") == .error("ERR unknown command 'COPY', with args beginning with: 'r:x' 'r:y' "))
                #expect(try b.call("EXEC") == Self.execAbort)
                // WATCH's own errors.
                #expect(try b.call("WATCH") == .error("ERR wrong number of arguments for 'watch' command"))
                #expect(try b.call("MULTI") == .simple("OK"))
                #expect(try b.call("WATCH", "r:k") == .error("ERR WATCH inside MULTI is not allowed"))
                #expect(try b.call("EXEC") == .array([]))
                // RESP3 is not offered: HELLO 3 is refused, and a dirty EXEC answers RESP2's null array.
                #expect(try a.call("HELLO", "3") == .error("NOPROTO unsupported protocol version"))
                #expect(try Self.transaction(a, [["GET", "r:k"]]) == .array(nil))
                #expect(try a.call("WATCH", "r:k") == .simple("OK"))
                #expect(try b.call("SET", "r:k", "2") == .simple("OK"))
            }
            // The supervisor dies with the watch dirty in the state and the watcher still connected (no disconnect
            // reaches the journal).
            await s.kill9()
            let again = try await SupervisorProcess.start(dataDirectory: dir.path + "/data")
            defer { again.cleanup() }
            try await io { () throws in
                // This process's first connection gets the same client id as the dirty watcher had.
                let a = try again.client()
                #expect(try a.call("CLIENT", "ID") == .integer(2))
                #expect(try a.call("WATCH", "r:other") == .simple("OK"))
                #expect(try Self.transaction(a, [["GET", "r:k"]]) == .array([.bulk(Array("2".utf8))]))
            }
            #expect(await again.stop() == 0)
        }
    }
}
