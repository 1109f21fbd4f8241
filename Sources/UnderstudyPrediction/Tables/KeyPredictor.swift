/// A next-key predictor over dense key ids, usable alone as a baseline.
///
/// Protocol: before each observation the predictor publishes a ranking (`predict`), then it
/// learns the observed key (`observe`). Implementations are online count tables.
public protocol KeyPredictor: AnyObject {
    /// The name used in reports ("last", "popularity", "markov1", "markov2", "recency").
    var name: String { get }
    /// Appends up to `count` predicted next keys, best first, to `ranking` (which it clears first).
    func predict(_ count: Int, into ranking: inout [Int])
    /// Learns that `key` was the next key.
    func observe(_ key: Int, isWrite: Bool)
}

extension KeyPredictor {
    /// The `count` most likely next keys, best first.
    public func predict(_ count: Int) -> [Int] {
        var ranking: [Int] = []
        predict(count, into: &ranking)
        return ranking
    }
}

/// Predicts that the next key repeats the last one.
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class LastValuePredictor: KeyPredictor {
    public let name = "last"
    /// The last key observed, if any.
    @exclusivity(unchecked) public private(set) var last: Int?

    /// Creates an empty predictor.
    public init() {}

    public func predict(_ count: Int, into ranking: inout [Int]) {
        ranking.removeAll(keepingCapacity: true)
        if let last, count > 0 { ranking.append(last) }
    }

    public func observe(_ key: Int, isWrite: Bool) { last = key }
}

/// Ranks keys by most recent use (distinct keys, most recent first).
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class RecencyPredictor: KeyPredictor {
    public let name = "recency"
    /// Most recent distinct keys, most recent first (at most `capacity`).
    @exclusivity(unchecked) public private(set) var recent: [Int] = []
    /// How many distinct keys are remembered.
    public let capacity: Int

    /// Creates an empty predictor remembering `capacity` keys.
    public init(capacity: Int = 32) {
        self.capacity = capacity
        recent.reserveCapacity(capacity + 1)
    }

    public func predict(_ count: Int, into ranking: inout [Int]) {
        ranking.removeAll(keepingCapacity: true)
        for key in recent.prefix(count) { ranking.append(key) }
    }

    public func observe(_ key: Int, isWrite: Bool) {
        if let index = recent.firstIndex(of: key) {
            var i = index
            while i > 0 { recent[i] = recent[i - 1]; i -= 1 }
            recent[0] = key
        } else {
            recent.insert(key, at: 0)
            if recent.count > capacity { recent.removeLast() }
        }
    }

    /// The rank of `key` in the recency list, if present.
    public func rank(of key: Int) -> Int? { recent.firstIndex(of: key) }
}

/// Ranks keys by exponentially decayed frequency (half-life in observations).
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class PopularityPredictor: KeyPredictor {
    public let name = "popularity"
    @exclusivity(unchecked) private var scores: [Double] = []
    @exclusivity(unchecked) private var increment = 1.0
    private let growth: Double
    /// The best keys, best first (at most `capacity`).
    @exclusivity(unchecked) public private(set) var top: [Int] = []
    private let capacity: Int
    /// The sum of all decayed scores (in the same scale as `score(of:)`).
    @exclusivity(unchecked) public private(set) var total = 0.0

    /// Creates an empty predictor.
    /// - Parameters:
    ///   - halfLife: observations after which a count weighs half.
    ///   - capacity: how many top keys are tracked.
    public init(halfLife: Double = 5000, capacity: Int = 32) {
        growth = pow2(1 / halfLife)
        self.capacity = capacity
    }

    public func predict(_ count: Int, into ranking: inout [Int]) {
        ranking.removeAll(keepingCapacity: true)
        for key in top.prefix(count) { ranking.append(key) }
    }

    /// The share of decayed weight that `key` holds (0…1).
    public func share(of key: Int) -> Double {
        key < scores.count && total > 0 ? scores[key] / total : 0
    }

    public func observe(_ key: Int, isWrite: Bool) {
        if key >= scores.count { scores.append(contentsOf: repeatElement(0, count: key + 1 - scores.count)) }
        increment *= growth
        scores[key] += increment
        total += increment
        if increment > 1e100 {
            for i in scores.indices { scores[i] /= increment }
            total /= increment
            increment = 1
        }
        let score = scores[key]
        var position: Int
        if let index = top.firstIndex(of: key) {
            position = index
        } else if top.count < capacity {
            top.append(key)
            position = top.count - 1
        } else if let lastKey = top.last, scores[lastKey] < score {
            position = top.count - 1
            top[position] = key
        } else {
            return
        }
        while position > 0 && scores[top[position - 1]] < score {
            top.swapAt(position, position - 1)
            position -= 1
        }
    }
}

@inline(__always) func pow2(_ x: Double) -> Double { exp2Double(x) }

#if canImport(Glibc)
import Glibc
@inline(__always) func exp2Double(_ x: Double) -> Double { Glibc.exp2(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) func exp2Double(_ x: Double) -> Double { Darwin.exp2(x) }
#endif
