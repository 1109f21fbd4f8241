import NIOCore
import Testing
import UnderstudyWire

@testable import UnderstudySupervisor

@Suite("Worker frames on the supervisor's side")
struct WorkerFrameTests {
    @Test("apply frames written into a ByteBuffer are the frames FrameCodec encodes", arguments: [0, 1, 127, 128, 16383, 16384, 300_000])
    func applyIntoByteBuffer(_ payloadLength: Int) {
        let r = ApplyRequest(
            sequence: UInt64(payloadLength) + 1, time: 1_700_000_000_000, seed: 0xFEED_FACE_CAFE_BEEF, tag: InputTag.resp,
            payload: (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0) })
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        buffer.writeString("xy")
        buffer.moveReaderIndex(forwardBy: 1)
        FrameCodec.encodeApply(r, into: &buffer)
        #expect(Array(buffer.readableBytesView) == Array("y".utf8) + FrameCodec.encode(.apply(r)))
    }

    @Test("an applied frame is decoded in place from the middle of a buffer, and the reader moves past it alone")
    func appliedInPlace() throws {
        let result = ApplyResult(
            sequence: 12, response: Array("$3\r\nabc\r\n".utf8), touched: [Array("k".utf8), []], written: [Array("k".utf8)],
            pending: false, deferredReplies: [DeferredReply(sequence: 3, response: Array(":1\r\n".utf8))])
        let frame = FrameCodec.encode(.applied(result))
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        buffer.writeBytes([9, 9, 9] + frame + [7, 7])
        buffer.moveReaderIndex(forwardBy: 3)
        #expect(try WorkerFrameDecoder.readApplied(&buffer, frameLength: frame.count - 4) == result)
        #expect(Array(buffer.readableBytesView) == [7, 7])
    }

    @Test("a malformed applied body is a malformed frame error, never a trap")
    func appliedMalformed() {
        for body: [UInt8] in [[], [1, 2, 3], Array(repeating: 0xFF, count: 30), Array(repeating: 0, count: 11) + [0]] {
            var buffer = ByteBufferAllocator().buffer(capacity: 0)
            buffer.writeInteger(UInt32(body.count + 1), endianness: .little)
            buffer.writeInteger(FrameCodec.appliedFrameType)
            buffer.writeBytes(body)
            #expect {
                try WorkerFrameDecoder.readApplied(&buffer, frameLength: body.count + 1)
            } throws: { error in
                guard case .malformed(type: 4, _) = error as? FrameError else { return false }
                return true
            }
        }
    }
}
