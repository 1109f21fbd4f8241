import NIOCore
import UnderstudyFrontend
import UnderstudyPrediction
import UnderstudyWire

/// The sequencer: one order for all inputs. It knows no protocol and no socket — inputs in; sequence numbers,
/// journaled times and seeds out.
///
/// A number is taken with ``next(tag:payload:nowMillis:)`` and becomes the sequencer's only when the journal
/// accepted the record (``commit()``): an input the journal refused leaves no gap.
struct Sequencer {
    /// The number the next input gets.
    private(set) var nextSequence: UInt64
    /// The journaled time of the last input (inputs' times never go backwards, even if the clock does).
    private(set) var lastTime: Int64
    /// Seeds for inputs: a fast generator seeded once (a getrandom call per request showed up in profiles). The
    /// seeds only need to differ, and they are journaled.
    private var seeds: SplitMix64

    /// A sequencer that continues after `lastSequence` (the journal's last record).
    init(after lastSequence: UInt64, seed: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        nextSequence = lastSequence + 1
        lastTime = 0
        seeds = SplitMix64(seed: seed)
    }

    /// The last sequence number assigned.
    var lastSequence: UInt64 { nextSequence - 1 }

    /// The next input: its sequence number (not yet taken), the journaled time and seed.
    mutating func next(tag: UInt8, payload: [UInt8], nowMillis: Int64) -> ApplyRequest {
        lastTime = max(lastTime, nowMillis)
        return ApplyRequest(sequence: nextSequence, time: lastTime, seed: seeds.next(), tag: tag, payload: payload)
    }

    /// Takes an input another supervisor sequenced (a standby following the journal): the next number follows it.
    mutating func adopt(_ request: ApplyRequest) {
        nextSequence = request.sequence + 1
        lastTime = max(lastTime, request.time)
    }

    /// Takes the number handed out by the last ``next(tag:payload:nowMillis:)``: its record is in the journal.
    mutating func commit() {
        nextSequence += 1
    }
}

/// What one instance answered to one input: its reply, or that the reply comes later, and the replies to earlier
/// inputs that this one produced.
struct InstanceReply {
    /// The reply bytes (empty when `pending`).
    var response: [UInt8]
    /// The reply comes later, from a later input (a blocked command).
    var pending = false
    /// Replies to earlier, pending inputs.
    var deferred: [DeferredReply] = []

    init(response: [UInt8], pending: Bool = false, deferred: [DeferredReply] = []) {
        self.response = response
        self.pending = pending
        self.deferred = deferred
    }

    init(_ result: ApplyResult) {
        self.init(response: result.response, pending: result.pending, deferred: result.deferredReplies)
    }
}

/// The in-memory window of recent inputs, by sequence number: what is fed to instances without reading the
/// journal, and where each request's reply waits to be released.
struct InputLog {
    /// One input and what is known of its reply.
    struct Entry {
        var request: ApplyRequest
        var sink: ReplySink?
        /// Told the sequence number when the primary holds the reply back (the client may go away meanwhile).
        var onPending: PendingSink?
        /// The primary's reply (empty when `pending`).
        var response: [UInt8]?
        /// The primary holds the reply back: a later input's deferred reply answers it.
        var pending = false
        /// The primary's replies to earlier, pending inputs, delivered when this entry is released.
        var deferred: [DeferredReply] = []
        var standbyReply: InstanceReply?
        var early: [(UInt32, InstanceReply)] = []
        var released = false
        var enqueuedAt: NIODeadline
        /// The command class, named once (for comparisons and metrics).
        var command: String?

        /// Nothing is left to hand out: released, or an input nobody waits for (a tick) that was applied and
        /// carries no deferred replies (those leave only with its release, once it is durable).
        var isSettled: Bool { released || (sink == nil && response != nil && deferred.isEmpty) }

        init(request: ApplyRequest, sink: ReplySink?, onPending: PendingSink? = nil, enqueuedAt: NIODeadline) {
            self.request = request
            self.sink = sink
            self.onPending = onPending
            self.enqueuedAt = enqueuedAt
        }
    }

    /// A position in the window: an offset from its first entry.
    struct Index: Equatable {
        fileprivate var offset: Int
    }

    /// A ring of entries, its capacity a power of two. Entries are read and changed in place (`_read`/`_modify`
    /// into the array), never copied out and back: an entry holds a dozen references, and a copy per field access
    /// was a fifth of the supervisor's time under load.
    private var storage = ContiguousArray<Entry?>(repeating: nil, count: 1024)
    private var head = 0
    /// The number of entries in the window.
    private(set) var count = 0
    /// The sequence number of the first entry.
    private(set) var base: UInt64

    /// An empty window whose first entry will be `first`.
    init(first: UInt64) { base = first }

    /// The entries the storage can hold before it grows.
    var capacity: Int { storage.count }

    @inline(__always)
    private func physical(_ offset: Int) -> Int { (head &+ offset) & (storage.count &- 1) }

    var first: Entry? { count == 0 ? nil : storage[head] }
    var last: Entry? { count == 0 ? nil : storage[physical(count - 1)] }
    var startIndex: Index { Index(offset: 0) }
    var endIndex: Index { Index(offset: count) }
    func index(after i: Index) -> Index { Index(offset: i.offset + 1) }

    subscript(_ i: Index) -> Entry {
        _read { yield storage[physical(i.offset)]! }
        _modify { yield &storage[physical(i.offset)]! }
    }

    /// Where the entry of `sequence` is, if it is still in the window.
    @inline(__always)
    func index(of sequence: UInt64) -> Index? {
        guard sequence >= base, sequence < base + UInt64(count) else { return nil }
        return Index(offset: Int(sequence - base))
    }

    /// Appends the next input (its sequence number must follow the last entry's).
    mutating func append(_ entry: Entry) {
        precondition(entry.request.sequence == base + UInt64(count), "inputs enter the log in sequence order")
        if count == storage.count { resize(to: storage.count * 2) }
        storage[physical(count)] = entry
        count += 1
    }

    /// Drops entries from the front while `mayDrop` says so.
    mutating func trim(while mayDrop: (Entry) -> Bool) {
        var dropped = false
        while count > 0, mayDrop(storage[head]!) {
            storage[head] = nil
            head = (head &+ 1) & (storage.count &- 1)
            count -= 1
            base += 1
            dropped = true
        }
        // A burst (a lagging standby) grows the window's storage to its peak; once the window has drained to a
        // small fraction of that, move it to storage its size, so the peak is not kept for the process's life.
        if dropped && storage.count > Self.shrinkAboveCapacity && count < storage.count / 16 {
            var capacity = 1024
            while capacity < count * 2 { capacity *= 2 }
            resize(to: capacity)
        }
    }

    private mutating func resize(to capacity: Int) {
        var resized = ContiguousArray<Entry?>(repeating: nil, count: capacity)
        for k in 0..<count { resized[k] = storage[physical(k)].take() }
        storage = resized
        head = 0
    }

    /// Storage above this many entries is given back when the window drains (see ``trim(while:)``).
    static let shrinkAboveCapacity = 16_384
}
