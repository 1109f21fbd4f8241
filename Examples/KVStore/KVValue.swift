import UnderstudyKit
import UnderstudyWire

/// Stable element hashing shared by the collection digests.
@usableFromInline enum KVHashing {
    @inlinable static func element(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        StableHasher.hash(bytes, seed: seed)
    }

    @inlinable static func pair(_ field: [UInt8], _ value: [UInt8]) -> UInt64 {
        var h = StableHasher(seed: 0x4841_5348)
        field.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(field.count))
        value.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(value.count))
        return h.finalize()
    }

    /// Odd multiplier for list position weights, and its inverse modulo 2^64.
    static let base: UInt64 = 0x9E37_79B9_7F4A_7C15
    static let inverseBase: UInt64 = {
        // Newton iteration for the inverse of an odd number modulo 2^64.
        var x: UInt64 = base
        for _ in 0..<6 { x = x &* (2 &- base &* x) }
        return x
    }()

    /// base^p modulo 2^64 for any integer p (negative powers use the inverse).
    static func weight(_ p: Int64) -> UInt64 {
        var b = p >= 0 ? base : inverseBase
        var e = p.magnitude
        var r: UInt64 = 1
        while e > 0 {
            if e & 1 == 1 { r = r &* b }
            b = b &* b
            e >>= 1
        }
        return r
    }
}

/// A double-ended queue of byte strings (ring buffer) with an incrementally maintained,
/// order-dependent digest, so pushes and pops at either end cost O(1) digest work.
public struct KVList: Sendable {
    @usableFromInline var buffer: [[UInt8]]
    @usableFromInline var head = 0
    /// The number of elements.
    public private(set) var count = 0
    /// Absolute position of element 0 (only its difference to positions matters).
    var origin: Int64 = 0
    /// Σ h(eᵢ) · base^(origin+i).
    var sum: UInt64 = 0

    /// Creates a list from elements in order.
    public init(_ elements: [[UInt8]] = []) {
        buffer = elements
        count = elements.count
        if buffer.isEmpty { buffer = [] }
        var w: UInt64 = 1
        for e in elements {
            sum &+= KVHashing.element(e, seed: 0x4C49_5354) &* w
            w = w &* KVHashing.base
        }
    }

    /// True when empty.
    public var isEmpty: Bool { count == 0 }

    /// The order-dependent digest of the contents.
    public var digest: UInt64 { sum &* KVHashing.weight(-origin) }

    @inline(__always) func physical(_ i: Int) -> Int {
        let p = head + i
        return p >= buffer.count ? p - buffer.count : p
    }

    /// The element at a logical index.
    public subscript(i: Int) -> [UInt8] {
        get { buffer[physical(i)] }
        set {
            let p = physical(i)
            let w = KVHashing.weight(origin + Int64(i))
            sum &-= KVHashing.element(buffer[p], seed: 0x4C49_5354) &* w
            sum &+= KVHashing.element(newValue, seed: 0x4C49_5354) &* w
            buffer[p] = newValue
        }
    }

    mutating func grow() {
        let newCapacity = Swift.max(8, buffer.count * 2)
        var nb: [[UInt8]] = []
        nb.reserveCapacity(newCapacity)
        for i in 0..<count { nb.append(buffer[physical(i)]) }
        while nb.count < newCapacity { nb.append([]) }
        buffer = nb
        head = 0
    }

    /// Appends at the tail.
    public mutating func pushBack(_ e: [UInt8]) {
        if count == buffer.count { grow() }
        buffer[physical(count)] = e
        sum &+= KVHashing.element(e, seed: 0x4C49_5354) &* KVHashing.weight(origin + Int64(count))
        count += 1
    }

    /// Prepends at the head.
    public mutating func pushFront(_ e: [UInt8]) {
        if count == buffer.count { grow() }
        head = head == 0 ? buffer.count - 1 : head - 1
        buffer[head] = e
        origin -= 1
        sum &+= KVHashing.element(e, seed: 0x4C49_5354) &* KVHashing.weight(origin)
        count += 1
    }

    /// Removes and returns the head.
    public mutating func popFront() -> [UInt8]? {
        guard count > 0 else { return nil }
        let e = buffer[head]
        buffer[head] = []
        sum &-= KVHashing.element(e, seed: 0x4C49_5354) &* KVHashing.weight(origin)
        origin += 1
        head = physical(1)
        count -= 1
        if count == 0 { head = 0 }
        return e
    }

    /// Removes and returns the tail.
    public mutating func popBack() -> [UInt8]? {
        guard count > 0 else { return nil }
        let p = physical(count - 1)
        let e = buffer[p]
        buffer[p] = []
        sum &-= KVHashing.element(e, seed: 0x4C49_5354) &* KVHashing.weight(origin + Int64(count - 1))
        count -= 1
        if count == 0 { head = 0 }
        return e
    }

    /// The elements in order.
    public var elements: [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for i in 0..<count { out.append(buffer[physical(i)]) }
        return out
    }

    /// Elements in a closed logical range.
    public func slice(_ from: Int, _ to: Int) -> [[UInt8]] {
        guard from <= to else { return [] }
        var out: [[UInt8]] = []
        out.reserveCapacity(to - from + 1)
        for i in from...to { out.append(buffer[physical(i)]) }
        return out
    }

    /// Approximate heap bytes.
    var byteEstimate: Int {
        var n = 32 + buffer.count * 8
        for i in 0..<count { n += 32 + buffer[physical(i)].count }
        return n
    }
}

/// Estimates of the memory a collection's ordered trees take.
@usableFromInline enum KVLayout {
    /// The bytes one tree entry takes: its key and value inline in a leaf, leaves about 70% full on average,
    /// internal nodes (a separator, a child and a count per 64 entries) included.
    static func entryBytes<Key, Value>(_: Key.Type, _: Value.Type) -> Int {
        (MemoryLayout<Key>.stride + MemoryLayout<Value>.stride) * 10 / 7 + 1
    }

    /// The heap bytes a byte string takes beside its inline part: a ``TrackedKey`` holds up to 15 bytes inline.
    @inlinable static func keyHeapBytes(_ n: Int) -> Int { n > 15 ? 32 + n : 0 }

    /// The heap bytes of a byte array value.
    @inlinable static func arrayHeapBytes(_ n: Int) -> Int { n > 0 ? 32 + n : 0 }
}

extension KVHashing {
    /// ``element(_:seed:)`` of a tracked key's bytes (the same value, without copying them out).
    @inlinable static func element(_ key: TrackedKey, seed: UInt64) -> UInt64 {
        var h = StableHasher(seed: seed)
        key.withBytes { h.combine(buffer: $0) }
        h.combine(UInt64(key.byteCount))
        return h.finalize()
    }

    /// ``pair(_:_:)`` with the field as a tracked key (the same value).
    @inlinable static func pair(_ field: TrackedKey, _ value: [UInt8]) -> UInt64 {
        var h = StableHasher(seed: 0x4841_5348)
        field.withBytes { h.combine(buffer: $0) }
        h.combine(UInt64(field.byteCount))
        value.withUnsafeBytes { h.combine(buffer: $0) }
        h.combine(UInt64(value.count))
        return h.finalize()
    }
}

/// Byte order of two tracked keys' bytes (memcmp, then length), ignoring their positions: Redis's order.
@inlinable func bytesLess(_ a: TrackedKey, _ b: TrackedKey) -> Bool {
    a.withBytes { x in
        b.withBytes { y in
            let n = Swift.min(x.count, y.count)
            for i in 0..<n where x[i] != y[i] { return x[i] < y[i] }
            return x.count < y.count
        }
    }
}

/// A hash value: field → value with an order-independent digest kept up to date.
///
/// The fields are in an ``OrderedTree`` keyed by ``TrackedKey`` (a stable position, then the bytes): lookups and
/// changes are O(log n), a random field is a random rank, and HSCAN resumes at a position.
public struct KVHash: Sendable {
    /// The fields in scan order (stable position, then bytes).
    public private(set) var fields = OrderedTree<TrackedKey, [UInt8]>()
    var sum: UInt64 = 0
    /// Heap bytes of long fields and of values (exact; for ``byteEstimate``).
    var heapBytes = 0
    /// No field (value) is longer than this: a high-water mark (removals leave it), for bounds that save a pass.
    var longestField = 0, longestValue = 0

    /// Creates an empty hash.
    public init() {}

    /// The number of fields.
    public var count: Int { fields.count }

    /// Reads a field.
    public subscript(field: [UInt8]) -> [UInt8]? { fields[TrackedKey(field)] }

    /// Sets a field; returns true when it was new.
    @discardableResult public mutating func set(_ field: [UInt8], _ value: [UInt8]) -> Bool {
        let key = TrackedKey(field)
        let old = fields.updateValue(value, forKey: key)
        if let old {
            sum &-= KVHashing.pair(key, old)
            heapBytes -= KVLayout.arrayHeapBytes(old.count)
        } else {
            heapBytes += KVLayout.keyHeapBytes(field.count)
            longestField = Swift.max(longestField, field.count)
        }
        sum &+= KVHashing.pair(key, value)
        heapBytes += KVLayout.arrayHeapBytes(value.count)
        longestValue = Swift.max(longestValue, value.count)
        return old == nil
    }

    /// Removes a field; returns true when it existed.
    @discardableResult public mutating func remove(_ field: [UInt8]) -> Bool {
        let key = TrackedKey(field)
        guard let old = fields.removeValue(forKey: key) else { return false }
        sum &-= KVHashing.pair(key, old)
        heapBytes -= KVLayout.keyHeapBytes(field.count) + KVLayout.arrayHeapBytes(old.count)
        return true
    }

    /// The field and value at a rank of the scan order (O(log n)). Precondition: `0 <= rank < count`.
    public func entry(atRank rank: Int) -> (field: [UInt8], value: [UInt8]) {
        let e = fields.entry(atRank: rank)
        return (e.key.bytes, e.value)
    }

    /// Fields and values in field byte order.
    public var sortedPairs: [(field: [UInt8], value: [UInt8])] {
        var out: [(field: [UInt8], value: [UInt8])] = []
        out.reserveCapacity(count)
        fields.forEach { out.append(($0.bytes, $1)) }
        out.sort { bytesLess($0.field, $1.field) }
        return out
    }

    /// Field names in byte order.
    public var sortedFields: [[UInt8]] { sortedPairs.map(\.field) }

    var byteEstimate: Int {
        64 + count * KVLayout.entryBytes(TrackedKey.self, [UInt8].self) + heapBytes
    }
}

/// A set value with an order-independent digest kept up to date.
///
/// The members are in an ``OrderedTree`` keyed by ``TrackedKey`` (a stable position, then the bytes): membership
/// and changes are O(log n), a random member is a random rank, and SSCAN resumes at a position.
public struct KVSet: Sendable {
    /// The members in scan order (stable position, then bytes).
    public private(set) var members = OrderedTree<TrackedKey, Void>()
    var sum: UInt64 = 0
    /// Heap bytes of long members (exact; for ``byteEstimate``).
    var heapBytes = 0
    /// No member is longer than this: a high-water mark (removals leave it), for bounds that save a pass.
    var longestMember = 0

    /// Creates a set.
    public init(_ items: some Sequence<[UInt8]> = [[UInt8]]()) {
        for i in items { insert(i) }
    }

    /// The number of members.
    public var count: Int { members.count }

    /// Membership.
    public func contains(_ m: [UInt8]) -> Bool { members.contains(TrackedKey(m)) }

    /// Membership of a tracked key.
    public func contains(_ key: TrackedKey) -> Bool { members.contains(key) }

    /// Adds a member; true when new.
    @discardableResult public mutating func insert(_ m: [UInt8]) -> Bool { insert(TrackedKey(m)) }

    /// Adds a tracked key; true when new.
    @discardableResult public mutating func insert(_ key: TrackedKey) -> Bool {
        guard members.updateValue((), forKey: key) == nil else { return false }
        sum &+= KVHashing.element(key, seed: 0x5345_5453)
        heapBytes += KVLayout.keyHeapBytes(key.byteCount)
        longestMember = Swift.max(longestMember, key.byteCount)
        return true
    }

    /// Removes a member; true when it existed.
    @discardableResult public mutating func remove(_ m: [UInt8]) -> Bool { remove(TrackedKey(m)) }

    /// Removes a tracked key; true when it existed.
    @discardableResult public mutating func remove(_ key: TrackedKey) -> Bool {
        guard members.removeValue(forKey: key) != nil else { return false }
        sum &-= KVHashing.element(key, seed: 0x5345_5453)
        heapBytes -= KVLayout.keyHeapBytes(key.byteCount)
        return true
    }

    /// The member at a rank of the scan order (O(log n)). Precondition: `0 <= rank < count`.
    public func member(atRank rank: Int) -> TrackedKey { members.entry(atRank: rank).key }

    /// Members in byte order.
    public var sorted: [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        members.forEach { k, _ in out.append(k.bytes) }
        out.sort(by: bytesLess)
        return out
    }

    var byteEstimate: Int {
        64 + count * KVLayout.entryBytes(TrackedKey.self, Void.self) + heapBytes
    }
}

/// Lexicographic byte order (memcmp, then length), as Redis sorts.
@inlinable public func bytesLess(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    a.lexicographicallyPrecedes(b)
}

/// One Redis value.
///
/// The collection cases are `indirect` (boxed), so a value is one word wide whatever its type and the
/// millions of small strings a keyspace holds cost no padding for the rare collection. Code that mutates
/// a collection in place takes it out of the value and sets the value to nil first, which releases the
/// box and leaves the collection's storage uniquely referenced (no copy).
public enum KVValue: Sendable, StateValue {
    /// A string (binary-safe bytes).
    case string([UInt8])
    /// A list.
    indirect case list(KVList)
    /// A hash.
    indirect case hash(KVHash)
    /// A set.
    indirect case set(KVSet)
    /// A sorted set.
    indirect case zset(KVSortedSet)

    /// The name TYPE reports.
    public var typeName: String {
        switch self {
        case .string: "string"
        case .list: "list"
        case .hash: "hash"
        case .set: "set"
        case .zset: "zset"
        }
    }

    /// Canonical encoding: tag, then contents (hash fields and set members sorted, sorted-set elements in order).
    public func encode(to w: inout ByteWriter) {
        switch self {
        case .string(let b):
            w.write(UInt8(0))
            w.writeBytes(b)
        case .list(let l):
            w.write(UInt8(1))
            w.writeVarint(UInt64(l.count))
            for i in 0..<l.count { w.writeBytes(l[i]) }
        case .hash(let h):
            w.write(UInt8(2))
            w.writeVarint(UInt64(h.count))
            for (f, v) in h.sortedPairs {
                w.writeBytes(f)
                w.writeBytes(v)
            }
        case .set(let s):
            w.write(UInt8(3))
            w.writeVarint(UInt64(s.count))
            for m in s.sorted { w.writeBytes(m) }
        case .zset(let z):
            // Elements in (score, member) order; a score as its IEEE 754 bits (never NaN or -0).
            w.write(UInt8(4))
            w.writeVarint(UInt64(z.count))
            for e in z.elements {
                w.writeBytes(e.member)
                w.write(e.score.bitPattern)
            }
        }
    }

    /// Decodes the canonical encoding.
    public init(decoding r: inout ByteReader) throws {
        switch try r.readByte() {
        case 0:
            self = .string(try r.readBytes())
        case 1:
            let n = try r.readCount()
            var items: [[UInt8]] = []
            items.reserveCapacity(Swift.min(n, 1 << 16))
            for _ in 0..<n { items.append(try r.readBytes()) }
            self = .list(KVList(items))
        case 2:
            let n = try r.readCount()
            var h = KVHash()
            for _ in 0..<n {
                let f = try r.readBytes()
                h.set(f, try r.readBytes())
            }
            self = .hash(h)
        case 3:
            let n = try r.readCount()
            var s = KVSet()
            for _ in 0..<n { s.insert(try r.readBytes()) }
            self = .set(s)
        case 4:
            let n = try r.readCount()
            var z = KVSortedSet()
            for _ in 0..<n {
                let m = try r.readBytes()
                let score = Double(bitPattern: try r.read(UInt64.self))
                guard !score.isNaN else { throw DecodingError("NaN score in a sorted set") }
                guard z.set(m, score) else { throw DecodingError("repeated member in a sorted set") }
            }
            self = .zset(z)
        case let t:
            throw DecodingError("unknown KVValue tag \(t)")
        }
    }

    /// Order-independent for hashes and sets, O(1) for collections (digests are maintained).
    public func stableDigest() -> UInt64 {
        var h = StableHasher(seed: 0x4B56_5641_4C55_45)
        switch self {
        case .string(let b):
            h.combine(0)
            return KVHashing.element(b, seed: h.finalize())
        case .list(let l):
            h.combine(1)
            h.combine(UInt64(l.count))
            h.combine(l.digest)
        case .hash(let x):
            h.combine(2)
            h.combine(UInt64(x.count))
            h.combine(x.sum)
        case .set(let s):
            h.combine(3)
            h.combine(UInt64(s.count))
            h.combine(s.sum)
        case .zset(let z):
            h.combine(4)
            h.combine(UInt64(z.count))
            h.combine(z.sum)
        }
        return h.finalize()
    }

    /// Approximate bytes this value occupies in memory.
    public var byteEstimate: Int {
        switch self {
        case .string(let b): 32 + b.count
        case .list(let l): l.byteEstimate
        case .hash(let h): h.byteEstimate
        case .set(let s): s.byteEstimate
        case .zset(let z): z.byteEstimate
        }
    }
}
