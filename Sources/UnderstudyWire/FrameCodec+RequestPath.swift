// The two frames every request crosses — `apply` (supervisor → worker) and `applied` (worker → supervisor) — have
// their layouts here and only here, both ways. The worker reaches them through `FrameCodec.encode` / `FrameDecoder`;
// the supervisor encodes `apply` frames straight into its socket buffer (a `ByteSink`) and decodes `applied` bodies
// in place from it.
//
// apply   (type 3): sequence UInt64, time Int64, seed UInt64, tag UInt8, payload (varint length + bytes).
// applied (type 4): sequence UInt64, response (varint length + bytes), touched and written (each a varint count of
//                   varint-length byte strings); then, only when either is set, the pending flag (one byte, 0 or 1)
//                   and the deferred replies (a varint count of: sequence UInt64, response).

extension FrameCodec {
    /// The type byte of an `apply` frame (``WireMessage/apply(_:)``).
    @inlinable public static var applyFrameType: UInt8 { 3 }

    /// The type byte of an `applied` frame (``WireMessage/applied(_:)``).
    @inlinable public static var appliedFrameType: UInt8 { 4 }

    /// Appends one complete `apply` frame — byte for byte what ``encode(_:)`` writes for
    /// ``WireMessage/apply(_:)`` — to a sink.
    ///
    /// The request path's encoder: the frame's length is known before its first byte, so the sink only appends.
    /// - Parameters:
    ///   - request: The input to send.
    ///   - sink: Where the frame goes.
    @inlinable
    public static func encodeApply(_ request: ApplyRequest, into sink: inout some ByteSink) {
        // Type byte; sequence, time, seed; tag; payload length; payload.
        let payloadCount = request.payload.count
        let frameLength = 1 + 8 + 8 + 8 + 1 + Varint.encodedSize(UInt64(payloadCount)) + payloadCount
        sink.appendLittleEndian(UInt32(frameLength))
        sink.appendByte(applyFrameType)
        encodeApplyBody(request, into: &sink)
    }

    /// Appends the body of an `apply` frame (also the request inside a `forkApply` frame).
    @inlinable
    static func encodeApplyBody(_ request: ApplyRequest, into sink: inout some ByteSink) {
        sink.appendLittleEndian(request.sequence)
        sink.appendLittleEndian(request.time)
        sink.appendLittleEndian(request.seed)
        sink.appendByte(request.tag)
        sink.appendLengthPrefixed(request.payload)
    }

    /// Appends the body of an `applied` frame.
    static func encodeAppliedBody(_ result: ApplyResult, into sink: inout some ByteSink) {
        sink.appendLittleEndian(result.sequence)
        sink.appendLengthPrefixed(result.response)
        sink.appendVarint(UInt64(result.touched.count))
        for key in result.touched { sink.appendLengthPrefixed(key) }
        sink.appendVarint(UInt64(result.written.count))
        for key in result.written { sink.appendLengthPrefixed(key) }
        // The optional tail: absent when neither is set, so such a result is what it was before deferred replies.
        if result.pending || !result.deferredReplies.isEmpty {
            sink.appendByte(result.pending ? 1 : 0)
            sink.appendVarint(UInt64(result.deferredReplies.count))
            for reply in result.deferredReplies {
                sink.appendLittleEndian(reply.sequence)
                sink.appendLengthPrefixed(reply.response)
            }
        }
    }

    /// Decodes the body of an `applied` frame — what follows the length prefix and the type byte — in place.
    ///
    /// The supervisor's request path calls it on its socket buffer's bytes; ``decode(type:body:from:to:)`` and
    /// ``FrameDecoder`` use the same code for `applied` frames. Each byte string of the result is copied out of
    /// `body` once.
    /// - Parameter body: Exactly the body: bytes after its last field are an error.
    /// - Returns: The result.
    /// - Throws: ``FrameError/malformed(type:reason:)`` when the body is cut short, a length or count goes beyond
    ///   it, a varint runs past 10 bytes, the pending flag is neither 0 nor 1, or bytes trail the last field.
    public static func decodeAppliedBody(_ body: UnsafeRawBufferPointer) throws(FrameError) -> ApplyResult {
        var reader = UnsafeByteReader(body)
        do throws(DecodingError) {
            let result = try reader.readAppliedBody()
            guard reader.isAtEnd else { throw DecodingError("\(reader.remaining) trailing bytes") }
            return result
        } catch {
            throw .malformed(type: appliedFrameType, reason: error.context)
        }
    }
}

extension UnsafeByteReader {
    /// Reads an `apply` body (also the request inside a `forkApply` frame).
    mutating func readApplyRequest() throws(DecodingError) -> ApplyRequest {
        ApplyRequest(
            sequence: try read(UInt64.self), time: try read(Int64.self), seed: try read(UInt64.self),
            tag: try readByte(), payload: try readBytes())
    }

    /// Reads an `applied` body, with its optional tail when bytes remain after the written keys.
    mutating func readAppliedBody() throws(DecodingError) -> ApplyResult {
        // The key lists are hints: at most ``UnderstudyLimits/maxReportedKeys`` of each are kept.
        let keys = UnderstudyLimits.maxReportedKeys
        var result = ApplyResult(
            sequence: try read(UInt64.self), response: try readBytes(), touched: try readList(keepingAtMost: keys),
            written: try readList(keepingAtMost: keys))
        if !isAtEnd {
            result.pending = try readBool()
            // Every deferred reply takes at least nine bytes; the count is bounded by what is left.
            let count = try readCount(limit: remaining / 9)
            result.deferredReplies.reserveCapacity(count)
            for _ in 0..<count {
                result.deferredReplies.append(DeferredReply(sequence: try read(UInt64.self), response: try readBytes()))
            }
        }
        return result
    }
}
