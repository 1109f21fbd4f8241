import UnderstudyKit
import UnderstudyWire

/// A sorted-set value: member → score, kept in (score, member) order, with an order-independent digest kept up
/// to date.
///
/// The order is a sorted array beside the member → score dictionary: rank and range lookups are binary searches
/// (O(log n)), an insert or removal moves the tail of the array (O(n) memory moves).
public struct KVSortedSet: Sendable {
    /// One element in order.
    public struct Element: Sendable, Equatable {
        /// The score (never NaN; never -0, which is stored as 0 as Redis's compact encoding does).
        public var score: Double
        /// The member.
        public var member: [UInt8]
    }

    /// The scores by member.
    public private(set) var scores: [[UInt8]: Double] = [:]
    /// The elements in ascending (score, member) order.
    public private(set) var elements: [Element] = []
    var sum: UInt64 = 0

    /// Creates an empty sorted set.
    public init() {}

    /// The number of members.
    public var count: Int { elements.count }

    /// True when empty.
    public var isEmpty: Bool { elements.isEmpty }

    /// The score of a member.
    public func score(_ member: [UInt8]) -> Double? { scores[member] }

    /// The element at a rank (0 = lowest).
    public subscript(rank: Int) -> Element { elements[rank] }

    /// Redis's element order: by score, then by member bytes.
    @inlinable static func less(_ s1: Double, _ m1: [UInt8], _ s2: Double, _ m2: [UInt8]) -> Bool {
        s1 < s2 || (s1 == s2 && bytesLess(m1, m2))
    }

    /// The first rank whose element does not satisfy `before` (elements satisfying it must come first).
    public func partition(_ before: (Element) -> Bool) -> Int {
        var lo = 0, hi = elements.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if before(elements[mid]) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The rank of a member, or nil.
    public func rank(_ member: [UInt8]) -> Int? {
        guard let s = scores[member] else { return nil }
        return partition { Self.less($0.score, $0.member, s, member) }
    }

    static func pairHash(_ member: [UInt8], _ score: Double) -> UInt64 {
        var h = StableHasher(seed: 0x5A53_4554)
        member.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(member.count))
        h.combine(score.bitPattern)
        return h.finalize()
    }

    /// Sets a member's score (NaN is a programmer error; -0 is stored as 0). Returns true when the member is new.
    @discardableResult public mutating func set(_ member: [UInt8], _ score: Double) -> Bool {
        precondition(!score.isNaN, "a sorted-set score is never NaN")
        let score = score == 0 ? 0 : score
        let old = scores.updateValue(score, forKey: member)
        if let old {
            if old == score { return false }
            let at = partition { Self.less($0.score, $0.member, old, member) }
            elements.remove(at: at)
            sum &-= Self.pairHash(member, old)
        }
        let at = partition { Self.less($0.score, $0.member, score, member) }
        elements.insert(Element(score: score, member: member), at: at)
        sum &+= Self.pairHash(member, score)
        return old == nil
    }

    /// Removes a member; returns its score when it existed.
    @discardableResult public mutating func remove(_ member: [UInt8]) -> Double? {
        guard let old = scores.removeValue(forKey: member) else { return nil }
        let at = partition { Self.less($0.score, $0.member, old, member) }
        elements.remove(at: at)
        sum &-= Self.pairHash(member, old)
        return old
    }

    /// Removes the elements in a range of ranks.
    public mutating func removeRanks(_ range: Range<Int>) {
        for e in elements[range] {
            scores.removeValue(forKey: e.member)
            sum &-= Self.pairHash(e.member, e.score)
        }
        elements.removeSubrange(range)
    }

    var byteEstimate: Int {
        var n = 96
        for e in elements { n += 2 * (48 + e.member.count) + 16 }
        return n
    }
}
