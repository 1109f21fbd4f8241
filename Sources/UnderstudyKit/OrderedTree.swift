/// A persistent ordered map: a counted B+tree with O(1) copies.
///
/// Keys are kept in ascending order. Lookups, insertions and removals are O(log n); so are the
/// order-statistic operations a service needs for sampling and cursors: the rank of a key, the entry
/// at a rank, the first entry at or after a key. Copying a tree shares every node; the first write
/// to a copy copies only the nodes on the path it changes (copy-on-write per node), so a snapshot or
/// validation fork of a state with a million entries costs nothing until it diverges.
///
/// Iteration is in key order, so two processes holding the same entries visit them identically.
public struct OrderedTree<Key: Comparable & Sendable, Value: Sendable>: Sendable {
    @usableFromInline typealias Node = OrderedTreeNode<Key, Value>

    @usableFromInline var root: Node?

    /// Creates an empty tree.
    @inlinable public init() { root = nil }

    /// The number of entries.
    @inlinable public var count: Int { root?.count ?? 0 }

    /// True when the tree holds no entries.
    @inlinable public var isEmpty: Bool { root == nil }

    /// The value for a key, or nil.
    @inlinable public subscript(key: Key) -> Value? {
        guard var node = root else { return nil }
        while !node.isLeaf { node = node.children[node.childIndex(for: key)] }
        let i = node.lowerBound(key)
        return i < node.keys.count && node.keys[i] == key ? node.values[i] : nil
    }

    /// True when the key is present.
    @inlinable public func contains(_ key: Key) -> Bool { self[key] != nil }

    /// Sets the value for a key; returns the old value, if any.
    @inlinable @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        guard root != nil else {
            root = Node(leafKeys: [key], values: [value])
            return nil
        }
        makeRootUnique()
        let (old, split) = root!.insert(key, value, rightmost: true)
        if let split {
            let left = root!
            root = Node(children: [left, split], separators: [left.keys[0], split.keys[0]])
        }
        return old
    }

    /// Removes a key; returns its value, if it was present.
    @inlinable @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? {
        guard root != nil else { return nil }
        // Look first so that a miss copies nothing.
        guard self[key] != nil else { return nil }
        makeRootUnique()
        let old = root!.remove(key)
        if root!.count == 0 {
            root = nil
        } else if !root!.isLeaf && root!.children.count == 1 {
            root = root!.children[0]
        }
        return old
    }

    /// Mutates the value of a present key in place (no structural change); returns nil when the
    /// key is absent. The nodes on the path are copied first where shared, so the value is
    /// uniquely referenced while `body` runs when nothing else holds it.
    @inlinable
    public mutating func modifyValue<R>(forKey key: Key, _ body: (inout Value) throws -> R) rethrows -> R? {
        guard root != nil, self[key] != nil else { return nil }
        makeRootUnique()
        return try root!.modify(key, body)
    }

    /// Removes every entry.
    @inlinable public mutating func removeAll() { root = nil }

    @inlinable mutating func makeRootUnique() {
        if !isKnownUniquelyReferenced(&root) { root = root!.copy() }
    }

    // MARK: Order statistics

    /// The number of keys less than `key` (the rank `key` has or would have).
    @inlinable public func rank(of key: Key) -> Int {
        guard var node = root else { return 0 }
        var rank = 0
        while !node.isLeaf {
            let c = node.childIndex(for: key)
            for j in 0..<c { rank += node.counts[j] }
            node = node.children[c]
        }
        return rank + node.lowerBound(key)
    }

    /// The entry at a rank (0 is the smallest key). Precondition: `0 <= rank < count`.
    @inlinable public func entry(atRank rank: Int) -> (key: Key, value: Value) {
        precondition(rank >= 0 && rank < count, "rank \(rank) out of range 0..<\(count)")
        var node = root!
        var r = rank
        while !node.isLeaf {
            var c = 0
            while r >= node.counts[c] {
                r -= node.counts[c]
                c += 1
            }
            node = node.children[c]
        }
        return (node.keys[r], node.values[r])
    }

    /// The smallest entry, or nil when empty.
    @inlinable public var first: (key: Key, value: Value)? { isEmpty ? nil : entry(atRank: 0) }

    /// The largest entry, or nil when empty.
    @inlinable public var last: (key: Key, value: Value)? { isEmpty ? nil : entry(atRank: count - 1) }

    // MARK: Iteration

    /// Calls `body` for every entry in key order.
    @inlinable public func forEach(_ body: (Key, Value) throws -> Void) rethrows {
        guard let root else { return }
        try root.forEach(body)
    }

    /// The entries in key order, starting at a rank.
    @inlinable public func entries(fromRank rank: Int = 0) -> Entries {
        Entries(tree: self, rank: Swift.max(0, Swift.min(rank, count)))
    }

    /// The entries in key order, starting at the first key not less than `key`.
    @inlinable public func entries(from key: Key) -> Entries {
        Entries(tree: self, rank: rank(of: key))
    }

    /// A sequence of entries in key order from a starting rank; iteration is amortized O(1) per entry.
    public struct Entries: Sequence, Sendable {
        @usableFromInline let tree: OrderedTree
        @usableFromInline let rank: Int

        @inlinable init(tree: OrderedTree, rank: Int) {
            self.tree = tree
            self.rank = rank
        }

        /// An iterator at the starting rank.
        @inlinable public func makeIterator() -> Iterator { Iterator(tree: tree, rank: rank) }

        /// The number of entries the sequence visits.
        @inlinable public var underestimatedCount: Int { tree.count - rank }
    }

    /// Walks the leaves left to right, keeping the path from the root.
    public struct Iterator: IteratorProtocol, Sendable {
        @usableFromInline var path: [(node: Node, index: Int)] = []
        @usableFromInline var leaf: Node?
        @usableFromInline var offset = 0

        @inlinable init(tree: OrderedTree, rank: Int) {
            guard var node = tree.root, rank < node.count else { return }
            var r = rank
            while !node.isLeaf {
                var c = 0
                while r >= node.counts[c] {
                    r -= node.counts[c]
                    c += 1
                }
                path.append((node, c))
                node = node.children[c]
            }
            leaf = node
            offset = r
        }

        /// The next entry in key order.
        @inlinable public mutating func next() -> (key: Key, value: Value)? {
            guard let node = leaf else { return nil }
            let result = (node.keys[offset], node.values[offset])
            offset += 1
            if offset == node.keys.count { advanceLeaf() }
            return result
        }

        @inlinable mutating func advanceLeaf() {
            offset = 0
            leaf = nil
            while let (parent, index) = path.popLast() {
                if index + 1 < parent.children.count {
                    path.append((parent, index + 1))
                    var node = parent.children[index + 1]
                    while !node.isLeaf {
                        path.append((node, 0))
                        node = node.children[0]
                    }
                    leaf = node
                    return
                }
            }
        }
    }

    /// The keys in order (lazily).
    @inlinable public var keys: LazyMapSequence<Entries, Key> { entries().lazy.map { $0.key } }
}

/// A node of an ``OrderedTree``: a leaf holds keys and values; an internal node holds children, the
/// number of entries under each, and a separator per child (`separators[i]` ≤ every key under child `i`
/// and > every key under child `i - 1`; `separators[0]` is never consulted).
///
/// Safety of `@unchecked Sendable`: a node is mutated only through a tree that holds the sole reference
/// to it (every mutating path checks `isKnownUniquelyReferenced` and copies a shared node first), so a
/// node reachable from more than one tree value — the only way it can be seen from two threads — is
/// never written again. This is the copy-on-write discipline of Swift's own collections.
@usableFromInline
final class OrderedTreeNode<Key: Comparable & Sendable, Value: Sendable>: @unchecked Sendable {
    /// Most entries in a leaf and most children of an internal node.
    @usableFromInline static var capacity: Int { 64 }
    /// Fewest entries (children) a non-root node keeps after a removal before it borrows or merges.
    @usableFromInline static var minimum: Int { 21 }

    /// Leaf: the keys. Internal: the separators.
    @usableFromInline var keys: [Key]
    /// Leaf only: the values.
    @usableFromInline var values: [Value]
    /// Internal only: the children.
    @usableFromInline var children: [OrderedTreeNode]
    /// Internal only: the number of entries under each child.
    @usableFromInline var counts: [Int]
    /// The number of entries under this node.
    @usableFromInline var count: Int

    @inlinable init(leafKeys: [Key], values: [Value]) {
        self.keys = leafKeys
        self.values = values
        self.children = []
        self.counts = []
        self.count = leafKeys.count
    }

    @inlinable init(children: [OrderedTreeNode], separators: [Key]) {
        self.keys = separators
        self.values = []
        self.children = children
        self.counts = children.map(\.count)
        self.count = self.counts.reduce(0, +)
    }

    @inlinable init(copying other: OrderedTreeNode) {
        keys = other.keys
        values = other.values
        children = other.children
        counts = other.counts
        count = other.count
    }

    @inlinable func copy() -> OrderedTreeNode { OrderedTreeNode(copying: self) }

    @inlinable var isLeaf: Bool { children.isEmpty }

    /// The first index whose key is not less than `key` (leaf).
    @inlinable func lowerBound(_ key: Key) -> Int {
        var lo = 0
        var hi = keys.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if keys[mid] < key { lo = mid &+ 1 } else { hi = mid }
        }
        return lo
    }

    /// The child whose range holds `key` (internal): the last child whose separator is ≤ key, or 0.
    @inlinable func childIndex(for key: Key) -> Int {
        var lo = 1
        var hi = keys.count
        while lo < hi {
            let mid = (lo &+ hi) >> 1
            if keys[mid] <= key { lo = mid &+ 1 } else { hi = mid }
        }
        return lo &- 1
    }

    /// Makes child `i` uniquely referenced by this node (copying it when shared).
    @inlinable func uniqueChild(_ i: Int) {
        let unique = children.withUnsafeMutableBufferPointer { isKnownUniquelyReferenced(&$0[i]) }
        if !unique { children[i] = children[i].copy() }
    }

    /// Inserts or replaces; returns the old value and, when this node split, its new right sibling.
    @inlinable func insert(_ key: Key, _ value: Value, rightmost: Bool) -> (Value?, OrderedTreeNode?) {
        if isLeaf {
            let i = lowerBound(key)
            if i < keys.count && keys[i] == key {
                let old = values[i]
                values[i] = value
                return (old, nil)
            }
            keys.insert(key, at: i)
            values.insert(value, at: i)
            count += 1
            guard keys.count > Self.capacity else { return (nil, nil) }
            // An append at the right edge of the tree (a sorted load) leaves the left node full.
            let at = rightmost && i == keys.count - 1 ? keys.count - 1 : keys.count / 2
            let right = OrderedTreeNode(leafKeys: Array(keys[at...]), values: Array(values[at...]))
            keys.removeSubrange(at...)
            values.removeSubrange(at...)
            count = keys.count
            return (nil, right)
        }
        let c = childIndex(for: key)
        uniqueChild(c)
        let child = children[c]
        let (old, split) = child.insert(key, value, rightmost: rightmost && c == children.count - 1)
        counts[c] = child.count
        if old == nil { count += 1 }
        guard let split else { return (old, nil) }
        children.insert(split, at: c + 1)
        keys.insert(split.keys[0], at: c + 1)
        counts.insert(split.count, at: c + 1)
        counts[c] = child.count
        guard children.count > Self.capacity else { return (old, nil) }
        let at = rightmost && c + 1 == children.count - 1 ? children.count - 1 : children.count / 2
        let right = OrderedTreeNode(children: Array(children[at...]), separators: Array(keys[at...]))
        children.removeSubrange(at...)
        keys.removeSubrange(at...)
        counts.removeSubrange(at...)
        count -= right.count
        return (old, right)
    }

    /// Removes a key known to be present under this node; rebalances children that fall below the minimum.
    @inlinable func remove(_ key: Key) -> Value {
        if isLeaf {
            let i = lowerBound(key)
            precondition(i < keys.count && keys[i] == key, "OrderedTree: removing a key that is not present")
            keys.remove(at: i)
            count -= 1
            return values.remove(at: i)
        }
        let c = childIndex(for: key)
        uniqueChild(c)
        let old = children[c].remove(key)
        counts[c] -= 1
        count -= 1
        let size = children[c].isLeaf ? children[c].keys.count : children[c].children.count
        if size < Self.minimum && children.count > 1 { rebalance(c) }
        return old
    }

    /// Merges child `c` with a sibling, or moves entries from the sibling so both keep the minimum.
    @inlinable func rebalance(_ c: Int) {
        let l = c > 0 ? c - 1 : c
        let r = l + 1
        uniqueChild(l)
        uniqueChild(r)
        let left = children[l]
        let right = children[r]
        // Internal nodes: the separator between the two becomes the separator of right's first child once that
        // child sits anywhere but at index 0.
        if !left.isLeaf { right.keys[0] = keys[r] }
        let total = left.keys.count + right.keys.count
        if total <= Self.capacity {
            left.appendSlots(of: right, 0..<right.keys.count)
            left.recount()
            removeChild(r, mergedInto: l)
            return
        }
        let target = total / 2
        if left.keys.count < target {
            let moved = 0..<(target - left.keys.count)
            left.appendSlots(of: right, moved)
            right.removeSlots(moved)
        } else {
            let moved = target..<left.keys.count
            right.prependSlots(of: left, moved)
            left.removeSlots(moved)
        }
        left.recount()
        right.recount()
        keys[r] = right.keys[0]
        counts[l] = left.count
        counts[r] = right.count
    }

    // A slot is a key with its value (leaf) or a separator with its child and that child's count (internal);
    // `keys` has one entry per slot in both kinds.

    @inlinable func appendSlots(of other: OrderedTreeNode, _ range: Range<Int>) {
        keys.append(contentsOf: other.keys[range])
        if isLeaf {
            values.append(contentsOf: other.values[range])
        } else {
            children.append(contentsOf: other.children[range])
            counts.append(contentsOf: other.counts[range])
        }
    }

    @inlinable func prependSlots(of other: OrderedTreeNode, _ range: Range<Int>) {
        keys.insert(contentsOf: other.keys[range], at: 0)
        if isLeaf {
            values.insert(contentsOf: other.values[range], at: 0)
        } else {
            children.insert(contentsOf: other.children[range], at: 0)
            counts.insert(contentsOf: other.counts[range], at: 0)
        }
    }

    @inlinable func removeSlots(_ range: Range<Int>) {
        keys.removeSubrange(range)
        if isLeaf {
            values.removeSubrange(range)
        } else {
            children.removeSubrange(range)
            counts.removeSubrange(range)
        }
    }

    @inlinable func recount() { count = isLeaf ? keys.count : counts.reduce(0, +) }

    @inlinable func removeChild(_ r: Int, mergedInto l: Int) {
        children.remove(at: r)
        keys.remove(at: r)
        counts.remove(at: r)
        counts[l] = children[l].count
    }

    /// Mutates the value of a key known to be present, copying shared nodes on the way down.
    @inlinable func modify<R>(_ key: Key, _ body: (inout Value) throws -> R) rethrows -> R {
        if isLeaf {
            let i = lowerBound(key)
            return try body(&values[i])
        }
        let c = childIndex(for: key)
        uniqueChild(c)
        return try children[c].modify(key, body)
    }

    @inlinable func forEach(_ body: (Key, Value) throws -> Void) rethrows {
        if isLeaf {
            for i in keys.indices { try body(keys[i], values[i]) }
        } else {
            for child in children { try child.forEach(body) }
        }
    }
}
