import UnderstudyWire

/// A deterministic random generator (xoshiro256**) seeded from the journaled seed.
///
/// Every instance replaying the same journal draws the same numbers at the same sequence point.
public struct DeterministicRandom: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    /// Seeds the generator (SplitMix64 expands the seed into the state).
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }
}

/// Everything a request handler may know about the outside world.
///
/// The determinism contract: a handler reads only its state, the request and this context —
/// never the clock, the system random generator, the network or the file system.
public struct RequestContext: Sendable {
    /// The request's sequence number in the journal.
    public let sequence: UInt64
    /// The journaled wall-clock time, milliseconds since the Unix epoch.
    public let timeMillis: Int64
    /// A random generator seeded from the journaled seed.
    public var random: DeterministicRandom
    /// True when the handler held this request's reply back (``deferReply()``).
    public private(set) var isReplyDeferred = false
    /// Replies to earlier requests that this request produced (``reply(to:_:)``), in order.
    public private(set) var deferredReplies: [DeferredReply] = []

    /// Creates a context.
    public init(sequence: UInt64, timeMillis: Int64, seed: UInt64) {
        self.sequence = sequence
        self.timeMillis = timeMillis
        self.random = DeterministicRandom(seed: seed)
    }

    /// Holds this request's reply back: what the handler returns is discarded, and a later request answers this
    /// one with ``reply(to:_:)`` (a blocked BLPOP answered by the LPUSH that wakes it, or by the clock tick that
    /// passes its timeout). Keep the request in the state — held-back requests must survive snapshots, migrations
    /// and swaps like any other data — and forget it when its connection closes (``InputTag/connectionClosed``,
    /// ``InputTag/connectionsReset``).
    ///
    /// Defer only a command declared in ``UnderstudyService/blockingCommands`` that came as a connection-scoped
    /// input (``InputTag/connectionCommand``): the supervisor then delivers the later reply to the waiting client
    /// exactly once, keeps that client's later commands behind it, and tells the service when the client leaves.
    public mutating func deferReply() {
        isReplyDeferred = true
    }

    /// Answers an earlier request whose reply was held back (``deferReply()``).
    ///
    /// - Parameters:
    ///   - sequence: The earlier request's sequence number (its ``sequence`` when it deferred).
    ///   - response: The reply bytes, in the client protocol's encoding.
    public mutating func reply(to sequence: UInt64, _ response: [UInt8]) {
        deferredReplies.append(DeferredReply(sequence: sequence, response: response))
    }
}

/// One input to a service.
public struct ServiceRequest: Sendable {
    /// The protocol tag (``InputTag``).
    public var tag: UInt8
    /// The payload bytes.
    public var payload: [UInt8]

    /// Creates a request.
    public init(tag: UInt8, payload: [UInt8]) {
        self.tag = tag
        self.payload = payload
    }

    /// A Redis-protocol command request.
    public static func command(_ arguments: [String]) -> ServiceRequest {
        ServiceRequest(tag: InputTag.resp, payload: CommandCodec.encode(arguments.map { Array($0.utf8) }))
    }
}

/// One step of a validation case: a request and what its reply must satisfy.
public struct ValidationStep: Sendable {
    /// The request.
    public var request: ServiceRequest
    /// Returns nil when the reply is acceptable, otherwise what is wrong with it.
    public var check: @Sendable ([UInt8]) -> String?

    /// A step whose reply must equal `expected` exactly.
    public init(_ request: ServiceRequest, expect expected: [UInt8]) {
        self.request = request
        self.check = { reply in
            reply == expected ? nil : "expected \(String(decoding: expected, as: UTF8.self).debugDescription), got \(String(decoding: reply, as: UTF8.self).debugDescription)"
        }
    }

    /// A step with an arbitrary check.
    public init(_ request: ServiceRequest, check: @escaping @Sendable ([UInt8]) -> String?) {
        self.request = request
        self.check = check
    }
}

/// A named sequence of requests with expectations, run against a fork of the live state.
public struct ValidationCase: Sendable {
    /// The case's name, shown in reports.
    public var name: String
    /// The steps, run in order on one fork.
    public var steps: [ValidationStep]

    /// Creates a case.
    public init(name: String, steps: [ValidationStep]) {
        self.name = name
        self.steps = steps
    }
}

/// What a service author implements: a deterministic state machine with a versioned schema.
///
/// The runtime (``WorkerRuntime``) drives it: it applies journaled requests in order, snapshots
/// and restores its state, migrates snapshots of older schemas, and reports digests.
public protocol UnderstudyService: Sendable {
    /// The state type.
    associatedtype State: TrackedState

    /// The service's name (instances of different services never swap).
    static var name: String { get }
    /// The service's version, e.g. "2.0.0".
    static var version: String { get }
    /// The state schema version this code reads and writes.
    static var schemaVersion: UInt32 { get }
    /// The oldest schema ``migrate(from:)`` accepts (default: ``schemaVersion``).
    static var minimumMigratableSchema: UInt32 { get }
    /// Per-command reply comparison rules (upper-case command names); unlisted compare exactly.
    static var comparisonRules: [String: ComparisonRule] { get }
    /// True when ``downgrade(_:)`` is implemented (default false).
    static var supportsDowngrade: Bool { get }
    /// The client protocol: nil (the default) for the Redis protocol; an HTTP declaration makes the supervisor
    /// serve HTTP/1.1 (``UnderstudyHTTPService`` provides it).
    static var httpDeclaration: HTTPServiceDeclaration? { get }
    /// The Redis-protocol commands the service knows, with Redis's arities (nil, the default: not declared).
    /// The supervisor refuses a command inside MULTI that is not in the table, or has the wrong number of
    /// arguments, while queueing it (EXEC then answers `-EXECABORT`); and it offers WATCH only to a service that
    /// declares `watch` and handles ``InputTag/connectionCommand`` and ``InputTag/connectionTransaction``.
    static var commandTable: CommandTable? { get }
    /// Upper-case names of the commands that may hold their reply back with ``RequestContext/deferReply()``
    /// (default: none). The supervisor sends them as ``InputTag/connectionCommand`` inputs, so the service knows
    /// the connection of a request it holds, and submits nothing more from a connection while such a command of
    /// it is unanswered, as Redis does for a blocked client.
    static var blockingCommands: [String] { get }

    /// The state of a new, empty service.
    func makeInitialState() -> State

    /// Handles one request deterministically and returns the reply bytes.
    func handle(_ request: ServiceRequest, state: inout State, context: inout RequestContext) -> [UInt8]

    /// Builds a state from a snapshot of an older schema (Erlang's `code_change`).
    func migrate(from snapshot: StateSnapshot) throws -> State

    /// Converts the state to the previous schema, when this version supports going back.
    /// Return nil when there is no downgrade.
    func downgrade(_ state: State) throws -> (any TrackedState)?

    /// Advice: keys likely to be used soon. The default ignores it.
    func prefetch(keys: [[UInt8]], state: State)

    /// The validation suite run against a fork before this version may take over.
    var validationSuite: [ValidationCase] { get }
}

/// The error a default ``UnderstudyService/migrate(from:)`` throws.
public struct MigrationError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension UnderstudyService {
    public static var minimumMigratableSchema: UInt32 { schemaVersion }
    public static var comparisonRules: [String: ComparisonRule] { [:] }
    public static var supportsDowngrade: Bool { false }
    public static var httpDeclaration: HTTPServiceDeclaration? { nil }
    public static var commandTable: CommandTable? { nil }
    public static var blockingCommands: [String] { [] }
    public func migrate(from snapshot: StateSnapshot) throws -> State {
        throw MigrationError("\(Self.name) \(Self.version) cannot migrate from schema \(snapshot.schemaVersion)")
    }
    public func downgrade(_ state: State) throws -> (any TrackedState)? { nil }
    public func prefetch(keys: [[UInt8]], state: State) {}
    public var validationSuite: [ValidationCase] { [] }
}
