/// The version of the supervisor–worker protocol this build speaks.
public let wireProtocolVersion: UInt16 = 1

/// How the supervisor compares replies to one command across instances.
public enum ComparisonRule: UInt8, Sendable, Codable, CaseIterable {
    /// Byte-for-byte equal.
    case exact = 0
    /// Equal as multisets of top-level array elements (replies whose order depends on hashing).
    case orderInsensitive = 1
    /// Never compared (clock reads, random picks).
    case ignore = 2
}

/// A key a request touched, or a key in a state map.
public struct MapKey: Sendable, Hashable {
    /// The name of the tracked map.
    public var map: String
    /// The key's bytes.
    public var key: [UInt8]
    /// Creates a map key.
    public init(map: String, key: [UInt8]) {
        self.map = map
        self.key = key
    }
}

/// A key with the stable hash of its canonical value, as reported by a bucket drill-down.
public struct KeyHash: Sendable, Hashable {
    /// Which map and key.
    public var key: MapKey
    /// The stable hash of the canonical value bytes.
    public var valueHash: UInt64
    /// Creates an entry.
    public init(key: MapKey, valueHash: UInt64) {
        self.key = key
        self.valueHash = valueHash
    }
}

/// A key with its canonical value bytes, or nil for "absent" (used by fetch and patch).
public struct KeyValue: Sendable, Hashable {
    /// Which map and key.
    public var key: MapKey
    /// The canonical value bytes, or nil when the key does not exist.
    public var value: [UInt8]?
    /// Creates an entry.
    public init(key: MapKey, value: [UInt8]?) {
        self.key = key
        self.value = value
    }
}

/// The worker's greeting: who it is and what it can do.
public struct Hello: Sendable, Equatable {
    /// The service's name; instances of different services never swap.
    public var service: String
    /// The service's version string (e.g. "1.0.0").
    public var version: String
    /// The state schema version this binary uses.
    public var schemaVersion: UInt32
    /// The oldest schema version this binary can migrate from.
    public var minimumMigratableSchema: UInt32
    /// True when the binary can downgrade its state to `schemaVersion - 1`.
    public var canDowngrade: Bool
    /// The wire protocol version the worker speaks.
    public var protocolVersion: UInt16
    /// The worker's process id.
    public var pid: UInt32
    /// Per-command comparison rules (upper-case command names); unlisted commands compare exactly.
    public var comparisonRules: [String: ComparisonRule]
    /// The client protocol the service speaks: nil for the Redis protocol, otherwise HTTP/1.1 with this
    /// declaration. On the wire it follows the comparison rules only when present, so a Redis-protocol worker's
    /// greeting is byte-for-byte what it was before HTTP existed.
    public var http: HTTPServiceDeclaration?
    /// The commands a Redis-protocol service knows, with their arities; nil when it does not say (every command
    /// is then queued inside MULTI, and WATCH is refused). On the wire it follows the HTTP declaration, only when
    /// present, so the greeting of a service without one is byte-for-byte what it was before.
    public var commands: CommandTable?
    /// Upper-case names of the commands whose reply the service may hold back (blocking commands such as BLPOP):
    /// a front-end sends them as connection-scoped inputs (``InputTag/connectionCommand``), so the service knows
    /// whose request it holds, and submits nothing more from a connection while such a command of it is
    /// unanswered, as Redis runs nothing more from a blocked client. On the wire it follows the command table, only
    /// when the list is not empty.
    public var blockingCommands: [String]

    /// Creates a greeting.
    public init(
        service: String, version: String, schemaVersion: UInt32, minimumMigratableSchema: UInt32,
        canDowngrade: Bool, protocolVersion: UInt16 = wireProtocolVersion, pid: UInt32,
        comparisonRules: [String: ComparisonRule], http: HTTPServiceDeclaration? = nil, commands: CommandTable? = nil,
        blockingCommands: [String] = []
    ) {
        self.http = http
        self.commands = commands
        self.blockingCommands = blockingCommands
        self.service = service
        self.version = version
        self.schemaVersion = schemaVersion
        self.minimumMigratableSchema = minimumMigratableSchema
        self.canDowngrade = canDowngrade
        self.protocolVersion = protocolVersion
        self.pid = pid
        self.comparisonRules = comparisonRules
    }
}

/// One journaled input for a worker to apply.
public struct ApplyRequest: Sendable, Equatable {
    /// The input's sequence number in the journal.
    public var sequence: UInt64
    /// The journaled wall-clock time in milliseconds since the Unix epoch.
    public var time: Int64
    /// The journaled random seed.
    public var seed: UInt64
    /// The protocol tag (see ``InputTag``).
    public var tag: UInt8
    /// The request bytes.
    public var payload: [UInt8]
    /// Creates a request.
    public init(sequence: UInt64, time: Int64, seed: UInt64, tag: UInt8, payload: [UInt8]) {
        self.sequence = sequence
        self.time = time
        self.seed = seed
        self.tag = tag
        self.payload = payload
    }
}

/// Well-known protocol tags for journaled inputs.
public enum InputTag {
    /// A Redis-protocol command: the payload is the argument list (see ``CommandCodec``).
    public static let resp: UInt8 = 1
    /// A MULTI/EXEC transaction: the payload is a list of argument lists, applied atomically.
    public static let respTransaction: UInt8 = 2
    /// A clock tick: empty payload; the service runs time-driven work (expiry) at the journaled time.
    public static let tick: UInt8 = 3
    /// An HTTP request: the payload is an encoded ``HTTPRequest``; the reply an encoded ``HTTPResponse``.
    public static let http: UInt8 = 4
    /// A state checkpoint: the payload is the reference schema version (`UInt32`, little-endian).
    /// Each worker replies with its digest at this exact sequence point (``DigestReport/encoded``):
    /// of its state when its schema equals the reference, of its downgraded state when it is one
    /// newer and can downgrade, and an empty reply otherwise. The state is not changed.
    public static let checkpoint: UInt8 = 5
    /// A quarantine. In the journal: a record naming an input that made an instance trap, exit or pass the
    /// request deadline, which no instance may apply again (payload: ``QuarantineRecord``). To a worker: a no-op
    /// that stands in for the quarantined input, and for the quarantine record itself, so that sequence numbers
    /// stay contiguous. A worker answers it with an empty reply and leaves its state unchanged.
    public static let quarantine: UInt8 = 6
    /// A command that acts on one client connection's state in the service (WATCH, UNWATCH): the payload is a
    /// ``ConnectionInput`` whose body is the argument list (``CommandCodec``). Sent only to services whose
    /// ``CommandTable`` declares the command.
    public static let connectionCommand: UInt8 = 7
    /// The MULTI/EXEC transaction of a connection that holds WATCHed keys: the payload is a ``ConnectionInput``
    /// whose body is the transaction (``CommandCodec/encodeTransaction(_:)``, possibly empty). The service
    /// forgets the connection's watches and answers a null array without running anything when a watched key
    /// changed since WATCH, else runs the commands as ``respTransaction`` does.
    public static let connectionTransaction: UInt8 = 8
    /// A client connection closed: the payload is a ``ConnectionInput`` with an empty body. The service drops
    /// what it holds for the connection (its watches). Nobody reads the reply.
    public static let connectionClosed: UInt8 = 9
    /// A new supervisor process starts serving: no client connection of an earlier one exists any more, and the
    /// service drops every connection's state. Empty payload; nobody reads the reply.
    public static let connectionsReset: UInt8 = 10
}

/// The payload of a journaled ``InputTag/quarantine`` record.
public struct QuarantineRecord: Sendable, Equatable {
    /// The sequence number of the input no instance may apply.
    public var sequence: UInt64
    /// What happened (for example "the primary crashed with signal 4 (SIGILL)").
    public var reason: String

    /// Creates a record.
    public init(sequence: UInt64, reason: String) {
        self.sequence = sequence
        self.reason = reason
    }

    /// The record's bytes: the sequence number (little-endian) and the reason (UTF-8).
    public var encoded: [UInt8] {
        var w = ByteWriter()
        w.write(sequence)
        w.writeString(reason)
        return w.bytes
    }

    /// Decodes a record; nil for bytes that are not one.
    public init?(decoding bytes: [UInt8]) {
        var r = ByteReader(bytes)
        guard let sequence = try? r.read(UInt64.self), let reason = try? r.readString() else { return nil }
        self.init(sequence: sequence, reason: reason)
    }
}

/// The reply to an earlier input, produced by a later one (a blocked BLPOP answered by the LPUSH that woke it,
/// or by the clock tick that passed its timeout).
public struct DeferredReply: Sendable, Equatable, Hashable {
    /// The sequence number of the input this answers (whose own result was ``ApplyResult/pending``).
    public var sequence: UInt64
    /// The reply bytes, in the client protocol's encoding.
    public var response: [UInt8]

    /// Creates a deferred reply.
    public init(sequence: UInt64, response: [UInt8]) {
        self.sequence = sequence
        self.response = response
    }
}

/// The result of applying one input.
public struct ApplyResult: Sendable, Equatable {
    /// The sequence number applied.
    public var sequence: UInt64
    /// The reply bytes, already in the client protocol's encoding (empty when ``pending``).
    public var response: [UInt8]
    /// The keys the request read or wrote.
    public var touched: [[UInt8]]
    /// The keys the request changed (a subset of `touched`).
    public var written: [[UInt8]]
    /// True when the input has no reply yet: a later input answers it with a ``DeferredReply`` (or the service
    /// forgets it when its connection closes).
    public var pending: Bool
    /// Replies to earlier, pending inputs that this input produced, in the order they were made.
    public var deferredReplies: [DeferredReply]

    /// Creates a result.
    ///
    /// On the wire, `pending` and `deferredReplies` follow the other fields only when either is set, so a result
    /// without them is byte-for-byte what it was before deferred replies existed.
    public init(
        sequence: UInt64, response: [UInt8], touched: [[UInt8]], written: [[UInt8]], pending: Bool = false,
        deferredReplies: [DeferredReply] = []
    ) {
        self.sequence = sequence
        self.response = response
        self.touched = touched
        self.written = written
        self.pending = pending
        self.deferredReplies = deferredReplies
    }
}

/// A chunk of a snapshot stream (worker → supervisor, or supervisor → worker on restore).
public struct SnapshotChunk: Sendable, Equatable {
    /// The stream's identifier, chosen by whoever asked for it.
    public var streamID: UInt32
    /// The sequence number the snapshot covers.
    public var sequence: UInt64
    /// The state schema version of the snapshot's encoding.
    public var schemaVersion: UInt32
    /// This chunk's bytes.
    public var data: [UInt8]
    /// True on the last chunk.
    public var isFinal: Bool
    /// On the last chunk, the stable hash of the whole stream's bytes; 0 otherwise.
    public var checksum: UInt64
    /// Creates a chunk.
    public init(streamID: UInt32, sequence: UInt64, schemaVersion: UInt32, data: [UInt8], isFinal: Bool, checksum: UInt64) {
        self.streamID = streamID
        self.sequence = sequence
        self.schemaVersion = schemaVersion
        self.data = data
        self.isFinal = isFinal
        self.checksum = checksum
    }
}

/// Per-bucket digests of a worker's state at a sequence number.
public struct DigestReport: Sendable, Equatable {
    /// The sequence number the digest describes.
    public var sequence: UInt64
    /// One combined hash per bucket.
    public var buckets: [UInt64]
    /// The number of entries across all maps.
    public var entryCount: UInt64
    /// Creates a report.
    public init(sequence: UInt64, buckets: [UInt64], entryCount: UInt64) {
        self.sequence = sequence
        self.buckets = buckets
        self.entryCount = entryCount
    }

    /// The report as bytes (the reply to a checkpoint input).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 24 + buckets.count * 8)
        w.write(sequence)
        w.write(entryCount)
        w.writeVarint(UInt64(buckets.count))
        for b in buckets { w.write(b) }
        return w.bytes
    }

    /// Decodes ``encoded`` bytes.
    public init(encoded: [UInt8]) throws(DecodingError) {
        var r = ByteReader(encoded)
        self.sequence = try r.read(UInt64.self)
        self.entryCount = try r.read(UInt64.self)
        let n = try r.readCount(limit: r.remaining / 8)
        var buckets: [UInt64] = []
        buckets.reserveCapacity(n)
        for _ in 0..<n { buckets.append(try r.read(UInt64.self)) }
        self.buckets = buckets
    }

    /// The indices of buckets that differ from another report's.
    public func mismatchedBuckets(against other: DigestReport) -> [Int] {
        guard buckets.count == other.buckets.count else { return Array(0..<max(buckets.count, other.buckets.count)) }
        return buckets.indices.filter { buckets[$0] != other.buckets[$0] }
    }
}

/// The outcome of a service's validation suite run on a fork.
public struct ValidationReport: Sendable, Equatable {
    /// One failed case.
    public struct Failure: Sendable, Equatable {
        /// The case's name.
        public var name: String
        /// What went wrong, with the request and both replies where there are any.
        public var message: String
        /// Creates a failure.
        public init(name: String, message: String) {
            self.name = name
            self.message = message
        }
    }
    /// How many cases ran.
    public var casesRun: UInt32
    /// The failures; empty means the suite passed.
    public var failures: [Failure]
    /// Creates a report.
    public init(casesRun: UInt32, failures: [Failure]) {
        self.casesRun = casesRun
        self.failures = failures
    }
}

/// Error codes carried in an error frame.
public enum WireErrorCode: UInt16, Sendable {
    case malformedFrame = 1
    case unknownFrameType = 2
    case frameTooLarge = 3
    case unexpectedMessage = 4
    case handlerFailed = 5
    case restoreFailed = 6
    case unsupported = 7
    case outOfOrder = 8
    case protocolMismatch = 9
    case unknownFork = 10
}

/// Every message exchanged between supervisor and worker.
public enum WireMessage: Sendable, Equatable {
    /// Worker → supervisor, first frame after connecting.
    case hello(Hello)
    /// Supervisor → worker: the greeting was accepted.
    case helloAck(instanceID: UInt32)
    /// Supervisor → worker: apply one journaled input.
    case apply(ApplyRequest)
    /// Worker → supervisor: one input's result.
    case applied(ApplyResult)
    /// Supervisor → worker: stream the current state as a snapshot.
    case snapshotRequest(streamID: UInt32)
    /// A piece of a snapshot, in either direction (worker → supervisor after a request; supervisor → worker to restore).
    case snapshotChunk(SnapshotChunk)
    /// Worker → supervisor: a restore finished; the state now covers `sequence`.
    case restored(sequence: UInt64, entryCount: UInt64)
    /// Supervisor → worker: report bucket digests.
    case digestRequest
    /// Supervisor → worker: report the digest of the state as it would be after a downgrade.
    case downgradeDigestRequest
    /// Worker → supervisor: bucket digests.
    case digest(DigestReport)
    /// Supervisor → worker: list the keys and value hashes in these buckets.
    case drillDown(buckets: [UInt32])
    /// Worker → supervisor: the entries in the requested buckets.
    case drillDownResult(sequence: UInt64, entries: [KeyHash])
    /// Supervisor → worker: send the canonical values of these keys.
    case fetch(keys: [MapKey])
    /// Worker → supervisor: the fetched values (nil for absent keys).
    case fetchResult(entries: [KeyValue])
    /// Supervisor → worker: set (or, with nil, delete) these keys.
    case patch(entries: [KeyValue])
    /// Worker → supervisor: the patch was applied.
    case patched(count: UInt32)
    /// Supervisor → worker: keys likely to be used soon (advice only).
    case prefetch(keys: [[UInt8]])
    /// Liveness check.
    case ping(nonce: UInt64)
    /// Liveness answer with the last applied sequence number.
    case pong(nonce: UInt64, sequence: UInt64)
    /// Supervisor → worker: exit cleanly.
    case shutdown
    /// Either direction: something went wrong.
    case error(code: WireErrorCode, message: String)
    /// Supervisor → worker: copy the current state into a fork (O(1)).
    case forkCreate(forkID: UInt32)
    /// Supervisor → worker: apply an input to a fork only.
    case forkApply(forkID: UInt32, request: ApplyRequest)
    /// Worker → supervisor: a fork input's reply.
    case forkResult(forkID: UInt32, response: [UInt8])
    /// Supervisor → worker: discard a fork.
    case forkDrop(forkID: UInt32)
    /// Worker → supervisor: a fork was created or dropped.
    case forkAck(forkID: UInt32)
    /// Supervisor → worker: run the service's validation suite on a fresh fork.
    case validate
    /// Worker → supervisor: the suite's outcome.
    case validationReport(ValidationReport)
}
