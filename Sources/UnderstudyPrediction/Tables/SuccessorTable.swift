/// Per-context successor counts: for each context slot, up to `width` successors kept sorted by
/// count (best first). When a slot's total passes `halvingTotal` its counts are halved, so the
/// table adapts to phase changes. New successors replace the weakest when the slot is full.
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
final class SuccessorTable {
    let width: Int
    let halvingTotal: Int32
    @exclusivity(unchecked) private(set) var keys: [Int32] = []
    @exclusivity(unchecked) private(set) var counts: [Int32] = []
    @exclusivity(unchecked) private(set) var totals: [Int32] = []
    @exclusivity(unchecked) private(set) var slots = 0

    init(width: Int = 8, halvingTotal: Int32 = 256) {
        self.width = width
        self.halvingTotal = halvingTotal
    }

    /// Adds a new, empty slot and returns its index.
    func addSlot() -> Int {
        keys.append(contentsOf: repeatElement(-1, count: width))
        counts.append(contentsOf: repeatElement(0, count: width))
        totals.append(0)
        slots += 1
        return slots - 1
    }

    /// Removes every slot (keeping the storage).
    func removeAll() {
        keys.removeAll(keepingCapacity: true)
        counts.removeAll(keepingCapacity: true)
        totals.removeAll(keepingCapacity: true)
        slots = 0
    }

    /// Counts `key` as a successor in `slot`.
    func add(_ key: Int, slot: Int) {
        let base = slot * width
        let k = Int32(truncatingIfNeeded: key)
        var position = -1
        for i in 0..<width {
            if keys[base + i] == k { position = i; break }
            if keys[base + i] == -1 { keys[base + i] = k; counts[base + i] = 0; position = i; break }
        }
        if position < 0 {  // full: replace the weakest (last) entry
            position = width - 1
            totals[slot] -= counts[base + position]
            keys[base + position] = k
            counts[base + position] = 0
        }
        counts[base + position] += 1
        totals[slot] += 1
        while position > 0 && counts[base + position - 1] < counts[base + position] {
            keys.swapAt(base + position, base + position - 1)
            counts.swapAt(base + position, base + position - 1)
            position -= 1
        }
        if totals[slot] >= halvingTotal {
            var total: Int32 = 0
            for i in 0..<width {
                counts[base + i] = (counts[base + i] + 1) / 2
                if keys[base + i] == -1 { counts[base + i] = 0 }
                total += counts[base + i]
            }
            totals[slot] = total
        }
    }

    /// The number of successors stored in `slot`.
    @inline(__always) func size(_ slot: Int) -> Int {
        let base = slot * width
        var n = 0
        while n < width && keys[base + n] != -1 { n += 1 }
        return n
    }

    @inline(__always) func key(_ slot: Int, _ i: Int) -> Int { Int(keys[slot * width + i]) }
    @inline(__always) func share(_ slot: Int, _ i: Int) -> Float {
        Float(counts[slot * width + i]) / Float(max(1, totals[slot]))
    }
}

/// Order-1 Markov predictor: ranks the successors seen after the current key; backs off to the
/// most recent keys to fill the ranking.
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class Markov1Predictor: KeyPredictor {
    public let name = "markov1"
    let table = SuccessorTable()
    @exclusivity(unchecked) private var slotOfKey: [Int32] = []
    @exclusivity(unchecked) private var current: Int?
    private let recency = RecencyPredictor(capacity: 8)

    /// Creates an empty predictor.
    public init() {}

    /// The successor slot for context key `key`, if any.
    func slot(for key: Int?) -> Int? {
        guard let key, key < slotOfKey.count, slotOfKey[key] >= 0 else { return nil }
        return Int(slotOfKey[key])
    }

    /// The slot for the current context (the last key).
    var currentSlot: Int? { slot(for: current) }

    public func predict(_ count: Int, into ranking: inout [Int]) {
        ranking.removeAll(keepingCapacity: true)
        if let slot = currentSlot {
            for i in 0..<min(count, table.size(slot)) { ranking.append(table.key(slot, i)) }
        }
        for key in recency.recent where ranking.count < count && !ranking.contains(key) { ranking.append(key) }
    }

    public func observe(_ key: Int, isWrite: Bool) {
        if let current {
            if current >= slotOfKey.count {
                slotOfKey.append(contentsOf: repeatElement(-1, count: current + 1 - slotOfKey.count))
            }
            if slotOfKey[current] < 0 { slotOfKey[current] = Int32(table.addSlot()) }
            table.add(key, slot: Int(slotOfKey[current]))
        }
        current = key
        recency.observe(key, isWrite: isWrite)
    }
}

/// Order-2 Markov predictor with back-off: successors of the last two keys, then of the last key
/// (order 1), then the five most recent keys.
///
/// Contexts (pairs of keys) can outnumber keys by far (a random stream over n keys meets up to n²),
/// so at most `maximumContexts` are kept: when one more would be added, the order-2 table starts
/// over (the order-1 table and the recency back-off are kept).
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class Markov2Predictor: KeyPredictor {
    public let name = "markov2"
    let table = SuccessorTable()
    let order1 = Markov1Predictor()
    @exclusivity(unchecked) private var slotOfPair: [UInt64: Int32] = [:]
    @exclusivity(unchecked) private var previous: Int?
    @exclusivity(unchecked) private var current: Int?
    let recency = RecencyPredictor(capacity: 5)
    /// The most order-2 contexts kept at once.
    public let maximumContexts: Int
    /// How many times the order-2 table started over because it held `maximumContexts` contexts.
    @exclusivity(unchecked) public private(set) var contextResets = 0

    /// Creates an empty predictor keeping at most `maximumContexts` order-2 contexts (at least 1).
    public init(maximumContexts: Int = .max) {
        self.maximumContexts = max(1, maximumContexts)
    }

    /// Order-2 contexts held now.
    public var contexts: Int { table.slots }

    @inline(__always) private func pairKey(_ a: Int, _ b: Int) -> UInt64 {
        UInt64(UInt32(truncatingIfNeeded: a)) << 32 | UInt64(UInt32(truncatingIfNeeded: b))
    }

    /// The order-2 slot for the current context, if seen.
    var currentSlot: Int? {
        guard let previous, let current, let slot = slotOfPair[pairKey(previous, current)] else { return nil }
        return Int(slot)
    }

    public func predict(_ count: Int, into ranking: inout [Int]) {
        ranking.removeAll(keepingCapacity: true)
        if let slot = currentSlot {
            for i in 0..<min(count, table.size(slot)) { ranking.append(table.key(slot, i)) }
        }
        if ranking.count < count, let slot = order1.currentSlot {
            for i in 0..<order1.table.size(slot) where ranking.count < count {
                let key = order1.table.key(slot, i)
                if !ranking.contains(key) { ranking.append(key) }
            }
        }
        for key in recency.recent where ranking.count < count && !ranking.contains(key) { ranking.append(key) }
    }

    public func observe(_ key: Int, isWrite: Bool) {
        if let previous, let current {
            let pair = pairKey(previous, current)
            let slot: Int
            if let existing = slotOfPair[pair] {
                slot = Int(existing)
            } else {
                if table.slots >= maximumContexts {
                    slotOfPair.removeAll(keepingCapacity: true)
                    table.removeAll()
                    contextResets += 1
                }
                slot = table.addSlot()
                slotOfPair[pair] = Int32(slot)
            }
            table.add(key, slot: slot)
        }
        order1.observe(key, isWrite: isWrite)
        recency.observe(key, isWrite: isWrite)
        previous = current
        current = key
    }
}
