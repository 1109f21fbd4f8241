import UnderstudyWire

/// The number of digest buckets every tracked state reports.
public let digestBucketCount = 4096

/// A keyed map with O(1) copy that records the keys each request touches and keeps an
/// incrementally maintained digest.
///
/// Storage is a persistent counted B+tree (``OrderedTree``), so copying a map — for a snapshot or a
/// validation fork — shares structure instead of copying entries, and the map is ordered and
/// sampleable: entries are kept in ``position(of:)`` order (a stable hash of the key), so a cursor
/// (``scan(from:count:)``) resumes in O(log n), a uniformly random entry (``entry(atRank:)``) costs
/// O(log n), and every process iterates the same entries in the same order. Keys of up to 15 bytes are
/// stored inline. Every write updates the bucket digest of its key: bucket `b` holds the wrapping sum
/// of `entryHash(key, value)` over the keys in `b`, so two processes with the same logical contents
/// report identical buckets, whatever order the writes came in.
public struct TrackedMap<Value: StateValue>: Sendable {
    /// A value with its entry hash, kept so that a write never rehashes the value it replaces (a value that
    /// grows — a list, an account's history — would otherwise be hashed twice per write).
    @usableFromInline struct Entry: Sendable {
        @usableFromInline var value: Value
        @usableFromInline var hash: UInt64
        @inlinable init(value: Value, hash: UInt64) {
            self.value = value
            self.hash = hash
        }
    }

    /// The map's name; part of every entry's hash and of snapshots.
    public let name: String
    @usableFromInline let nameSeed: UInt64
    @usableFromInline var storage: OrderedTree<TrackedKey, Entry>
    @usableFromInline var buckets: [UInt64]
    @usableFromInline var touchedLog: [[UInt8]] = []
    @usableFromInline var writtenLog: [[UInt8]] = []
    /// When false, reads and writes are not recorded (used while restoring).
    @usableFromInline var recording = true

    /// Creates an empty map.
    /// - Parameter name: a name unique within the state; it is part of the digest and of snapshots.
    public init(name: String) {
        self.name = name
        self.nameSeed = StableHasher.hash(Array(name.utf8))
        self.storage = OrderedTree()
        self.buckets = Array(repeating: 0, count: digestBucketCount)
    }

    /// The number of keys.
    @inlinable public var count: Int { storage.count }

    /// True when the map holds no keys.
    @inlinable public var isEmpty: Bool { storage.isEmpty }

    /// A key's position in every map's order: a stable 63-bit hash of its bytes, never 0 (so 0 can
    /// start and end a cursor). The same in every process, version and map.
    @inlinable public static func position(of key: [UInt8]) -> UInt64 { TrackedKey.position(of: key) }

    /// The digest bucket a key belongs to (depends on the map name and key only).
    @inlinable public func bucket(of key: [UInt8]) -> Int {
        Int(truncatingIfNeeded: StableHasher.hash(key, seed: nameSeed) % UInt64(digestBucketCount))
    }

    @inlinable func entryHash(key: [UInt8], value: Value) -> UInt64 {
        var h = StableHasher(seed: nameSeed ^ 0x5bd1_e995)
        key.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(key.count))
        h.combine(value.stableDigest())
        return h.finalize()
    }

    @inlinable mutating func noteTouched(_ key: [UInt8]) {
        if recording { touchedLog.append(key) }
    }

    @inlinable mutating func noteWritten(_ key: [UInt8]) {
        if recording {
            touchedLog.append(key)
            writtenLog.append(key)
        }
    }

    /// Reads a key and records it as touched.
    @inlinable public mutating func get(_ key: [UInt8]) -> Value? {
        noteTouched(key)
        return storage[TrackedKey(key)]?.value
    }

    /// Reads a key without recording it (for code outside request handling).
    @inlinable public func peek(_ key: [UInt8]) -> Value? {
        storage[TrackedKey(key)]?.value
    }

    /// True when the key exists (recorded as touched).
    @inlinable public mutating func contains(_ key: [UInt8]) -> Bool {
        noteTouched(key)
        return storage[TrackedKey(key)] != nil
    }

    /// Reads or writes a key; a write of nil removes it. Both record the key.
    @inlinable public subscript(key: [UInt8]) -> Value? {
        mutating get { get(key) }
        set { set(key, newValue) }
    }

    /// Sets (or with nil, removes) a key, updating the digest. Returns the old value.
    @inlinable @discardableResult
    public mutating func set(_ key: [UInt8], _ value: Value?) -> Value? {
        noteWritten(key)
        return store(key, TrackedKey(key), value)
    }

    /// Stores without recording; keeps the bucket digest exact.
    @inlinable @discardableResult
    mutating func store(_ key: [UInt8], _ tracked: TrackedKey, _ value: Value?) -> Value? {
        let b = bucket(of: key)
        let old: Entry?
        if let value {
            let h = entryHash(key: key, value: value)
            old = storage.updateValue(Entry(value: value, hash: h), forKey: tracked)
            buckets[b] &+= h
        } else {
            old = storage.removeValue(forKey: tracked)
        }
        if let old { buckets[b] &-= old.hash }
        return old?.value
    }

    /// Removes a key; returns the old value.
    @inlinable @discardableResult
    public mutating func remove(_ key: [UInt8]) -> Value? {
        set(key, nil)
    }

    /// Mutates a key's value in place (nil = absent; setting nil removes). Records the key as written
    /// when the value changed, else as touched.
    ///
    /// The value is moved out of the tree before `body` runs and no other reference to it is kept, so
    /// a large collection value is mutated without a copy.
    @inlinable @discardableResult
    public mutating func update<R>(_ key: [UInt8], _ body: (inout Value?) -> R) -> R {
        let tracked = TrackedKey(key)
        let old = storage.removeValue(forKey: tracked)
        let oldHash = old?.hash
        var value = old?.value
        let result = body(&value)
        finishUpdate(key, tracked, oldHash: oldHash, value: value)
        return result
    }

    /// Like ``update(_:_:)-(_,(inout Value?)->R)`` for a body that may throw: a throwing body leaves the
    /// entry as it was (the old value is kept aside for that, so collection values are copied once).
    @inlinable @discardableResult
    public mutating func update<R>(_ key: [UInt8], _ body: (inout Value?) throws -> R) throws -> R {
        let tracked = TrackedKey(key)
        let oldEntry = storage.removeValue(forKey: tracked)
        var value = oldEntry?.value
        let result: R
        do {
            result = try body(&value)
        } catch {
            if let oldEntry { storage.updateValue(oldEntry, forKey: tracked) }
            throw error
        }
        finishUpdate(key, tracked, oldHash: oldEntry?.hash, value: value)
        return result
    }

    @inlinable mutating func finishUpdate(_ key: [UInt8], _ tracked: TrackedKey, oldHash: UInt64?, value: Value?) {
        let b = bucket(of: key)
        if let oldHash { buckets[b] &-= oldHash }
        if let value {
            let h = entryHash(key: key, value: value)
            storage.updateValue(Entry(value: value, hash: h), forKey: tracked)
            buckets[b] &+= h
            if h != oldHash { noteWritten(key) } else { noteTouched(key) }
        } else if oldHash != nil {
            noteWritten(key)
        } else {
            noteTouched(key)
        }
    }

    /// Removes every key, recording each as written.
    public mutating func removeAll() {
        if recording {
            for (k, _) in storage.entries() {
                let bytes = k.bytes
                writtenLog.append(bytes)
                touchedLog.append(bytes)
            }
        }
        storage.removeAll()
        buckets = Array(repeating: 0, count: digestBucketCount)
    }

    /// The keys, in ``position(of:)`` order.
    public var keys: some Sequence<[UInt8]> { storage.entries().lazy.map { $0.key.bytes } }

    /// Calls `body` for every entry, in ``position(of:)`` order.
    @inlinable public func forEach(_ body: ([UInt8], Value) throws -> Void) rethrows {
        try storage.forEach { k, e in try body(k.bytes, e.value) }
    }

    /// The entry at a rank in ``position(of:)`` order (not recorded). Precondition: `0 <= rank < count`.
    ///
    /// A uniformly random entry is the entry at a random rank: O(log n).
    @inlinable public func entry(atRank rank: Int) -> (key: [UInt8], value: Value) {
        let (k, e) = storage.entry(atRank: rank)
        return (k.bytes, e.value)
    }

    /// The entries in ``position(of:)`` order whose position is at least `cursor` (not recorded),
    /// starting at the first such entry; O(log n) to start, then O(1) per entry.
    @inlinable public func entries(fromPosition cursor: UInt64) -> some Sequence<(key: [UInt8], value: Value)> {
        storage.entries(from: TrackedKey(position: cursor, bytes: []))
            .lazy.map { (key: $0.key.bytes, value: $0.value.value) }
    }

    /// One step of a cursor over the keys, with the guarantees of Redis's SCAN: a key present for the
    /// whole iteration is returned at least once; a cursor stays valid across any writes (and across
    /// processes, since the order is the same everywhere). Returns at least `count` keys with a position
    /// ≥ `cursor` when that many remain (more when several keys share the last position), and the
    /// cursor to continue from: 0 when the iteration is complete.
    public func scan(from cursor: UInt64, count: Int) -> (keys: [[UInt8]], next: UInt64) {
        var keys: [[UInt8]] = []
        var lastPosition: UInt64 = 0
        let wanted = Swift.max(1, count)
        for (k, _) in storage.entries(from: TrackedKey(position: cursor, bytes: [])) {
            if keys.count >= wanted && k.position != lastPosition { return (keys, k.position) }
            keys.append(k.bytes)
            lastPosition = k.position
        }
        return (keys, 0)
    }

    /// The bucket digests.
    public var bucketDigests: [UInt64] { buckets }

    /// The entry hash stored for a key, if present (the hash that drill-downs report).
    public func valueHash(of key: [UInt8]) -> UInt64? { storage[TrackedKey(key)]?.hash }

    /// Takes the keys touched and written since the last call.
    public mutating func drainTouched() -> (touched: [[UInt8]], written: [[UInt8]]) {
        defer {
            touchedLog.removeAll(keepingCapacity: true)
            writtenLog.removeAll(keepingCapacity: true)
        }
        return (touchedLog, writtenLog)
    }
}
