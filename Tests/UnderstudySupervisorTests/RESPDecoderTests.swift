import NIOCore
import Testing
@testable import UnderstudyFrontend
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("RESP front-end decoding")
struct RESPDecoderTests {
    typealias Result = RESPRequestParser.Result

    /// Feeds `pieces` as successive reads into one parser, compacting the buffer after each read as
    /// `ByteToMessageHandler` may, and collects every result but `needMoreData` (stopping at an error).
    static func feed(_ pieces: [[UInt8]], limits: RESPLimits = RESPLimits()) -> (results: [Result], parser: RESPRequestParser) {
        var parser = RESPRequestParser(limits: limits)
        var buffer = ByteBuffer()
        var results: [Result] = []
        for piece in pieces {
            buffer.writeBytes(piece)
            while true {
                let result = parser.next(&buffer)
                if result == .needMoreData { break }
                results.append(result)
                if case .error = result { return (results, parser) }
            }
            buffer.discardReadBytes()
        }
        return (results, parser)
    }

    func parseAll(_ text: String, limits: RESPLimits = RESPLimits()) -> [Result] {
        Self.feed([Array(text.utf8)], limits: limits).results
    }

    func args(_ items: String...) -> Result {
        .input(items.map { Array($0.utf8) })
    }

    @Test("multibulk arrays, pipelined, are decoded in order")
    func multibulk() {
        let results = parseAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
        #expect(results == [args("SET", "k", "hello"), args("GET", "k")])
        #expect(parseAll("*1\r\n$0\r\n\r\n*0\r\n*-1\r\n") == [args(""), .skip, .skip])
    }

    @Test("inline commands with quotes and escapes split like redis-server")
    func inline() {
        #expect(parseAll("PING\r\n") == [args("PING")])
        #expect(parseAll("set \"a b\" 'c d'\r\n") == [args("set", "a b", "c d")])
        #expect(parseAll("set k \"\\x41\\n\"\n") == [args("set", "k", "A\n")])
        #expect(parseAll("\r\n") == [.skip])
    }

    /// Multibulk and inline commands, empty inputs and an empty argument, pipelined.
    static let mixedStream = Array(
        ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n*0\r\nset \"a b\" 'c'\n"
            + "*2\r\n$3\r\nGET\r\n$0\r\n\r\n\r\n  echo  x  \r\n*1\r\n$12\r\nline\r\nbreaks\r\n").utf8)

    @Test("a stream split at any one or two points decodes as when read whole, each byte examined once")
    func everySplit() throws {
        let stream = Self.mixedStream
        let whole = Self.feed([stream])
        #expect(whole.results.count == 8)
        #expect(whole.results.last == .input([Array("line\r\nbreaks".utf8)]))
        #expect(whole.parser.examinedBytes == stream.count)
        for first in 0...stream.count {
            for second in first...stream.count {
                let pieces = [Array(stream[..<first]), Array(stream[first..<second]), Array(stream[second...])]
                let split = Self.feed(pieces)
                #expect(split.results == whole.results, "split at \(first) and \(second)")
                #expect(split.parser.examinedBytes == stream.count, "split at \(first) and \(second)")
            }
        }
        let byteAtATime = Self.feed(stream.map { [$0] })
        #expect(byteAtATime.results == whole.results)
        #expect(byteAtATime.parser.examinedBytes == stream.count)
    }

    @Test("an unfinished command waits for the rest, keeping what it parsed")
    func partial() {
        let full = Array("*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n".utf8)
        for cut in 0..<full.count {
            let (results, parser) = Self.feed([Array(full.prefix(cut))])
            #expect(results.isEmpty)
            // The first argument counts as held once its bytes (and CRLF) are in.
            #expect(parser.bufferedArgumentBytes == (cut >= 13 ? 3 : 0))
        }
    }

    @Test("an inline command split across reads, and a long line read in pieces, each byte examined once")
    func inlineAcrossReads() {
        let line = Array("SET key \"a value\"\r\n".utf8)
        for cut in 0...line.count {
            #expect(Self.feed([Array(line[..<cut]), Array(line[cut...])]).results == [args("SET", "key", "a value")])
        }
        // A 60 KiB inline command in 100-byte reads: the line is searched once, not once per read.
        let long = Array(("SET k " + String(repeating: "v", count: 60 << 10) + "\r\n").utf8)
        let pieces = stride(from: 0, to: long.count, by: 100).map { Array(long[$0..<min($0 + 100, long.count)]) }
        let (results, parser) = Self.feed(pieces)
        #expect(results == [.input([Array("SET".utf8), Array("k".utf8), Array(repeating: UInt8(ascii: "v"), count: 60 << 10)])])
        #expect(parser.examinedBytes == long.count)
    }

    /// `*1048576\r\n` followed by a million one-byte arguments (the digits 0 to 9 in turn).
    static func millionArguments() -> (request: [UInt8], count: Int) {
        let count = 1 << 20
        var request = Array("*\(count)\r\n".utf8)
        request.reserveCapacity(request.count + 7 * count)
        for i in 0..<count {
            request += [UInt8(ascii: "$"), UInt8(ascii: "1"), 13, 10, UInt8(ascii: "0") + UInt8(i % 10), 13, 10]
        }
        return (request, count)
    }

    static func checkMillionArguments(_ command: [[UInt8]], count: Int) {
        #expect(command.count == count)
        let wrong = command.indices.first { command[$0] != [UInt8(ascii: "0") + UInt8($0 % 10)] }
        #expect(wrong == nil, "argument \(wrong ?? -1) differs")
    }

    @Test("a 1 048 576-argument command read in 1 KiB pieces decodes in one pass over its bytes")
    func millionArgumentsLinear() throws {
        let (request, count) = Self.millionArguments()
        var parser = RESPRequestParser()
        var buffer = ByteBuffer()
        var decoded: [[UInt8]]?
        var offset = 0
        while offset < request.count {
            let end = min(offset + 1024, request.count)
            buffer.writeBytes(request[offset..<end])
            offset = end
            switch parser.next(&buffer) {
            case .needMoreData: break
            case .input(let command): decoded = command
            case let other: Issue.record("unexpected \(other)")
            }
            buffer.discardReadBytes()
        }
        let command = try #require(decoded)
        Self.checkMillionArguments(command, count: count)
        #expect(buffer.readableBytes == 0)
        // Linear work: every byte was searched or copied exactly once (the old parser restarted at the
        // command's first byte on every read: about 7 000 reads times half of 7 MiB).
        #expect(parser.examinedBytes == request.count)
    }

    @Test(
        "bad input is a protocol error with redis-server's wording, whole or read byte by byte",
        arguments: [
            ("*abc\r\n", "invalid multibulk length"),
            ("*\r\n", "invalid multibulk length"),
            ("*1\r\n$999999999999\r\n", "invalid bulk length"),
            ("*1\r\n$-3\r\n", "invalid bulk length"),
            ("*1\r\n$1x\r\n", "invalid bulk length"),
            ("*1\r\n$000000000000000000000000000000001\r\n", "invalid bulk length"),
            ("*99999999\r\n", "invalid multibulk length"),
            ("*1\r\n:5\r\n", "expected '$', got ':'"),
            ("*2\r\n$1\r\na\r\nx", "expected '$', got 'x'"),
            ("set \"unterminated\r\n", "unbalanced quotes in request"),
            ("set 'a'b\r\n", "unbalanced quotes in request"),
        ])
    func protocolErrors(input: String, message: String) {
        let limits = RESPLimits(maximumArguments: 1024)
        #expect(parseAll(input, limits: limits) == [.error(message)])
        #expect(Self.feed(Array(input.utf8).map { [$0] }, limits: limits).results == [.error(message)])
    }

    @Test("a line longer than the limit is refused before it is buffered whole")
    func tooBigLines() {
        let limits = RESPLimits(maximumInlineLength: 16)
        #expect(parseAll(String(repeating: "a", count: 40), limits: limits) == [.error("too big inline request")])
        #expect(parseAll("*" + String(repeating: "1", count: 40), limits: limits) == [.error("too big mbulk count string")])
        let pieces = Array(String(repeating: "a", count: 40).utf8).map { [$0] }
        #expect(Self.feed(pieces, limits: limits).results == [.error("too big inline request")])
    }

    @Test("a bulk longer than proto-max-bulk-len is refused from its length line")
    func bulkLimit() {
        let limits = RESPLimits(maximumBulkLength: 8)
        #expect(parseAll("*1\r\n$8\r\n12345678\r\n", limits: limits) == [args("12345678")])
        #expect(parseAll("*1\r\n$9\r\n", limits: limits) == [.error("invalid bulk length")])
        #expect(RESPLimits().maximumBulkLength == 536_870_912)
        #expect(RESPLimits().maximumQueryBuffer == 1 << 30)
        #expect(RESPLimits().maximumArguments == 1_048_576)
        #expect(RESPLimits().maximumInputBytes == UnderstudyLimits.maxInputBytes)
    }

    @Test("a command whose encoding would exceed the input limit is refused as soon as a length says so")
    func inputLimit() {
        let fits: [[UInt8]] = [Array("SET".utf8), Array("k".utf8), Array("0123456789".utf8)]
        let size = CommandCodec.encode(fits).count
        #expect(CommandCodec.encodedSize(fits) == size)
        let limits = RESPLimits(maximumInputBytes: size)
        #expect(parseAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n", limits: limits) == [.input(fits)])
        // One byte more: refused at the length line, before the bulk arrives.
        #expect(parseAll("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\n", limits: limits)
            == [.error("command exceeds the maximum input size of \(size) bytes")])
        #expect(parseAll("SET k 01234567890\r\n", limits: limits)
            == [.error("command exceeds the maximum input size of \(size) bytes")])
        #expect(parseAll("SET k 0123456789\r\n", limits: limits) == [.input(fits)])
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
        let comparator = Comparator(dataDirectory: nil, classifier: CommandClassifier())
        comparator.addRules(["smembers": .orderInsensitive, "TIME": .ignore])
        let ab = Array("*2\r\n$1\r\na\r\n$1\r\nb\r\n".utf8)
        let ba = Array("*2\r\n$1\r\nb\r\n$1\r\na\r\n".utf8)
        #expect(comparator.agree(command: "SMEMBERS", ab, ba))
        #expect(!comparator.agree(command: "LRANGE", ab, ba))
        #expect(comparator.agree(command: "TIME", ab, Array(":1\r\n".utf8)))
        #expect(!comparator.agree(command: "SMEMBERS", ab, Array("*1\r\n$1\r\na\r\n".utf8)))
    }
}
