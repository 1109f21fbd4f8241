import HashTreeCollections
import UnderstudyWire

/// The number of digest buckets every tracked state reports.
public let digestBucketCount = 4096

/// A keyed map with O(1) copy that records the keys each request touches and keeps an
/// incrementally maintained digest.
///
/// Storage is a persistent hash tree (`TreeDictionary`), so copying a map — for a snapshot or a
/// validation fork — shares structure instead of copying entries. Every write updates the bucket
/// digest of its key: bucket `b` holds the wrapping sum of `entryHash(key, value)` over the keys
/// in `b`, so two processes with the same logical contents report identical buckets, whatever
/// order the writes came in.
public struct TrackedMap<Value: StateValue>: Sendable {
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
    @usableFromInline var storage: TreeDictionary<[UInt8], Entry>
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
        self.storage = [:]
        self.buckets = Array(repeating: 0, count: digestBucketCount)
    }

    /// The number of keys.
    @inlinable public var count: Int { storage.count }

    /// True when the map holds no keys.
    @inlinable public var isEmpty: Bool { storage.isEmpty }

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
        return storage[key]?.value
    }

    /// Reads a key without recording it (for code outside request handling).
    @inlinable public func peek(_ key: [UInt8]) -> Value? {
        storage[key]?.value
    }

    /// True when the key exists (recorded as touched).
    @inlinable public mutating func contains(_ key: [UInt8]) -> Bool {
        noteTouched(key)
        return storage[key] != nil
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
        let b = bucket(of: key)
        let old: Entry?
        if let value {
            let h = entryHash(key: key, value: value)
            old = storage.updateValue(Entry(value: value, hash: h), forKey: key)
            buckets[b] &+= h
        } else {
            old = storage.removeValue(forKey: key)
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
        let b = bucket(of: key)
        var value: Value?
        var oldHash: UInt64?
        if let oldEntry = storage.removeValue(forKey: key) {
            oldHash = oldEntry.hash
            value = oldEntry.value
        }
        let result = body(&value)
        finishUpdate(key, bucket: b, oldHash: oldHash, value: value)
        return result
    }

    /// Like ``update(_:_:)-(_,(inout Value?)->R)`` for a body that may throw: a throwing body leaves the
    /// entry as it was (the old value is kept aside for that, so collection values are copied once).
    @inlinable @discardableResult
    public mutating func update<R>(_ key: [UInt8], _ body: (inout Value?) throws -> R) throws -> R {
        let b = bucket(of: key)
        let oldEntry = storage.removeValue(forKey: key)
        var value = oldEntry?.value
        let result: R
        do {
            result = try body(&value)
        } catch {
            if let oldEntry { storage[key] = oldEntry }
            throw error
        }
        finishUpdate(key, bucket: b, oldHash: oldEntry?.hash, value: value)
        return result
    }

    @inlinable mutating func finishUpdate(_ key: [UInt8], bucket b: Int, oldHash: UInt64?, value: Value?) {
        if let oldHash { buckets[b] &-= oldHash }
        if let value {
            let h = entryHash(key: key, value: value)
            storage[key] = Entry(value: value, hash: h)
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
            for k in storage.keys { writtenLog.append(k); touchedLog.append(k) }
        }
        storage = [:]
        buckets = Array(repeating: 0, count: digestBucketCount)
    }

    /// The keys, in no particular order.
    public var keys: some Collection<[UInt8]> { storage.keys }

    /// Calls `body` for every entry, in no particular order.
    @inlinable public func forEach(_ body: ([UInt8], Value) throws -> Void) rethrows {
        for (k, e) in storage { try body(k, e.value) }
    }

    /// The bucket digests.
    public var bucketDigests: [UInt64] { buckets }

    /// The entry hash stored for a key, if present (the hash that drill-downs report).
    public func valueHash(of key: [UInt8]) -> UInt64? { storage[key]?.hash }

    /// Takes the keys touched and written since the last call.
    public mutating func drainTouched() -> (touched: [[UInt8]], written: [[UInt8]]) {
        defer {
            touchedLog.removeAll(keepingCapacity: true)
            writtenLog.removeAll(keepingCapacity: true)
        }
        return (touchedLog, writtenLog)
    }
}
