import Testing
import UnderstudyWire

@testable import UnderstudyKit

extension TestRandom {
    /// A number in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// Checks every structural invariant of the tree: ordering, separators, counts, fill.
private func checkInvariants<K, V>(_ tree: OrderedTree<K, V>) {
    guard let root = tree.root else { return }
    // Every node but the root and those on the right edge (where sorted appends split off a small node)
    // keeps the minimum.
    func walk(_ node: OrderedTreeNode<K, V>, lower: K?, upper: K?, isRoot: Bool, rightEdge: Bool) -> (count: Int, depth: Int) {
        let size = node.isLeaf ? node.keys.count : node.children.count
        if !isRoot && !rightEdge { #expect(size >= OrderedTreeNode<K, V>.minimum) }
        #expect(size >= 1)
        if node.isLeaf {
            #expect(node.keys.count == node.values.count)
            #expect(node.keys.count <= OrderedTreeNode<K, V>.capacity)
            for i in node.keys.indices {
                if i > 0 { #expect(node.keys[i - 1] < node.keys[i]) }
                if let lower { #expect(lower <= node.keys[i]) }
                if let upper { #expect(node.keys[i] < upper) }
            }
            #expect(node.count == node.keys.count)
            return (node.keys.count, 1)
        }
        #expect(node.children.count == node.keys.count)
        #expect(node.children.count == node.counts.count)
        #expect(node.children.count <= OrderedTreeNode<K, V>.capacity)
        if isRoot { #expect(node.children.count >= 2) }
        var total = 0
        var depth: Int?
        for i in node.children.indices {
            let lo = i == 0 ? lower : node.keys[i]
            let hi = i + 1 < node.keys.count ? node.keys[i + 1] : upper
            let (c, d) = walk(node.children[i], lower: lo, upper: hi, isRoot: false,
                              rightEdge: rightEdge && i == node.children.count - 1)
            #expect(c == node.counts[i])
            if let depth { #expect(depth == d) } else { depth = d }
            total += c
        }
        #expect(total == node.count)
        return (total, depth! + 1)
    }
    let (count, _) = walk(root, lower: nil, upper: nil, isRoot: true, rightEdge: true)
    #expect(count == tree.count)
}

@Suite("OrderedTree")
struct OrderedTreeTests {
    @Test("An empty tree answers every query")
    func empty() {
        var t = OrderedTree<Int, Int>()
        #expect(t.isEmpty && t.count == 0)
        #expect(t[5] == nil)
        #expect(t.rank(of: 5) == 0)
        #expect(t.first == nil && t.last == nil)
        #expect(Array(t.entries()).isEmpty)
        #expect(t.removeValue(forKey: 1) == nil)
        #expect(t.modifyValue(forKey: 1) { $0 += 1 } == nil)
        #expect(t.isEmpty)
    }

    @Test("Random inserts, removals and updates agree with a sorted reference, with every invariant kept",
          arguments: [1, 2, 3, 4])
    func randomAgainstReference(seed: UInt64) {
        var rng = TestRandom(seed: seed)
        var tree = OrderedTree<Int, Int>()
        var reference: [Int: Int] = [:]
        let keySpace = [50, 500, 5_000, 50_000][Int(seed - 1)]
        for step in 0..<40_000 {
            let k = rng.below(keySpace)
            switch rng.below(10) {
            case 0..<5:
                let v = rng.below(1_000_000)
                #expect(tree.updateValue(v, forKey: k) == reference.updateValue(v, forKey: k))
            case 5..<9:
                #expect(tree.removeValue(forKey: k) == reference.removeValue(forKey: k))
            default:
                let r = tree.modifyValue(forKey: k) { v -> Int in
                    v += 1
                    return v
                }
                if reference[k] != nil { reference[k]! += 1 }
                #expect(r == reference[k])
            }
            if step % 5_000 == 0 { checkInvariants(tree) }
        }
        checkInvariants(tree)
        let sorted = reference.sorted { $0.key < $1.key }
        #expect(tree.count == sorted.count)
        #expect(tree.entries().map(\.key) == sorted.map(\.key))
        #expect(tree.entries().map(\.value) == sorted.map(\.value))
        var visited: [Int] = []
        tree.forEach { k, _ in visited.append(k) }
        #expect(visited == sorted.map(\.key))
        // Order statistics against the sorted reference.
        for _ in 0..<500 where !sorted.isEmpty {
            let r = rng.below(sorted.count)
            #expect(tree.entry(atRank: r).key == sorted[r].key)
            #expect(tree.rank(of: sorted[r].key) == r)
            let probe = rng.below(keySpace + 2) - 1
            #expect(tree.rank(of: probe) == sorted.filter { $0.key < probe }.count)
            #expect(Array(tree.entries(from: probe).prefix(3)).map(\.key)
                    == Array(sorted.filter { $0.key >= probe }.prefix(3)).map(\.key))
            #expect(Array(tree.entries(fromRank: r)).count == sorted.count - r)
        }
        // Remove everything, in random order.
        var keys = sorted.map(\.key)
        while !keys.isEmpty {
            let i = rng.below(keys.count)
            #expect(tree.removeValue(forKey: keys[i]) != nil)
            keys.swapAt(i, keys.count - 1)
            keys.removeLast()
            if keys.count % 997 == 0 { checkInvariants(tree) }
        }
        #expect(tree.isEmpty && tree.root == nil)
    }

    @Test("Copies are independent: writes to one never show in the other, and unchanged nodes stay shared")
    func persistence() {
        var a = OrderedTree<Int, [Int]>()
        for k in 0..<20_000 { a.updateValue([k], forKey: k * 2) }
        let snapshot = a
        var b = a
        for k in stride(from: 0, to: 20_000, by: 7) { b.removeValue(forKey: k * 2) }
        for k in 0..<500 { b.updateValue([-k], forKey: k * 2 + 1) }
        b.modifyValue(forKey: 2) { $0.append(99) }
        a.updateValue([1, 2, 3], forKey: 40_000)
        #expect(snapshot.count == 20_000)
        #expect(snapshot[2] == [1])
        #expect(snapshot[40_000] == nil)
        #expect(snapshot.entries().map(\.key) == (0..<20_000).map { $0 * 2 })
        #expect(a.count == 20_001 && a[40_000] == [1, 2, 3] && a[3] == nil)
        #expect(b[2] == [1, 99] && b[0] == nil && b[3] == [-1])
        checkInvariants(a)
        checkInvariants(b)
        checkInvariants(snapshot)
        // A write to a copy copies only its path: the other leaves are the very same objects.
        var c = snapshot
        c.updateValue([7], forKey: 10)
        var shared = 0
        var total = 0
        for (x, y) in zip(snapshot.root!.children, c.root!.children) {
            total += 1
            if x === y { shared += 1 }
        }
        #expect(total > 1 && shared == total - 1)
    }

    @Test("Sorted appends (a snapshot restore) fill leaves completely")
    func fill() {
        var sortedLoad = OrderedTree<Int, Int>()
        for k in 0..<64 * 100 { sortedLoad.updateValue(k, forKey: k) }
        var leaves = 0
        func countLeaves(_ n: OrderedTreeNode<Int, Int>) {
            if n.isLeaf { leaves += 1 } else { n.children.forEach(countLeaves) }
        }
        countLeaves(sortedLoad.root!)
        #expect(leaves == 100)
        checkInvariants(sortedLoad)
    }

    @Test("Keys of a tracked map: inline up to 15 bytes, equal and ordered by position then bytes",
          arguments: [0, 1, 7, 8, 9, 15, 16, 17, 300])
    func trackedKeys(length: Int) {
        let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        let k = TrackedKey(bytes)
        #expect(k.bytes == bytes)
        #expect(k.byteCount == length)
        #expect(k.withBytes { Array($0) } == bytes)
        if case .inline = k.storage { #expect(length <= 15) } else { #expect(length > 15) }
        #expect(k == TrackedKey(bytes))
        var longer = bytes
        longer.append(0)
        #expect(k != TrackedKey(longer))
        // Same position, different bytes: ordered by bytes, then length.
        let a = TrackedKey(position: 9, bytes: bytes)
        let b = TrackedKey(position: 9, bytes: longer)
        #expect(a < b && !(b < a) && a != b)
        #expect(TrackedKey(position: 8, bytes: longer) < a)
    }
}
