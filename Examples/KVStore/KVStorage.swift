import UnderstudyKit
import UnderstudyWire

/// "No expiry" in ``KVStorage`` expiry values.
public let kvNoExpiry: Int64 = -1

/// The storage the commands are written against: key → (value, absolute expiry in ms).
///
/// Both schema versions implement it, so every command is written once. Expiry is not checked
/// here; the command layer checks it lazily (``KVStorage/lookup(_:_:)``).
public protocol KVStorage: TrackedState {
    /// The value and expiry of a key (records the key as touched). Expiry is ``kvNoExpiry`` when none.
    mutating func read(_ key: [UInt8]) -> (value: KVValue, expireAt: Int64)?
    /// The expiry of a key without recording (``kvNoExpiry`` when none or absent).
    func peekExpiry(_ key: [UInt8]) -> Int64
    /// Stores a value with an expiry (replacing both).
    mutating func write(_ key: [UInt8], _ value: KVValue, expireAt: Int64, now: Int64)
    /// Changes the expiry of an existing key.
    mutating func setExpiry(_ key: [UInt8], _ expireAt: Int64)
    /// Mutates a value in place, keeping its expiry; setting nil deletes the key.
    mutating func modify<R>(_ key: [UInt8], now: Int64, _ body: (inout KVValue?) -> R) -> R
    /// Deletes a key; true when it existed.
    @discardableResult mutating func delete(_ key: [UInt8]) -> Bool
    /// The number of keys (including expired ones not yet removed).
    var keyCount: Int { get }
    /// Visits every key with its value and expiry, in no particular order.
    func forEachKey(_ body: ([UInt8], KVValue, Int64) -> Void)
    /// One step of a cursor over the keys (expired ones included), in the keyspace's stable position order:
    /// at least `count` keys from `cursor` when that many remain, and the cursor to continue from (0 at the end).
    /// O(log n + count).
    func scanKeys(from cursor: UInt64, count: Int) -> (keys: [[UInt8]], next: UInt64)
    /// The key at a rank in the same order (not recorded); `rank < keyCount`. O(log n).
    func key(atRank rank: Int) -> [UInt8]
    /// The key, value and expiry at a rank in the same order (not recorded); `rank < keyCount`. O(log n).
    func entry(atRank rank: Int) -> (key: [UInt8], value: KVValue, expireAt: Int64)
    /// The memory a key costs beside its value's own bytes, on average (the map's slot and structure, measured
    /// with 1 M small keys; see BENCHMARKS.md), for INFO's estimate.
    static var estimatedBytesPerKey: Int { get }
    /// Visits keys that carry an expiry, in no particular order.
    func forEachVolatileKey(_ body: ([UInt8], Int64) -> Void)
    /// Removes everything.
    mutating func removeAllKeys()
    /// Records an access for idle-time and frequency tracking (no-op where not tracked).
    mutating func noteAccess(_ key: [UInt8], context: inout RequestContext)
    /// Idle milliseconds and LFU counter of a key, where tracked.
    func accessInfo(_ key: [UInt8], now: Int64) -> (idleMillis: Int64, frequency: Int)?
    /// CONFIG SET values that differ from their defaults (map "config": parameter name → value).
    var config: TrackedMap<[UInt8]> { get set }
    /// WATCH state (maps "watch.clients" and "watch.keys"); the write methods above keep it informed.
    var watches: KVWatches { get set }
    /// Requests blocked in BLPOP and the other blocking commands (maps "blocked", "blockedkeys", "blockedmeta");
    /// the write methods above tell it when a key is created.
    var blocking: KVBlocking { get set }
}

/// Version 1's state (schema 1): values in map "data", expiries (absolute ms) in map "expires".
public struct KVStateV1: KVStorage {
    /// The values.
    public var data = TrackedMap<KVValue>(name: "data")
    /// Absolute expiry times in milliseconds.
    public var expires = TrackedMap<Int64>(name: "expires")
    /// CONFIG SET values that differ from their defaults.
    public var config = TrackedMap<[UInt8]>(name: "config")
    /// WATCH state.
    public var watches = KVWatches()
    /// Blocked requests.
    public var blocking = KVBlocking()

    /// Creates an empty state.
    public init() {}

    public func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(data)
        v.visit(expires)
        v.visit(config)
        v.visit(watches.clients)
        v.visit(watches.keys)
        blocking.visitMaps(&v)
    }

    public mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&data)
        v.visit(&expires)
        v.visit(&config)
        v.visit(&watches.clients)
        v.visit(&watches.keys)
        blocking.visitMaps(mutating: &v)
    }

    public mutating func read(_ key: [UInt8]) -> (value: KVValue, expireAt: Int64)? {
        guard let v = data.get(key) else { return nil }
        return (v, expires.peek(key) ?? kvNoExpiry)
    }

    public func peekExpiry(_ key: [UInt8]) -> Int64 { expires.peek(key) ?? kvNoExpiry }

    public mutating func write(_ key: [UInt8], _ value: KVValue, expireAt: Int64, now: Int64) {
        let old = data.set(key, value)
        setExpiry(key, expireAt)
        watches.touch(key, exists: true)
        if old == nil { blocking.keyCreated(key) }
    }

    public mutating func setExpiry(_ key: [UInt8], _ expireAt: Int64) {
        if expireAt == kvNoExpiry {
            if expires.peek(key) != nil {
                expires.remove(key)
                watches.touch(key, exists: true)
            }
        } else if expires.peek(key) != expireAt {
            expires.set(key, expireAt)
            watches.touch(key, exists: true)
        }
    }

    public mutating func modify<R>(_ key: [UInt8], now: Int64, _ body: (inout KVValue?) -> R) -> R {
        // Not TrackedMap.update: it keeps the old entry alive while the body runs, so a collection
        // would be copied on every change. Swapping in a placeholder leaves `value` uniquely referenced.
        var value = data.get(key)
        let existed = value != nil
        // A watched key counts as changed when its value does (digests are O(1) for collections).
        let before = watches.isWatched(key) ? value?.stableDigest() : nil
        if existed { data.set(key, .string([])) }
        let r = body(&value)
        if let value {
            data.set(key, value)
            if !existed { blocking.keyCreated(key) }
        } else if existed {
            data.remove(key)
            if expires.peek(key) != nil { expires.remove(key) }
        }
        if watches.isWatched(key), value != nil || existed, value?.stableDigest() != before {
            watches.touch(key, exists: value != nil)
        }
        return r
    }

    @discardableResult public mutating func delete(_ key: [UInt8]) -> Bool {
        guard data.peek(key) != nil else { return false }
        data.remove(key)
        if expires.peek(key) != nil { expires.remove(key) }
        watches.touch(key, exists: false)
        return true
    }

    public var keyCount: Int { data.count }

    public func scanKeys(from cursor: UInt64, count: Int) -> (keys: [[UInt8]], next: UInt64) {
        data.scan(from: cursor, count: count)
    }

    public func key(atRank rank: Int) -> [UInt8] { data.entry(atRank: rank).key }

    public func entry(atRank rank: Int) -> (key: [UInt8], value: KVValue, expireAt: Int64) {
        let (k, v) = data.entry(atRank: rank)
        return (k, v, expires.peek(k) ?? kvNoExpiry)
    }

    public static var estimatedBytesPerKey: Int { 84 }

    public func forEachKey(_ body: ([UInt8], KVValue, Int64) -> Void) {
        data.forEach { k, v in body(k, v, expires.peek(k) ?? kvNoExpiry) }
    }

    public func forEachVolatileKey(_ body: ([UInt8], Int64) -> Void) {
        expires.forEach { k, t in body(k, t) }
    }

    public mutating func removeAllKeys() {
        watches.flush { data.peek($0) != nil }
        data.removeAll()
        expires.removeAll()
    }

    public mutating func noteAccess(_ key: [UInt8], context: inout RequestContext) {}

    public func accessInfo(_ key: [UInt8], now: Int64) -> (idleMillis: Int64, frequency: Int)? { nil }
}

/// Version 2's per-key record: value, expiry and access metadata.
public struct KVEntry: Sendable, StateValue {
    /// The value.
    public var value: KVValue
    /// Absolute expiry in ms, or ``kvNoExpiry``.
    public var expireAt: Int64
    /// The last access time (low 56 bits, two's complement) and the frequency counter (high 8 bits) in one word,
    /// so an entry is 24 bytes rather than 32: a million keys' slots are 8 MB smaller.
    var accessWord: UInt64

    /// Journaled time of the last access in ms (0: not accessed since migration). Kept to 56 bits (±1 million
    /// years around 1970), far beyond any journaled time.
    public var lastAccess: Int64 {
        get { Int64(bitPattern: accessWord << 8) >> 8 }
        set { accessWord = (accessWord & Self.frequencyMask) | (UInt64(bitPattern: newValue) & ~Self.frequencyMask) }
    }

    /// Logarithmic access-frequency counter (Redis LFU style, 0–255).
    public var frequency: UInt8 {
        get { UInt8(truncatingIfNeeded: accessWord >> 56) }
        set { accessWord = (accessWord & ~Self.frequencyMask) | UInt64(newValue) << 56 }
    }

    static let frequencyMask: UInt64 = 0xFF00_0000_0000_0000

    /// Creates an entry.
    public init(value: KVValue, expireAt: Int64, lastAccess: Int64, frequency: UInt8) {
        self.value = value
        self.expireAt = expireAt
        self.accessWord = 0
        self.lastAccess = lastAccess
        self.frequency = frequency
    }

    public func encode(to w: inout ByteWriter) {
        value.encode(to: &w)
        w.write(expireAt)
        w.write(lastAccess)
        w.write(frequency)
    }

    public init(decoding r: inout ByteReader) throws {
        value = try KVValue(decoding: &r)
        expireAt = try r.readInt64()
        accessWord = 0
        let last = try r.readInt64()
        guard last >= -(1 << 55) && last < (1 << 55) else {
            throw DecodingError("last access time \(last) is out of range")
        }
        lastAccess = last
        frequency = try r.readByte()
    }

    public func stableDigest() -> UInt64 {
        var h = StableHasher(seed: 0x4B56_454E_5452_59)
        h.combine(value.stableDigest())
        h.combine(UInt64(bitPattern: expireAt))
        h.combine(UInt64(bitPattern: lastAccess))
        h.combine(UInt64(frequency))
        return h.finalize()
    }
}

/// Version 2's state (schema 2): one ``KVEntry`` per key in map "entries".
public struct KVStateV2: KVStorage {
    /// Initial LFU counter of a new key (Redis's LFU_INIT_VAL).
    public static let initialFrequency: UInt8 = 5

    /// The entries.
    public var entries = TrackedMap<KVEntry>(name: "entries")
    /// The keys that have an expiry (key → absolute ms), so active expiry visits only those instead of
    /// every entry on every tick. Part of the state (snapshotted, digested, patched) so it can never
    /// drift from `entries` in a replica.
    public var volatile = TrackedMap<Int64>(name: "volatile")
    /// CONFIG SET values that differ from their defaults (the same map, name and values as version 1's).
    public var config = TrackedMap<[UInt8]>(name: "config")
    /// WATCH state (the same maps, names and values as version 1's).
    public var watches = KVWatches()
    /// Blocked requests (the same maps, names and values as version 1's).
    public var blocking = KVBlocking()

    /// Creates an empty state.
    public init() {}

    public func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(entries)
        v.visit(volatile)
        v.visit(config)
        v.visit(watches.clients)
        v.visit(watches.keys)
        blocking.visitMaps(&v)
    }

    public mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&entries)
        v.visit(&volatile)
        v.visit(&config)
        v.visit(&watches.clients)
        v.visit(&watches.keys)
        blocking.visitMaps(mutating: &v)
    }

    /// Keeps the volatile index in step with a key's expiry.
    mutating func indexExpiry(_ key: [UInt8], _ expireAt: Int64?) {
        if let expireAt, expireAt != kvNoExpiry {
            if volatile.peek(key) != expireAt { volatile.set(key, expireAt) }
        } else if volatile.peek(key) != nil {
            volatile.remove(key)
        }
    }

    public mutating func read(_ key: [UInt8]) -> (value: KVValue, expireAt: Int64)? {
        guard let e = entries.get(key) else { return nil }
        return (e.value, e.expireAt)
    }

    public func peekExpiry(_ key: [UInt8]) -> Int64 { entries.peek(key)?.expireAt ?? kvNoExpiry }

    public mutating func write(_ key: [UInt8], _ value: KVValue, expireAt: Int64, now: Int64) {
        let created = entries.update(key) { (e: inout KVEntry?) -> Bool in
            if e == nil {
                e = KVEntry(value: value, expireAt: expireAt, lastAccess: now, frequency: Self.initialFrequency)
                return true
            }
            e!.value = value
            e!.expireAt = expireAt
            e!.lastAccess = now
            return false
        }
        indexExpiry(key, expireAt)
        watches.touch(key, exists: true)
        if created { blocking.keyCreated(key) }
    }

    public mutating func setExpiry(_ key: [UInt8], _ expireAt: Int64) {
        guard let e = entries.peek(key), e.expireAt != expireAt else { return }
        entries.update(key) { $0?.expireAt = expireAt }
        indexExpiry(key, expireAt)
        watches.touch(key, exists: true)
    }

    public mutating func modify<R>(_ key: [UInt8], now: Int64, _ body: (inout KVValue?) -> R) -> R {
        // See KVStateV1.modify: a placeholder entry keeps the value uniquely referenced while `body` runs.
        var entry = entries.get(key)
        var value = entry?.value
        // A watched key counts as changed when its value does (digests are O(1) for collections).
        let before = watches.isWatched(key) ? value?.stableDigest() : nil
        if entry != nil {
            entry!.value = .string([])
            entries.set(key, entry!)
        }
        let result = body(&value)
        if let value {
            if entry == nil {
                entries.set(key, KVEntry(value: value, expireAt: kvNoExpiry, lastAccess: now, frequency: Self.initialFrequency))
                blocking.keyCreated(key)
            } else {
                entry!.value = value
                entries.set(key, entry!)
            }
        } else if entry != nil {
            entries.remove(key)
        }
        if entries.peek(key) == nil { indexExpiry(key, nil) }
        if watches.isWatched(key), value != nil || entry != nil, value?.stableDigest() != before {
            watches.touch(key, exists: value != nil)
        }
        return result
    }

    @discardableResult public mutating func delete(_ key: [UInt8]) -> Bool {
        guard entries.peek(key) != nil else { return false }
        entries.remove(key)
        indexExpiry(key, nil)
        watches.touch(key, exists: false)
        return true
    }

    public var keyCount: Int { entries.count }

    public func scanKeys(from cursor: UInt64, count: Int) -> (keys: [[UInt8]], next: UInt64) {
        entries.scan(from: cursor, count: count)
    }

    public func key(atRank rank: Int) -> [UInt8] { entries.entry(atRank: rank).key }

    public func entry(atRank rank: Int) -> (key: [UInt8], value: KVValue, expireAt: Int64) {
        let (k, e) = entries.entry(atRank: rank)
        return (k, e.value, e.expireAt)
    }

    public static var estimatedBytesPerKey: Int { 120 }

    public func forEachKey(_ body: ([UInt8], KVValue, Int64) -> Void) {
        entries.forEach { k, e in body(k, e.value, e.expireAt) }
    }

    public func forEachVolatileKey(_ body: ([UInt8], Int64) -> Void) {
        volatile.forEach { k, t in body(k, t) }
    }

    public mutating func removeAllKeys() {
        watches.flush { entries.peek($0) != nil }
        entries.removeAll()
        volatile.removeAll()
    }

    public mutating func noteAccess(_ key: [UInt8], context: inout RequestContext) {
        guard let e = entries.peek(key) else { return }
        let now = context.timeMillis
        // Redis LFU: decay one step per elapsed minute, then a logarithmic increment.
        var counter = Int(e.frequency)
        if e.lastAccess > 0, now > e.lastAccess {
            counter = max(0, counter - Int((now - e.lastAccess) / 60_000))
        }
        if counter < 255 {
            let r = Double(context.random.next() >> 11) / Double(1 << 53)
            let base = Double(max(0, counter - Int(Self.initialFrequency)))
            if r < 1.0 / (base * 10 + 1) { counter += 1 }
        }
        let freq = UInt8(counter)
        guard freq != e.frequency || now != e.lastAccess else { return }
        entries.update(key) { (x: inout KVEntry?) in
            x?.frequency = freq
            x?.lastAccess = now
        }
    }

    public func accessInfo(_ key: [UInt8], now: Int64) -> (idleMillis: Int64, frequency: Int)? {
        guard let e = entries.peek(key) else { return nil }
        var counter = Int(e.frequency)
        if e.lastAccess > 0, now > e.lastAccess {
            counter = max(0, counter - Int((now - e.lastAccess) / 60_000))
        }
        return (e.lastAccess > 0 ? max(0, now - e.lastAccess) : 0, counter)
    }
}
