import UnderstudyWire

/// Visits the tracked maps of a state without changing them.
public protocol TrackedMapVisitor {
    /// Called once per map, in the state's declared order.
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>)
}

/// Visits the tracked maps of a state and may change them.
public protocol TrackedMapMutatingVisitor {
    /// Called once per map, in the state's declared order.
    mutating func visit<Value: StateValue>(_ map: inout TrackedMap<Value>)
}

/// A service's state: a struct whose persistent data lives in ``TrackedMap``s.
///
/// Conforming takes two small methods that list the maps, in a fixed order:
///
/// ```swift
/// struct CounterState: TrackedState {
///     var counters = TrackedMap<Int64>(name: "counters")
///     func visitMaps(_ v: inout some TrackedMapVisitor) { v.visit(counters) }
///     mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) { v.visit(&counters) }
/// }
/// ```
///
/// Everything the service needs to survive a restart or a swap must be in those maps: the runtime
/// snapshots, digests, forks and patches the state through them alone.
public protocol TrackedState: Sendable {
    /// Calls `visitor.visit` for each map.
    func visitMaps(_ visitor: inout some TrackedMapVisitor)
    /// Calls `visitor.visit` for each map, allowing changes.
    mutating func visitMaps(mutating visitor: inout some TrackedMapMutatingVisitor)
}

struct DigestCollector: TrackedMapVisitor {
    var buckets = [UInt64](repeating: 0, count: digestBucketCount)
    var entryCount: UInt64 = 0
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        let b = map.buckets
        for i in 0..<digestBucketCount { buckets[i] &+= b[i] }
        entryCount += UInt64(map.count)
    }
}

struct TouchedCollector: TrackedMapMutatingVisitor {
    var touched: [[UInt8]] = []
    var written: [[UInt8]] = []
    mutating func visit<Value: StateValue>(_ map: inout TrackedMap<Value>) {
        guard !map.touchedLog.isEmpty else { return }
        let (t, w) = map.drainTouched()
        touched.append(contentsOf: t)
        written.append(contentsOf: w)
    }
}

struct DrillDownCollector: TrackedMapVisitor {
    let wanted: Set<Int>
    var entries: [KeyHash] = []
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        map.storage.forEach { k, e in
            let key = k.bytes
            guard wanted.contains(map.bucket(of: key)) else { return }
            entries.append(KeyHash(key: MapKey(map: map.name, key: key), valueHash: e.hash))
        }
    }
}

struct FetchCollector: TrackedMapVisitor {
    let keys: [MapKey]
    var values: [MapKey: [UInt8]] = [:]
    mutating func visit<Value: StateValue>(_ map: TrackedMap<Value>) {
        for k in keys where k.map == map.name {
            if let v = map.peek(k.key) { values[k] = v.canonicalBytes }
        }
    }
}

struct PatchApplier: TrackedMapMutatingVisitor {
    let entries: [KeyValue]
    var applied = 0
    var failure: (any Error)?
    mutating func visit<Value: StateValue>(_ map: inout TrackedMap<Value>) {
        for e in entries where e.key.map == map.name {
            do {
                if let bytes = e.value {
                    map.set(e.key.key, try Value(canonicalBytes: bytes))
                } else {
                    map.set(e.key.key, nil)
                }
                applied += 1
            } catch {
                failure = error
            }
        }
        _ = map.drainTouched()
    }
}

extension TrackedState {
    /// The state's bucket digests (the sum, per bucket, over its maps) and entry count.
    public func digest(sequence: UInt64) -> DigestReport {
        var c = DigestCollector()
        visitMaps(&c)
        return DigestReport(sequence: sequence, buckets: c.buckets, entryCount: c.entryCount)
    }

    /// Takes the keys touched and written since the last call, across all maps.
    public mutating func drainTouchedKeys() -> (touched: [[UInt8]], written: [[UInt8]]) {
        var c = TouchedCollector()
        visitMaps(mutating: &c)
        return (c.touched, c.written)
    }

    /// The keys and entry hashes in the given buckets.
    public func entries(inBuckets buckets: [Int]) -> [KeyHash] {
        var c = DrillDownCollector(wanted: Set(buckets))
        visitMaps(&c)
        return c.entries
    }

    /// The canonical values of the given keys (nil when absent).
    public func fetch(_ keys: [MapKey]) -> [KeyValue] {
        var c = FetchCollector(keys: keys)
        visitMaps(&c)
        return keys.map { KeyValue(key: $0, value: c.values[$0]) }
    }

    /// Sets or deletes the given keys from canonical value bytes; returns how many were applied.
    public mutating func applyPatch(_ entries: [KeyValue]) throws -> Int {
        var p = PatchApplier(entries: entries)
        visitMaps(mutating: &p)
        if let failure = p.failure { throw failure }
        return p.applied
    }
}
