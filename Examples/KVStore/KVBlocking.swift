import UnderstudyKit
import UnderstudyWire

/// A request blocked in BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX or BZMPOP: held in the state
/// (snapshotted, digested, migrated like any data) until a write gives it data, its timeout passes, or its
/// connection closes.
public struct KVBlockedRequest: Sendable, Equatable, StateValue {
    /// The client connection that sent it (``ConnectionInput``).
    public var connection: Int64
    /// The command as the client sent it, name first (it was valid when it blocked).
    public var arguments: [[UInt8]]
    /// The journaled time in milliseconds after which it times out; 0 for never.
    public var deadline: Int64

    /// Creates a blocked request.
    public init(connection: Int64, arguments: [[UInt8]], deadline: Int64) {
        self.connection = connection
        self.arguments = arguments
        self.deadline = deadline
    }

    public func encode(to w: inout ByteWriter) {
        w.write(connection)
        w.writeVarint(UInt64(arguments.count))
        for a in arguments { w.writeBytes(a) }
        w.write(deadline)
    }

    public init(decoding r: inout ByteReader) throws {
        connection = try r.readInt64()
        let n = try r.readCount(limit: r.remaining)
        var arguments: [[UInt8]] = []
        arguments.reserveCapacity(n)
        for _ in 0..<n { arguments.append(try r.readBytes()) }
        self.arguments = arguments
        self.deadline = try r.readInt64()
    }
}

/// The requests blocked on one key, in the order they blocked (Redis serves the first blocked first).
public struct KVWaiters: Sendable, Equatable, StateValue {
    /// Sequence numbers of blocked requests, oldest first.
    public var sequences: [UInt64]

    /// Creates a waiting list.
    public init(sequences: [UInt64]) { self.sequences = sequences }

    public func encode(to w: inout ByteWriter) {
        w.writeVarint(UInt64(sequences.count))
        for s in sequences { w.write(s) }
    }

    public init(decoding r: inout ByteReader) throws {
        let n = try r.readCount(limit: r.remaining / 8)
        var sequences: [UInt64] = []
        sequences.reserveCapacity(n)
        for _ in 0..<n { sequences.append(try r.read(UInt64.self)) }
        self.sequences = sequences
    }
}

/// The blocked requests of a key-value state, the same in both schema versions: map "blocked" (sequence number,
/// 8 bytes big-endian → request), map "blockedkeys" (key → waiting requests) and map "blockedmeta" ("deadline" →
/// the earliest deadline, so an input checks timeouts without visiting every blocked request).
public struct KVBlocking: Sendable {
    /// Blocked requests by sequence number.
    public var requests = TrackedMap<KVBlockedRequest>(name: "blocked")
    /// Per key, the requests waiting on it, oldest first.
    public var waiters = TrackedMap<KVWaiters>(name: "blockedkeys")
    /// The earliest deadline among the blocked requests (key "deadline"; absent when none has one).
    public var meta = TrackedMap<Int64>(name: "blockedmeta")
    /// Keys some request waits on that were created during the current input, in the order they were created
    /// (Redis's ready keys). Not part of the state: it is empty between inputs.
    var ready: [[UInt8]] = []

    /// Creates an empty set of blocked requests.
    public init() {}

    static let deadlineKey: [UInt8] = Array("deadline".utf8)

    /// The map key of a sequence number (big-endian, so keys sort in sequence order).
    static func key(_ sequence: UInt64) -> [UInt8] {
        withUnsafeBytes(of: sequence.bigEndian) { Array($0) }
    }

    static func sequence(_ key: [UInt8]) -> UInt64 {
        key.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The number of blocked requests.
    public var count: Int { requests.count }

    /// Notes that `key` was just created: a request waiting on it may now be served.
    mutating func keyCreated(_ key: [UInt8]) {
        guard !waiters.isEmpty, waiters.peek(key) != nil, !ready.contains(key) else { return }
        ready.append(key)
    }

    /// Holds a request of `connection`: it waits on each of `keys` (duplicates once) until `deadline` (0: forever).
    mutating func add(sequence: UInt64, connection: Int64, arguments: [[UInt8]], keys: [[UInt8]], deadline: Int64) {
        requests.set(Self.key(sequence), KVBlockedRequest(connection: connection, arguments: arguments, deadline: deadline))
        var seen: Set<[UInt8]> = []
        for k in keys where seen.insert(k).inserted {
            waiters.update(k) { (w: inout KVWaiters?) in
                if w == nil { w = KVWaiters(sequences: []) }
                w!.sequences.append(sequence)
            }
        }
        if deadline != 0, (meta.peek(Self.deadlineKey) ?? .max) > deadline {
            meta.set(Self.deadlineKey, deadline)
        }
    }

    /// Forgets a request (served, timed out or cancelled); returns it.
    @discardableResult
    mutating func remove(_ sequence: UInt64) -> KVBlockedRequest? {
        guard let request = requests.remove(Self.key(sequence)) else { return nil }
        for k in KVBlockingCommand.keys(of: request.arguments) {
            waiters.update(k) { (w: inout KVWaiters?) in
                w?.sequences.removeAll { $0 == sequence }
                if w?.sequences.isEmpty == true { w = nil }
            }
        }
        if request.deadline != 0, meta.peek(Self.deadlineKey) == request.deadline {
            recomputeDeadline()
        }
        return request
    }

    /// The blocked request of a connection (a connection blocks at most once at a time), if any.
    func sequence(ofConnection connection: Int64) -> UInt64? {
        var found: UInt64?
        requests.forEach { k, r in if r.connection == connection { found = min(found ?? .max, Self.sequence(k)) } }
        return found
    }

    /// Forgets the requests of a connection that closed.
    mutating func remove(connection: Int64) {
        guard !requests.isEmpty else { return }
        var gone: [UInt64] = []
        requests.forEach { k, r in if r.connection == connection { gone.append(Self.sequence(k)) } }
        for s in gone.sorted() { remove(s) }
    }

    /// Forgets every request.
    mutating func removeAll() {
        if !requests.isEmpty { requests.removeAll() }
        if !waiters.isEmpty { waiters.removeAll() }
        if !meta.isEmpty { meta.removeAll() }
    }

    mutating func recomputeDeadline() {
        var earliest = Int64.max
        requests.forEach { _, r in if r.deadline != 0 && r.deadline < earliest { earliest = r.deadline } }
        if earliest == .max {
            if meta.peek(Self.deadlineKey) != nil { meta.remove(Self.deadlineKey) }
        } else if meta.peek(Self.deadlineKey) != earliest {
            meta.set(Self.deadlineKey, earliest)
        }
    }

    /// The requests whose deadline is before `now`, in sequence order.
    func expired(before now: Int64) -> [UInt64] {
        guard let earliest = meta.peek(Self.deadlineKey), earliest < now else { return [] }
        var out: [UInt64] = []
        requests.forEach { k, r in if r.deadline != 0 && r.deadline < now { out.append(Self.sequence(k)) } }
        return out.sorted()
    }

    /// Visits the maps (for the state's `visitMaps`).
    func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(requests)
        v.visit(waiters)
        v.visit(meta)
    }

    /// Visits the maps mutably (for the state's `visitMaps(mutating:)`).
    mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&requests)
        v.visit(&waiters)
        v.visit(&meta)
    }

    /// Reads the maps from a snapshot (either schema; absent maps stay empty).
    mutating func decode(from snapshot: StateSnapshot) throws {
        try snapshot.decodeMap("blocked", into: &requests)
        try snapshot.decodeMap("blockedkeys", into: &waiters)
        try snapshot.decodeMap("blockedmeta", into: &meta)
    }
}

/// A parsed blocking command.
struct KVBlockingCommand {
    /// What the command does once it has data.
    enum Operation: Equatable {
        /// BLPOP (left) and BRPOP: one element, replied as [key, element].
        case pop(left: Bool)
        /// BLMOVE and BRPOPLPUSH: one element moved to `destination`, replied as the element.
        case move(fromLeft: Bool, toLeft: Bool, destination: [UInt8])
        /// BLMPOP: up to `count` elements, replied as [key, [elements]].
        case multiPop(left: Bool, count: Int)
        /// BZPOPMIN (min) and BZPOPMAX: one member, replied as [key, member, score].
        case zpop(min: Bool)
        /// BZMPOP: up to `count` members, replied as [key, [[member, score], ...]].
        case zmultiPop(min: Bool, count: Int)

        /// True for the list commands (served when a list appears), false for the sorted-set ones.
        var onLists: Bool {
            switch self {
            case .pop, .move, .multiPop: return true
            case .zpop, .zmultiPop: return false
            }
        }
    }

    var operation: Operation
    /// The keys waited on, in the command's order.
    var keys: [[UInt8]]
    /// The timeout in milliseconds (0: none).
    var timeout: Int64

    /// The keys a (valid) blocking command waits on.
    static func keys(of a: [[UInt8]]) -> [[UInt8]] {
        switch lower(a[0]) {
        case "blpop", "brpop", "bzpopmin", "bzpopmax": return Array(a[1..<(a.count - 1)])
        case "brpoplpush", "blmove": return [a[1]]
        case "blmpop", "bzmpop":
            guard let n = RedisNumber.parseInt(a[2]), n >= 1, n <= Int64(a.count - 4) else { return [] }
            return Array(a[3..<(3 + Int(n))])
        default: return []
        }
    }

    /// Redis's timeout argument: seconds as a long double, rounded up to milliseconds and converted as C converts
    /// (a value out of the 64-bit range becomes the most negative one, so it is "negative").
    static func parseTimeout(_ b: [UInt8]) -> Result<Int64, ReplyError> {
        guard let seconds = RedisNumber.parseLongDouble(b) else {
            return .failure(ReplyError(.error("ERR timeout is not a float or out of range")))
        }
        let ms = (seconds * 1000).rounded(.up)
        let t: Int64 = ms >= -9_223_372_036_854_775_808.0 && ms < 9_223_372_036_854_775_808.0 ? Int64(ms) : .min
        if t < 0 { return .failure(ReplyError(.error("ERR timeout is negative"))) }
        return .success(t)
    }

    /// Parses a blocking command whose arity was checked, with Redis's checks in Redis's order.
    static func parse(_ name: String, _ a: [[UInt8]]) -> Result<KVBlockingCommand, ReplyError> {
        func end(_ b: [UInt8]) -> Bool? {
            if eq(b, "left") { return true }
            if eq(b, "right") { return false }
            return nil
        }
        func timeout(_ b: [UInt8]) -> Result<Int64, ReplyError> { parseTimeout(b) }
        switch name {
        case "blpop", "brpop", "bzpopmin", "bzpopmax":
            return timeout(a[a.count - 1]).map { t in
                let op: Operation
                switch name {
                case "blpop": op = .pop(left: true)
                case "brpop": op = .pop(left: false)
                case "bzpopmin": op = .zpop(min: true)
                default: op = .zpop(min: false)
                }
                return KVBlockingCommand(operation: op, keys: Array(a[1..<(a.count - 1)]), timeout: t)
            }
        case "brpoplpush":
            return timeout(a[3]).map {
                KVBlockingCommand(operation: .move(fromLeft: false, toLeft: true, destination: a[2]), keys: [a[1]], timeout: $0)
            }
        case "blmove":
            guard let from = end(a[3]), let to = end(a[4]) else { return .failure(ReplyError(.syntax)) }
            return timeout(a[5]).map {
                KVBlockingCommand(operation: .move(fromLeft: from, toLeft: to, destination: a[2]), keys: [a[1]], timeout: $0)
            }
        case "blmpop", "bzmpop":
            // BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]: numkeys, the end, COUNT, then timeout.
            guard let numkeys = RedisNumber.parseInt(a[2]), numkeys >= 1 else {
                return .failure(ReplyError(.error("ERR numkeys should be greater than 0")))
            }
            if numkeys > Int64(a.count - 4) { return .failure(ReplyError(.syntax)) }
            let wi = 3 + Int(numkeys)
            let first: Bool
            if name == "blmpop" {
                guard let left = end(a[wi]) else { return .failure(ReplyError(.syntax)) }
                first = left
            } else if eq(a[wi], "min") {
                first = true
            } else if eq(a[wi], "max") {
                first = false
            } else {
                return .failure(ReplyError(.syntax))
            }
            let n: Int
            switch mpopCount(a, from: wi + 1) {
            case .success(let c): n = Int(clamping: c)
            case .failure(let e): return .failure(e)
            }
            let op: Operation = name == "blmpop" ? .multiPop(left: first, count: n) : .zmultiPop(min: first, count: n)
            return timeout(a[1]).map { KVBlockingCommand(operation: op, keys: Array(a[3..<wi]), timeout: $0) }
        default:
            return .failure(ReplyError(.error("ERR unknown command '\(name)'")))
        }
    }
}
