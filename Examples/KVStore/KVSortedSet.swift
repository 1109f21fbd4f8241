import UnderstudyKit
import UnderstudyWire

/// A sorted-set value: member → score, kept in (score, member) order, with an order-independent digest kept up to
/// date.
///
/// Two persistent ``OrderedTree``s: the (score, member) order, and the member → score map keyed by ``TrackedKey``
/// (a stable position, then the bytes). Changes, rank lookups, range bounds and the element at a rank are
/// O(log n); a range of k elements is O(log n + k) to read; ZSCAN resumes at a position and ZRANDMEMBER picks a
/// random rank of the member map.
public struct KVSortedSet: Sendable {
    /// One element in order.
    public struct Element: Sendable, Equatable {
        /// The score (never NaN; never -0, which is stored as 0 as Redis's compact encoding does).
        public var score: Double
        /// The member.
        public var member: [UInt8]
    }

    /// A place in Redis's element order: by score, then by member bytes (memcmp, then length).
    public struct OrderKey: Comparable, Sendable {
        /// The score (never NaN).
        public var score: Double
        /// The member (a key with its true position, so equality is equality of bytes).
        public var member: TrackedKey

        /// Redis's element order.
        @inlinable public static func < (a: OrderKey, b: OrderKey) -> Bool {
            if a.score != b.score { return a.score < b.score }
            return bytesLess(a.member, b.member)
        }

        /// Same score and same member.
        @inlinable public static func == (a: OrderKey, b: OrderKey) -> Bool { a.score == b.score && a.member == b.member }
    }

    /// The member → score map, in scan order (stable position, then bytes).
    public private(set) var scores = OrderedTree<TrackedKey, Double>()
    /// The elements in ascending (score, member) order.
    public private(set) var order = OrderedTree<OrderKey, Void>()
    var sum: UInt64 = 0
    /// Heap bytes of long members (exact; for ``byteEstimate``).
    var heapBytes = 0
    /// No member is longer than this: a high-water mark (removals leave it), for bounds that save a pass.
    var longestMember = 0

    /// Creates an empty sorted set.
    public init() {}

    /// The number of members.
    public var count: Int { scores.count }

    /// True when empty.
    public var isEmpty: Bool { scores.isEmpty }

    /// The score of a member.
    public func score(_ member: [UInt8]) -> Double? { scores[TrackedKey(member)] }

    /// The element at a rank (0 = lowest).
    public subscript(rank: Int) -> Element {
        let k = order.entry(atRank: rank).key
        return Element(score: k.score, member: k.member.bytes)
    }

    /// The elements at a range of ranks, in ascending order (O(log n + k)).
    public func elements(_ ranks: Range<Int>) -> [Element] {
        var out: [Element] = []
        out.reserveCapacity(ranks.count)
        guard !ranks.isEmpty else { return out }
        for (k, _) in order.entries(fromRank: ranks.lowerBound) {
            out.append(Element(score: k.score, member: k.member.bytes))
            if out.count == ranks.count { break }
        }
        return out
    }

    /// All elements in ascending (score, member) order.
    public var elements: [Element] { elements(0..<count) }

    /// The element at a rank of the scan order (stable position, then bytes), O(log n): a uniform pick for
    /// ZRANDMEMBER. Precondition: `0 <= rank < count`.
    public func element(atScanRank rank: Int) -> Element {
        let e = scores.entry(atRank: rank)
        return Element(score: e.value, member: e.key.bytes)
    }

    /// Redis's element order: by score, then by member bytes.
    @inlinable static func less(_ s1: Double, _ m1: [UInt8], _ s2: Double, _ m2: [UInt8]) -> Bool {
        s1 < s2 || (s1 == s2 && bytesLess(m1, m2))
    }

    /// The rank of a member, or nil.
    public func rank(_ member: [UInt8]) -> Int? {
        let key = TrackedKey(member)
        guard let s = scores[key] else { return nil }
        return order.rank(of: OrderKey(score: s, member: key))
    }

    /// The number of elements whose score is below `score` (`inclusive`: not above it). -0 counts as 0.
    public func rank(ofScore score: Double, inclusive: Bool) -> Int {
        precondition(!score.isNaN, "a score bound is never NaN")
        if inclusive {
            if score == .infinity { return count }
            // Scores are doubles: `x <= s` exactly when `x < s.nextUp`.
            return order.rank(of: OrderKey(score: score.nextUp, member: Self.emptyMember))
        }
        return order.rank(of: OrderKey(score: score, member: Self.emptyMember))
    }

    /// The number of elements before (score, member) in Redis's order, whether or not it is present.
    public func rank(ofScore score: Double, member: [UInt8]) -> Int {
        order.rank(of: OrderKey(score: score, member: TrackedKey(member)))
    }

    /// The smallest member: bounds at a score.
    @usableFromInline static let emptyMember = TrackedKey([])

    static func pairHash(_ member: TrackedKey, _ score: Double) -> UInt64 {
        var h = StableHasher(seed: 0x5A53_4554)
        member.withBytes { h.combine(buffer: $0) }
        h.combine(UInt64(member.byteCount))
        h.combine(score.bitPattern)
        return h.finalize()
    }

    /// Sets a member's score (NaN is a programmer error; -0 is stored as 0). Returns true when the member is new.
    @discardableResult public mutating func set(_ member: [UInt8], _ score: Double) -> Bool {
        set(TrackedKey(member), score)
    }

    /// Sets the score of a tracked key (as the byte-string form does); true when the member is new.
    @discardableResult public mutating func set(_ key: TrackedKey, _ score: Double) -> Bool {
        precondition(!score.isNaN, "a sorted-set score is never NaN")
        let score = score == 0 ? 0 : score
        let old = scores.updateValue(score, forKey: key)
        if let old {
            if old == score { return false }
            order.removeValue(forKey: OrderKey(score: old, member: key))
            sum &-= Self.pairHash(key, old)
        } else {
            heapBytes += KVLayout.keyHeapBytes(key.byteCount)
            longestMember = Swift.max(longestMember, key.byteCount)
        }
        order.updateValue((), forKey: OrderKey(score: score, member: key))
        sum &+= Self.pairHash(key, score)
        return old == nil
    }

    /// Removes a member; returns its score when it existed.
    @discardableResult public mutating func remove(_ member: [UInt8]) -> Double? {
        let key = TrackedKey(member)
        guard let old = scores.removeValue(forKey: key) else { return nil }
        order.removeValue(forKey: OrderKey(score: old, member: key))
        sum &-= Self.pairHash(key, old)
        heapBytes -= KVLayout.keyHeapBytes(key.byteCount)
        return old
    }

    /// Removes the elements in a range of ranks; returns them in ascending order (O(k log n)).
    @discardableResult public mutating func removeRanks(_ range: Range<Int>) -> [Element] {
        guard !range.isEmpty else { return [] }
        var keys: [OrderKey] = []
        keys.reserveCapacity(range.count)
        for (k, _) in order.entries(fromRank: range.lowerBound) {
            keys.append(k)
            if keys.count == range.count { break }
        }
        var out: [Element] = []
        out.reserveCapacity(keys.count)
        for k in keys {
            order.removeValue(forKey: k)
            scores.removeValue(forKey: k.member)
            sum &-= Self.pairHash(k.member, k.score)
            heapBytes -= KVLayout.keyHeapBytes(k.member.byteCount)
            out.append(Element(score: k.score, member: k.member.bytes))
        }
        return out
    }

    var byteEstimate: Int {
        96 + count * (KVLayout.entryBytes(TrackedKey.self, Double.self) + KVLayout.entryBytes(OrderKey.self, Void.self))
            + heapBytes
    }
}
