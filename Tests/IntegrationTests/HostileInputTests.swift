import Foundation
import Testing
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudyWire

@testable import UnderstudySupervisor

extension EndToEnd {
    @Suite("Hostile input through the supervisor")
    struct HostileInputTests {
        static let max = "9223372036854775807"
        static let min = "-9223372036854775808"

        /// Commands with extreme arguments: each must get a reply (a value or an error), never take the service down.
        static let commands: [[String]] = [
            ["SET", "s", "hello"],
            ["SETRANGE", "s", max, "A"], ["SETRANGE", "s", "-1", "A"], ["SETRANGE", "s", "536870912", "A"],
            ["GETRANGE", "s", min, max], ["GETRANGE", "s", max, min], ["SUBSTR", "s", min, max],
            ["SET", "n", max], ["INCR", "n"], ["INCRBY", "n", max], ["DECRBY", "n", min], ["SET", "m", min], ["DECR", "m"],
            ["INCRBY", "x", "99999999999999999999"], ["INCRBYFLOAT", "f", "nan"], ["INCRBYFLOAT", "f", "inf"],
            ["INCRBYFLOAT", "f", "-inf"], ["INCRBYFLOAT", "f", "1e400"], ["SET", "f", "1.7976931348623157e308"],
            ["INCRBYFLOAT", "f", "1.7976931348623157e308"],
            ["RPUSH", "l", "a", "b", "c"], ["LRANGE", "l", min, max], ["LRANGE", "l", max, min], ["LINDEX", "l", max],
            ["LINDEX", "l", min], ["LSET", "l", max, "z"], ["LTRIM", "l", min, max], ["LPOS", "l", "a", "RANK", min],
            ["LPOS", "l", "a", "COUNT", "-1"], ["LPOS", "l", "a", "MAXLEN", min], ["LMPOP", "1", "l", "LEFT", "COUNT", max],
            ["LMPOP", max, "l", "LEFT"],
            ["SADD", "set", "a", "b"], ["SRANDMEMBER", "set", min], ["SRANDMEMBER", "set", max], ["SPOP", "set", max],
            ["SPOP", "set", "-1"],
            ["HSET", "h", "f", max], ["HINCRBY", "h", "f", "1"], ["HINCRBYFLOAT", "h", "g", "nan"], ["HRANDFIELD", "h", min],
            ["EXPIRE", "s", max], ["PEXPIRE", "s", max], ["EXPIREAT", "s", max], ["PEXPIREAT", "s", min],
            ["SET", "e", "v", "EX", max], ["SET", "e", "v", "PX", max], ["SET", "e", "v", "EX", "0"], ["SET", "e", "v", "PX", min],
            ["SETEX", "e", max, "v"], ["PSETEX", "e", "-1", "v"], ["GETEX", "s", "EXAT", max],
            ["SET", String(repeating: "a", count: 40), "1"],
            ["KEYS", String(repeating: "a*", count: 20) + "b"],
            ["SCAN", "0", "MATCH", String(repeating: "*a", count: 30) + "b", "COUNT", max],
            ["SCAN", max], ["SCAN", "0", "COUNT", "0"], ["SCAN", "0", "COUNT", min],
            ["KEYS", "[a-"], ["KEYS", "\\"], ["KEYS", "[^]"],
            ["SET", "", ""], ["GET", ""], ["APPEND", "", String(repeating: "x", count: 1 << 20)], ["STRLEN", ""],
            ["OBJECT", "FREQ", "s"], ["OBJECT", "ENCODING", "nosuchkey"],
        ]

        @Test("extreme integers, NaN and infinities, huge counts and offsets, pathological patterns: every one answered, nothing quarantined")
        func extremes() async throws {
            let dir = try TempDirectory("hostile")
            defer { dir.remove() }
            for service in [Binaries.kv1, Binaries.kv2] {
                let s = try await SupervisorProcess.start(
                    service: service, dataDirectory: dir.path + "/data-\(service.hasSuffix("v1") ? 1 : 2)",
                    arguments: ["--request-deadline-ms", "5000"])
                defer { s.cleanup() }
                let port = s.port
                let commands = Self.commands
                let replies: [String] = try await io {
                    let c = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
                    return try commands.map { command in
                        let value = try c.call(command)
                        return text(value) ?? value.display
                    }
                }
                for (command, reply) in zip(commands, replies) {
                    #expect(!reply.contains("quarantined"), "\(service): \(command.prefix(3)) was quarantined: \(reply)")
                }
                let ping = try await io { try RESPClient(host: "127.0.0.1", port: port).call("PING") }
                #expect(text(ping) == "PONG")
                let status = try s.status()
                #expect(status.quarantined.isEmpty, "\(status.quarantined)")
                #expect(status.workerRestarts == 0, "a worker died: \(s.stderr.suffix(2000))")
                #expect(await s.stop() == 0)
            }
        }
    }
}
