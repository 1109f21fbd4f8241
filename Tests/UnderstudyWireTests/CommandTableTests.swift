import Testing
import UnderstudyWire

@Suite("Command tables and connection inputs")
struct CommandTableTests {
    static let table = CommandTable(["GET": 2, "set": -3, "ping": -1, "watch": -2])

    static func args(_ parts: String...) -> [[UInt8]] { parts.map { Array($0.utf8) } }

    @Test("a table refuses unknown commands and wrong arities with Redis's texts, and accepts the rest")
    func refusals() {
        let t = Self.table
        #expect(t.refusal(Self.args("get", "k")) == nil)
        #expect(t.refusal(Self.args("GeT", "k")) == nil)
        #expect(t.refusal(Self.args("set", "k", "v", "EX", "1")) == nil)
        #expect(t.refusal(Self.args("ping")) == nil)
        #expect(t.refusal(Self.args("GET")) == Array("-ERR wrong number of arguments for 'get' command\r\n".utf8))
        #expect(t.refusal(Self.args("get", "a", "b")) == Array("-ERR wrong number of arguments for 'get' command\r\n".utf8))
        #expect(t.refusal(Self.args("SET", "k")) == Array("-ERR wrong number of arguments for 'set' command\r\n".utf8))
        #expect(t.refusal(Self.args("foo", "a", "b"))
            == Array("-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n".utf8))
        #expect(t.refusal(Self.args("FOO")) == Array("-ERR unknown command 'FOO', with args beginning with: \r\n".utf8))
        // Redis prints arguments with %s (up to a NUL byte) and turns CR and LF into spaces.
        #expect(t.refusal([Array("x\u{0}y".utf8), Array("a\r\nb".utf8)])
            == Array("-ERR unknown command 'x', with args beginning with: 'a  b' \r\n".utf8))
        #expect(t.supportsWatch)
        #expect(!CommandTable(["get": 2]).supportsWatch)
        #expect(t.arity(of: "SET") == -3)
    }

    @Test("subcommands are checked as Redis checks them while queueing")
    func subcommands() {
        let t = CommandTable(["config": -2, "config|get": -3, "config|resetstat": 2, "command": -1, "command|count": 2])
        #expect(t.refusal(Self.args("config", "get", "maxmemory")) == nil)
        #expect(t.refusal(Self.args("CONFIG", "GET", "a", "b")) == nil)
        #expect(t.refusal(Self.args("config", "resetstat")) == nil)
        #expect(t.refusal(Self.args("command")) == nil)
        #expect(t.refusal(Self.args("command", "count")) == nil)
        #expect(t.refusal(Self.args("CONFIG")) == Array("-ERR wrong number of arguments for 'config' command\r\n".utf8))
        #expect(t.refusal(Self.args("config", "GET")) == Array("-ERR wrong number of arguments for 'config|get' command\r\n".utf8))
        #expect(t.refusal(Self.args("cOnFiG", "bogus", "x"))
            == Array("-ERR unknown subcommand 'bogus'. Try CONFIG HELP.\r\n".utf8))
        #expect(t.refusal([Array("config".utf8), Array("a\u{0}b".utf8)])
            == Array("-ERR unknown subcommand 'a'. Try CONFIG HELP.\r\n".utf8))
        #expect(t.refusal([Array("config".utf8), Array("b\r\nx".utf8)])
            == Array("-ERR unknown subcommand 'b  x'. Try CONFIG HELP.\r\n".utf8))
        #expect(t.refusal(Self.args("command", "count", "x"))
            == Array("-ERR wrong number of arguments for 'command|count' command\r\n".utf8))
    }

    @Test("a hello with a command table round-trips; one without keeps its old bytes, with or without HTTP")
    func helloRoundTrip() throws {
        var h = Hello(service: "s", version: "1", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false,
                      pid: 9, comparisonRules: ["A": .ignore], commands: Self.table)
        func roundTrip(_ hello: Hello) throws -> WireMessage? {
            var out = ByteWriter()
            FrameCodec.encode(.hello(hello), into: &out)
            var decoder = FrameDecoder()
            decoder.append(out.bytes)
            return try decoder.next()
        }
        #expect(try roundTrip(h) == .hello(h))
        h.http = HTTPServiceDeclaration()
        #expect(try roundTrip(h) == .hello(h))

        var plain = h
        plain.http = nil
        plain.commands = nil
        var withTable = plain
        withTable.commands = Self.table
        var a = ByteWriter()
        var b = ByteWriter()
        FrameCodec.encode(.hello(plain), into: &a)
        FrameCodec.encode(.hello(withTable), into: &b)
        // The table is appended: a greeting without one is a prefix of the same greeting with one.
        #expect(Array(b.bytes.dropFirst(4).prefix(a.bytes.count - 4)) == Array(a.bytes.dropFirst(4)))
        #expect(try roundTrip(plain) == .hello(plain))
    }

    @Test("a greeting's sections must be known and in order; a table's arities must be plausible")
    func malformedSections() throws {
        func body(_ extra: [UInt8]) -> [UInt8] {
            var w = ByteWriter()
            FrameCodec.encode(.hello(Hello(service: "s", version: "1", schemaVersion: 1, minimumMigratableSchema: 1,
                                           canDowngrade: false, pid: 1, comparisonRules: [:])), into: &w)
            var bytes = w.bytes + extra
            // Patch the frame's length (the first 4 bytes, little-endian).
            let n = UInt32(bytes.count - 4)
            for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: n >> (8 * UInt32(i))) }
            return bytes
        }
        var table = ByteWriter()
        table.write(UInt8(2))
        CommandTable(["get": 2]).encode(to: &table)
        for extra in [[UInt8(3)], table.bytes + [1], [2, 1, 3, 103, 101, 116] + [0, 0, 0, 0, 0, 0, 0, 0]] {
            var decoder = FrameDecoder()
            decoder.append(body(extra))
            #expect(throws: (any Error).self) { _ = try decoder.next() }
        }
        var decoder = FrameDecoder()
        decoder.append(body(table.bytes))
        guard case .hello(let h)? = try decoder.next() else {
            Issue.record("no hello")
            return
        }
        #expect(h.commands == CommandTable(["get": 2]))
    }

    @Test("connection inputs carry the connection id in front of the body")
    func connectionInput() throws {
        let body = CommandCodec.encode(Self.args("WATCH", "a", "b"))
        let payload = ConnectionInput.encode(connection: -7, body: body)
        #expect(payload.count == ConnectionInput.headerSize + body.count)
        let (id, decoded) = try ConnectionInput.decode(payload)
        #expect(id == -7)
        #expect(try CommandCodec.decode(decoded) == Self.args("WATCH", "a", "b"))
        let closed = try ConnectionInput.decode(ConnectionInput.encode(connection: 42))
        #expect(closed.connection == 42 && closed.body.isEmpty)
        #expect(throws: DecodingError.self) { try ConnectionInput.decode([1, 2, 3]) }
    }
}
