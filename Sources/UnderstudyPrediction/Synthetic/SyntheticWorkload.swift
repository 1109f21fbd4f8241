/// One request of a synthetic workload.
public struct SyntheticEvent: Sendable, Hashable {
    /// Command name.
    public var command: String
    /// The key.
    public var key: String
    /// Whether the request writes.
    public var isWrite: Bool
    /// Milliseconds since the start.
    public var timeMillis: Int64
}

/// Deterministic synthetic request streams for tests and benchmarks.
public enum SyntheticWorkload: String, Sendable, CaseIterable, Codable {
    /// A fixed cycle of 50 keys (fully predictable).
    case cycle
    /// Repeated multi-key transactions: 200 templates of 3–6 keys chosen by a Zipf law; a longer
    /// pause before each transaction.
    case transactions
    /// Program-like nested loops: a header, a body repeated 2–4 times, a footer, over 40 routines.
    case loops
    /// Phase changes: every 4000 requests the stream switches between a cycle, transactions and a
    /// Zipf mix over a different key range.
    case phases
    /// I.i.d. uniform over 1000 keys (unpredictable).
    case uniform
    /// I.i.d. Zipf (s = 1) over 1000 keys (best possible top-1 is the top key's probability).
    case zipf

    /// Whether the stream has sequential structure beyond frequencies.
    public var isStructured: Bool { self != .uniform && self != .zipf }

    /// The probability of the most likely key for i.i.d. streams, nil otherwise.
    public var optimalTop1: Double? {
        switch self {
        case .uniform: return 1.0 / 1000
        case .zipf: return 1 / (1...1000).reduce(0.0) { $0 + 1 / Double($1) }
        default: return nil
        }
    }

    /// Generates `count` events from `seed`.
    public func generate(count: Int, seed: UInt64 = 1) -> [SyntheticEvent] {
        var rng = SplitMix64(seed: seed ^ UInt64(truncatingIfNeeded: rawValue.hashValueStable))
        var events: [SyntheticEvent] = []
        events.reserveCapacity(count)
        var time: Int64 = 0
        func emit(_ key: String, write: Bool = false, gap: Int64 = 1) {
            time += gap + Int64(rng.nextInt(2))
            events.append(SyntheticEvent(command: write ? "SET" : "GET", key: key, isWrite: write, timeMillis: time))
        }
        let zipf1000 = ZipfSampler(count: 1000, exponent: 1)
        switch self {
        case .cycle:
            var i = 0
            while events.count < count { emit("k\(i % 50)", write: i % 7 == 0); i += 1 }
        case .uniform:
            while events.count < count { emit("u\(rng.nextInt(1000))") }
        case .zipf:
            while events.count < count { emit("z\(zipf1000.sample(&rng))") }
        case .transactions:
            let templates = Self.templates(count: 200, rng: &rng)
            let chooser = ZipfSampler(count: templates.count, exponent: 1)
            while events.count < count { transaction(templates[chooser.sample(&rng)], emit: emit) }
        case .loops:
            let routines = Self.routines(count: 40, rng: &rng)
            let chooser = ZipfSampler(count: routines.count, exponent: 0.8)
            while events.count < count {
                let routine = routines[chooser.sample(&rng)]
                let repeats = 2 + rng.nextInt(3)
                run(routine, repeats: repeats, emit: emit)
            }
        case .phases:
            let templates = Self.templates(count: 100, rng: &rng)
            let chooser = ZipfSampler(count: templates.count, exponent: 1)
            let zipf200 = ZipfSampler(count: 200, exponent: 1.1)
            var phase = 0
            while events.count < count {
                let end = min(count, events.count + 4000)
                while events.count < end {
                    switch phase % 3 {
                    case 0: emit("p\(phase)c\((events.count) % 30)")
                    case 1: transaction(templates[chooser.sample(&rng)], emit: emit)
                    default: emit("p\(phase)z\(zipf200.sample(&rng))")
                    }
                }
                phase += 1
            }
        }
        if events.count > count { events.removeLast(events.count - count) }
        return events
    }

    private func transaction(_ keys: [String], emit: (String, Bool, Int64) -> Void) {
        for (i, key) in keys.enumerated() { emit(key, i == keys.count - 1, i == 0 ? 20 : 1) }
    }

    private func run(_ routine: Routine, repeats: Int, emit: (String, Bool, Int64) -> Void) {
        for (i, key) in routine.header.enumerated() { emit(key, false, i == 0 ? 10 : 1) }
        for _ in 0..<repeats { for key in routine.body { emit(key, false, 1) } }
        for key in routine.footer { emit(key, true, 1) }
    }

    private struct Routine { var header: [String]; var body: [String]; var footer: [String] }

    private static func templates(count: Int, rng: inout SplitMix64) -> [[String]] {
        (0..<count).map { t in (0..<(3 + rng.nextInt(4))).map { _ in "t\(rng.nextInt(600))" } + ["t\(t)x"] }
    }

    private static func routines(count: Int, rng: inout SplitMix64) -> [Routine] {
        (0..<count).map { r in
            Routine(
                header: ["r\(r)h", "cfg\(rng.nextInt(10))"],
                body: (0..<(2 + rng.nextInt(3))).map { _ in "v\(rng.nextInt(300))" },
                footer: ["r\(r)f"])
        }
    }
}

extension String {
    /// A hash that is stable across processes (FNV-1a), unlike `hashValue`.
    var hashValueStable: UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return h
    }
}

/// Samples ranks 0..<count with probability ∝ 1/(rank+1)^exponent.
public struct ZipfSampler: Sendable {
    private let cdf: [Double]

    /// Creates a sampler.
    public init(count: Int, exponent: Double) {
        var cdf: [Double] = []
        var total = 0.0
        for i in 1...max(1, count) {
            total += 1 / pow(Double(i), exponent)
            cdf.append(total)
        }
        self.cdf = cdf.map { $0 / total }
    }

    /// Draws one rank.
    public func sample(_ rng: inout SplitMix64) -> Int {
        let u = rng.nextUnit()
        var lo = 0, hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
