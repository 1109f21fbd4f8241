import UnderstudyKit
import UnderstudyWire

/// One client connection's WATCH: the keys it watches, and whether one of them has changed since.
public struct KVWatcher: Sendable, StateValue, Equatable {
    /// A watched key changed (Redis's `CLIENT_DIRTY_CAS`): the connection's EXEC answers a null reply. Its keys
    /// are forgotten at that moment, as Redis does, so a dirty watcher costs one small entry.
    public var dirty: Bool
    /// The watched keys, each once, in WATCH order (empty once dirty).
    public var keys: [[UInt8]]

    /// Creates a watcher.
    public init(dirty: Bool = false, keys: [[UInt8]] = []) {
        self.dirty = dirty
        self.keys = keys
    }

    public func encode(to w: inout ByteWriter) {
        w.write(dirty)
        w.writeVarint(UInt64(keys.count))
        for k in keys { w.writeBytes(k) }
    }

    public init(decoding r: inout ByteReader) throws {
        dirty = try r.readBool()
        // Every key takes at least its length byte.
        let n = try r.readCount(limit: r.remaining)
        keys = []
        keys.reserveCapacity(n)
        for _ in 0..<n { keys.append(try r.readBytes()) }
    }
}

/// The connections watching one key.
public struct KVKeyWatchers: Sendable, StateValue, Equatable {
    /// One connection watching the key.
    public struct Entry: Sendable, Equatable {
        /// The connection's id.
        public var connection: Int64
        /// The key was logically expired (still stored, past its expiry) when the connection watched it: its
        /// deletion by expiry is then no change, as in Redis 7.
        public var expired: Bool

        /// Creates an entry.
        public init(connection: Int64, expired: Bool) {
            self.connection = connection
            self.expired = expired
        }
    }

    /// The watchers, by connection id.
    public var entries: [Entry]

    /// Creates the list.
    public init(entries: [Entry] = []) { self.entries = entries }

    public func encode(to w: inout ByteWriter) {
        w.writeVarint(UInt64(entries.count))
        for e in entries {
            w.write(e.connection)
            w.write(e.expired)
        }
    }

    public init(decoding r: inout ByteReader) throws {
        let n = try r.readCount(limit: r.remaining / 9)
        entries = []
        entries.reserveCapacity(n)
        for _ in 0..<n { entries.append(Entry(connection: try r.readInt64(), expired: try r.readBool())) }
    }
}

/// WATCH state, kept by the service from journaled inputs so that every replica decides EXEC alike, and a swap
/// or a failover between WATCH and EXEC changes nothing: which connection watches which keys
/// (map `watch.clients`), and the same index by key (map `watch.keys`) that every write consults.
///
/// Bounded: a connection's entries go at its EXEC, DISCARD, UNWATCH or disconnect, and its keys already when it
/// turns dirty; ``InputTag/connectionsReset`` drops everything when a new supervisor process starts.
public struct KVWatches: Sendable {
    /// Connection id (8 bytes, big-endian) → its watch.
    public var clients = TrackedMap<KVWatcher>(name: "watch.clients")
    /// Key → the connections watching it.
    public var keys = TrackedMap<KVKeyWatchers>(name: "watch.keys")

    /// Creates an empty registry.
    public init() {}

    /// The map key of a connection id.
    static func clientKey(_ connection: Int64) -> [UInt8] {
        withUnsafeBytes(of: UInt64(bitPattern: connection).bigEndian) { Array($0) }
    }

    /// True when some connection watches `key` (the one check every write makes; free when nobody watches).
    public func isWatched(_ key: [UInt8]) -> Bool {
        !keys.isEmpty && keys.peek(key) != nil
    }

    /// Records that `key` changed (Redis's `touchWatchedKey`): its watchers turn dirty, except those that
    /// watched it already expired when it is now gone (its removal by expiry is no change; their mark is cleared).
    /// - Parameters:
    ///   - key: The key.
    ///   - exists: Whether the key exists after the change.
    public mutating func touch(_ key: [UInt8], exists: Bool) {
        guard !keys.isEmpty, let watchers = keys.peek(key) else { return }
        touchSlow(key, watchers, exists: exists)
    }

    mutating func touchSlow(_ key: [UInt8], _ watchers: KVKeyWatchers, exists: Bool) {
        var kept = watchers
        var dirtied: [Int64] = []
        for (i, e) in watchers.entries.enumerated() {
            if e.expired && !exists {
                kept.entries[i].expired = false
            } else {
                dirtied.append(e.connection)
            }
        }
        if kept != watchers { keys.set(key, kept) }
        for c in dirtied { markDirty(c) }
    }

    /// FLUSHDB / FLUSHALL (Redis's `touchAllWatchedKeysInDb`): every watched key that exists is touched as gone.
    /// - Parameter exists: Whether a key exists before the flush.
    public mutating func flush(exists: ([UInt8]) -> Bool) {
        guard !keys.isEmpty else { return }
        var present: [[UInt8]] = []
        keys.forEach { k, _ in if exists(k) { present.append(k) } }
        // Sorted: the order of the changes must not depend on a map's iteration order.
        present.sort { $0.lexicographicallyPrecedes($1) }
        for k in present { touch(k, exists: false) }
    }

    /// Marks a connection dirty and forgets its keys.
    mutating func markDirty(_ connection: Int64) {
        let id = Self.clientKey(connection)
        guard let w = clients.peek(id), !w.dirty else { return }
        removeFromIndex(connection, w.keys)
        clients.set(id, KVWatcher(dirty: true))
    }

    /// Adds keys to a connection's watch (WATCH). A dirty connection keeps nothing more, as in Redis.
    /// - Parameters:
    ///   - connection: The connection.
    ///   - newKeys: The keys (repeats are ignored).
    ///   - isExpired: Whether a key is logically expired now (still stored, past its expiry).
    public mutating func watch(connection: Int64, _ newKeys: ArraySlice<[UInt8]>, isExpired: ([UInt8]) -> Bool) {
        let id = Self.clientKey(connection)
        var w = clients.peek(id) ?? KVWatcher()
        guard !w.dirty else { return }
        var known = Set(w.keys)
        for k in newKeys where known.insert(k).inserted {
            w.keys.append(k)
            var watchers = keys.peek(k) ?? KVKeyWatchers()
            watchers.entries.append(KVKeyWatchers.Entry(connection: connection, expired: isExpired(k)))
            watchers.entries.sort { $0.connection < $1.connection }
            keys.set(k, watchers)
        }
        clients.set(id, w)
    }

    /// The connection's watch, if it has one.
    public func watcher(_ connection: Int64) -> KVWatcher? { clients.peek(Self.clientKey(connection)) }

    /// Forgets a connection's watch (EXEC, DISCARD, UNWATCH, disconnect).
    public mutating func unwatch(connection: Int64) {
        let id = Self.clientKey(connection)
        guard let w = clients.peek(id) else { return }
        removeFromIndex(connection, w.keys)
        clients.remove(id)
    }

    /// Forgets every connection's watch.
    public mutating func removeAll() {
        if !clients.isEmpty { clients.removeAll() }
        if !keys.isEmpty { keys.removeAll() }
    }

    mutating func removeFromIndex(_ connection: Int64, _ watchedKeys: [[UInt8]]) {
        for k in watchedKeys {
            guard var watchers = keys.peek(k) else { continue }
            watchers.entries.removeAll { $0.connection == connection }
            if watchers.entries.isEmpty { keys.remove(k) } else { keys.set(k, watchers) }
        }
    }
}

extension KVStorage {
    /// A key is logically expired: stored, past its expiry (Redis's `keyIsExpired`).
    func isLogicallyExpired(_ key: [UInt8], now: Int64) -> Bool {
        let exp = peekExpiry(key)
        return exp != kvNoExpiry && now > exp
    }

    /// Marks the watchers of `key` dirty after a command changed it without changing its value (HSET of the same
    /// value, INCRBY 0, LSET, LTRIM, …: Redis counts those as modifications). Changes of value are noticed by the
    /// storage itself.
    mutating func signalModified(_ key: [UInt8]) {
        guard watches.isWatched(key) else { return }
        watches.touch(key, exists: read(key) != nil)
    }

    /// `WATCH key [key …]` of a connection.
    mutating func watchKeys(connection: Int64, _ keys: ArraySlice<[UInt8]>, now: Int64) -> Reply {
        var expired: Set<[UInt8]> = []
        for k in keys where isLogicallyExpired(k, now: now) { expired.insert(k) }
        watches.watch(connection: connection, keys) { expired.contains($0) }
        return .ok
    }

    /// Decides a watching connection's EXEC and forgets its watch: true when no watched key changed — none was
    /// touched since WATCH, and none has expired since (Redis's `isWatchedKeyExpired`).
    mutating func execAllowed(connection: Int64, now: Int64) -> Bool {
        guard let w = watches.watcher(connection) else { return true }
        var allowed = !w.dirty
        if allowed {
            for k in w.keys where isLogicallyExpired(k, now: now) {
                let expiredAtWatch = watches.keys.peek(k)?.entries.first { $0.connection == connection }?.expired ?? false
                if !expiredAtWatch {
                    allowed = false
                    break
                }
            }
        }
        watches.unwatch(connection: connection)
        return allowed
    }
}
