import NIOCore
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("RESP front-end decoding")
struct RESPDecoderTests {
    func parseAll(_ text: String, limits: RESPLimits = RESPLimits()) -> [RESPCommandDecoder.ParseResult] {
        var buffer = ByteBuffer(string: text)
        var out: [RESPCommandDecoder.ParseResult] = []
        while true {
            let r = RESPCommandDecoder.parse(&buffer, limits: limits)
            if r == .needMoreData { break }
            out.append(r)
            if case .error = r { break }
        }
        return out
    }

    func args(_ items: String...) -> RESPCommandDecoder.ParseResult {
        .input(items.map { Array($0.utf8) })
    }

    @Test("multibulk arrays, pipelined, are decoded in order")
    func multibulk() {
        let results = parseAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        #expect(results == [args("SET", "k", "hello"), args("GET", "k")])
    }

    @Test("inline commands with quotes and escapes split like redis-server")
    func inline() {
        #expect(parseAll("PING\r\n") == [args("PING")])
        #expect(parseAll("set \"a b\" 'c d'\r\n") == [args("set", "a b", "c d")])
        #expect(parseAll("set k \"\\x41\\n\"\n") == [args("set", "k", "A\n")])
        #expect(parseAll("\r\n") == [.skip])
    }

    @Test("a command split across reads waits for the rest and consumes nothing")
    func partial() {
        let full = Array("*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n".utf8)
        for cut in 1..<full.count {
            var buffer = ByteBuffer(bytes: full.prefix(cut))
            #expect(RESPCommandDecoder.parse(&buffer, limits: RESPLimits()) == .needMoreData)
            #expect(buffer.readerIndex == 0)
        }
    }

    @Test(
        "bad input is a protocol error with redis-server's wording",
        arguments: [
            ("*abc\r\n", "invalid multibulk length"),
            ("*1\r\n$999999999999\r\n", "invalid bulk length"),
            ("*99999999\r\n", "invalid multibulk length"),
            ("*1\r\n:5\r\n", "expected '$', got ':'"),
            ("set \"unterminated\r\n", "unbalanced quotes in request"),
        ])
    func protocolErrors(input: String, message: String) {
        #expect(parseAll(input, limits: RESPLimits(maximumArguments: 1024)) == [.error(message)])
    }

    @Test("an inline line longer than the limit is refused before it is buffered whole")
    func tooBigInline() {
        let limits = RESPLimits(maximumInlineLength: 16)
        #expect(parseAll(String(repeating: "a", count: 40), limits: limits) == [.error("too big inline request")])
    }

    @Test("replies parse and order-insensitive comparison sorts nested arrays")
    func replies() throws {
        let a = try RESPReplyParser.parseOne(Array("*2\r\n$1\r\nb\r\n$1\r\na\r\n".utf8))
        let b = try RESPReplyParser.parseOne(Array("*2\r\n$1\r\na\r\n$1\r\nb\r\n".utf8))
        #expect(a != b)
        #expect(a.sortedArrays == b.sortedArrays)
        #expect(try RESPReplyParser.parseOne(Array(":42\r\n".utf8)) == .integer(42))
        #expect(try RESPReplyParser.parseOne(Array("$-1\r\n".utf8)) == .bulk(nil))
        #expect(throws: (any Error).self) { try RESPReplyParser.parseOne(Array("?x\r\n".utf8)) }
    }

    @Test("listen addresses parse, and loopback is recognised")
    func addresses() {
        #expect(ListenAddress(parsing: "127.0.0.1:6380") == ListenAddress(host: "127.0.0.1", port: 6380))
        #expect(ListenAddress(parsing: "[::1]:0") == ListenAddress(host: "::1", port: 0))
        #expect(ListenAddress(parsing: "6379")?.port == 6379)
        #expect(ListenAddress(parsing: "host:99999") == nil)
        #expect(ListenAddress(host: "10.0.0.1", port: 1).isLoopback == false)
        #expect(ListenAddress(host: "::1", port: 1).isLoopback)
    }
}

@Suite("Shadow comparison rules")
struct ShadowComparisonTests {
    @Test("exact, order-insensitive and ignored commands")
    func rules() {
        let shadowing = ShadowManager(dataDirectory: nil, classifier: CommandClassifier())
        shadowing.addRules(["smembers": .orderInsensitive, "TIME": .ignore])
        let ab = Array("*2\r\n$1\r\na\r\n$1\r\nb\r\n".utf8)
        let ba = Array("*2\r\n$1\r\nb\r\n$1\r\na\r\n".utf8)
        #expect(shadowing.agree(command: "SMEMBERS", ab, ba))
        #expect(!shadowing.agree(command: "LRANGE", ab, ba))
        #expect(shadowing.agree(command: "TIME", ab, Array(":1\r\n".utf8)))
        #expect(!shadowing.agree(command: "SMEMBERS", ab, Array("*1\r\n$1\r\na\r\n".utf8)))
    }
}
