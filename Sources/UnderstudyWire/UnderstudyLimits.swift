/// The size limits every part of the request path agrees on, in one place.
///
/// Whatever the front-end accepts, the journal stores and a worker frame carries: the front-end refuses a
/// request whose journaled input would exceed ``maxInputBytes``, the journal refuses (with an error, never a
/// trap) a record whose payload exceeds it, and a frame of ``maxFrameBytes`` holds such an input with its
/// header. The client-facing figures are Redis's defaults.
public enum UnderstudyLimits {
    /// The longest single argument (Redis's `proto-max-bulk-len`): 512 MiB.
    public static let maxBulkBytes = 512 << 20

    /// The most arguments in one command (Redis's multibulk limit): 1 048 576.
    public static let maxArguments = 1 << 20

    /// The most bytes buffered for one client before its connection is closed (Redis's
    /// `client-query-buffer-limit`): 1 GiB.
    public static let maxQueryBufferBytes = 1 << 30

    /// The largest frame between supervisor and worker, in either direction (type byte plus body): 1 GiB.
    ///
    /// The frame length field is a `UInt32`, so this leaves a wide margin; both ends (the supervisor's and the
    /// worker runtime's decoders) use this value through ``FrameCodec/defaultMaximumFrameSize``.
    public static let maxFrameBytes = 1 << 30

    /// Room reserved in a frame for what surrounds one input: an `apply` or `forkApply` header (type byte,
    /// fork id, sequence, time, seed, tag and the payload's varint length) needs at most 44 bytes.
    public static let frameHeaderSlack = 4 << 10

    /// The largest journaled input: one encoded command (``CommandCodec/encode(_:)``) or one whole
    /// MULTI/EXEC transaction (``CommandCodec/encodeTransaction(_:)``): 1 GiB minus 4 KiB.
    ///
    /// It is 1 GiB less ``frameHeaderSlack`` so that the frame carrying the input to a worker stays within
    /// ``maxFrameBytes`` and its journal record (payload plus 33 bytes) within 1 GiB: one GiB is the ceiling of
    /// every buffer along the way, as it is of the client's query buffer. A command's encoding is never longer
    /// than its RESP form (varint lengths are shorter than decimal ones with `$`, CR and LF), so every single
    /// command that fits the query buffer is journaled, unless its RESP form comes within 4 KiB of 1 GiB.
    public static let maxInputBytes = maxFrameBytes - frameHeaderSlack

    /// The most keys a worker reports as touched, and as written, for one input: 65 536. The keys are hints (for
    /// the prediction engine and a discrepancy's key list; state digests cover the state itself), so the SDK
    /// reports the first ones only, and the supervisor keeps no more than these from any worker. Without the bound,
    /// a faulty or hostile worker could make one 1 GiB frame of one-byte keys cost the supervisor tens of GiB of
    /// arrays before anything failed.
    public static let maxReportedKeys = 1 << 16
}

extension CommandCodec {
    /// The number of bytes ``ByteWriter/writeVarint(_:)`` writes for `value`.
    @inlinable
    public static func varintSize(_ value: Int) -> Int {
        var size = 1
        var v = UInt64(truncatingIfNeeded: value)
        while v >= 0x80 {
            v >>= 7
            size += 1
        }
        return size
    }

    /// The number of bytes ``encode(_:)`` produces for `arguments`, computed without encoding.
    @inlinable
    public static func encodedSize(_ arguments: [[UInt8]]) -> Int {
        var size = varintSize(arguments.count)
        for argument in arguments { size += varintSize(argument.count) + argument.count }
        return size
    }

    /// The number of bytes ``encodeTransaction(_:)`` produces for `commandCount` commands whose encoded sizes
    /// add up to `commandBytes`.
    @inlinable
    public static func encodedTransactionSize(commandCount: Int, commandBytes: Int) -> Int {
        varintSize(commandCount) + commandBytes
    }
}
