import Testing
import UnderstudyWire

@Suite("Limits that agree end to end")
struct LimitsTests {
    /// The frame length (type byte plus body) of `message` once its one variable field holds `size` bytes
    /// instead of `empty`'s none, computed without building the large value.
    static func frameLength(_ empty: WireMessage, growingBy size: Int) -> Int {
        FrameCodec.encode(empty).count - FrameCodec.lengthPrefixSize - 1 + CommandCodec.varintSize(size) + size
    }

    @Test("Redis's defaults, and an input the size of the limit fits a frame in both directions")
    func agree() {
        #expect(UnderstudyLimits.maxBulkBytes == 536_870_912)
        #expect(UnderstudyLimits.maxQueryBufferBytes == 1 << 30)
        #expect(UnderstudyLimits.maxArguments == 1_048_576)
        #expect(UnderstudyLimits.maxInputBytes < UnderstudyLimits.maxQueryBufferBytes)
        #expect(UnderstudyLimits.maxBulkBytes < UnderstudyLimits.maxInputBytes)
        #expect(FrameCodec.defaultMaximumFrameSize == UnderstudyLimits.maxFrameBytes)
        #expect(FrameDecoder().maximumFrameSize == UnderstudyLimits.maxFrameBytes)
        #expect(UnderstudyLimits.maxFrameBytes <= Int(UInt32.max))

        let input = UnderstudyLimits.maxInputBytes
        let request = ApplyRequest(sequence: .max, time: .min, seed: .max, tag: 255, payload: [])
        let largest = [
            Self.frameLength(.apply(request), growingBy: input),
            Self.frameLength(.forkApply(forkID: .max, request: request), growingBy: input),
            // The reply direction: a reply as large as an input, with no keys.
            Self.frameLength(.applied(ApplyResult(sequence: .max, response: [], touched: [], written: [])), growingBy: input),
            Self.frameLength(.forkResult(forkID: .max, response: []), growingBy: input),
        ]
        for length in largest {
            #expect(length <= UnderstudyLimits.maxFrameBytes)
        }
    }

    @Test("encoded sizes are computed exactly, without encoding")
    func encodedSizes() {
        for value in [0, 1, 127, 128, 16_383, 16_384, 1 << 21, 1 << 28, 1 << 30, Int(Int32.max)] {
            var w = ByteWriter()
            w.writeVarint(UInt64(value))
            #expect(CommandCodec.varintSize(value) == w.bytes.count, "\(value)")
        }
        let commands: [[[UInt8]]] = [
            [Array("SET".utf8), Array("k".utf8), Array(repeating: 7, count: 300)],
            [Array("PING".utf8)],
            [Array("GET".utf8), []],
        ]
        for command in commands {
            #expect(CommandCodec.encodedSize(command) == CommandCodec.encode(command).count)
        }
        let bytes = commands.map(CommandCodec.encodedSize).reduce(0, +)
        #expect(CommandCodec.encodedTransactionSize(commandCount: commands.count, commandBytes: bytes)
            == CommandCodec.encodeTransaction(commands).count)
    }

    @Test("a transaction of more than a million commands decodes (only its size bounds it)")
    func largeTransaction() throws {
        let commands = Array(repeating: [Array("PING".utf8)], count: (1 << 20) + 1)
        #expect(try CommandCodec.decodeTransaction(CommandCodec.encodeTransaction(commands)).count == commands.count)
    }
}
