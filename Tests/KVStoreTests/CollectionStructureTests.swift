import KVStore
import Testing
import UnderstudyKit
import UnderstudyWire

/// Hashes, sets and sorted sets on ordered trees: cursors that survive changes, random picks by rank, rank and
/// range queries against a plain reference, and canonical encodings that did not change with the layout.
@Suite("Collections on ordered trees")
struct CollectionStructureTests {
    /// Applies commands to a state directly, so a test can restore a state from a snapshot and go on.
    struct Driver<S: UnderstudyService> {
        let service: S
        var state: S.State
        var sequence: UInt64 = 0

        init(_ service: S) {
            self.service = service
            state = service.makeInitialState()
        }

        mutating func raw(_ parts: [String]) -> [UInt8] {
            sequence += 1
            var context = RequestContext(sequence: sequence, timeMillis: 1_800_000_000_000,
                                         seed: sequence &* 0x9E37_79B9_7F4A_7C15)
            return service.handle(.command(parts), state: &state, context: &context)
        }

        mutating func call(_ parts: [String]) -> RESPValue { RESPValue.parseAll(raw(parts)) }
    }

    static func strings(_ v: RESPValue) -> [String] {
        guard case .array(let items?) = v else {
            Issue.record("expected an array, got \(v)")
            return []
        }
        return items.map { item in
            if case .bulk(let b?) = item { return String(decoding: b, as: UTF8.self) }
            Issue.record("expected a bulk string, got \(item)")
            return ""
        }
    }

    static func string(_ v: RESPValue) -> String? {
        if case .bulk(let b?) = v { return String(decoding: b, as: UTF8.self) }
        return nil
    }

    static func integer(_ v: RESPValue) -> Int64? {
        if case .integer(let n) = v { return n }
        return nil
    }

    /// One SSCAN/HSCAN/ZSCAN call: the next cursor and the names on the page (every `step`-th item).
    static func scanPage(_ v: RESPValue, step: Int) -> (cursor: String, names: [String]) {
        guard case .array(let top?) = v, top.count == 2, let cursor = string(top[0]) else {
            Issue.record("expected a scan reply, got \(v)")
            return ("0", [])
        }
        let items = strings(top[1])
        return (cursor, stride(from: 0, to: items.count, by: step).map { items[$0] })
    }

    // MARK: (a) cursors

    @Test("SSCAN, HSCAN and ZSCAN return every element present throughout while others come and go",
          arguments: ["SSCAN", "HSCAN", "ZSCAN"])
    func scanWhileChanging(command: String) {
        var d = Driver(KVServiceV2())
        let stable = (0..<5_000).map { "member:\($0)" }
        func add(_ m: String) {
            switch command {
            case "SSCAN": _ = d.raw(["SADD", "c", m])
            case "HSCAN": _ = d.raw(["HSET", "c", m, "v-" + m])
            default: _ = d.raw(["ZADD", "c", String(m.count % 7), m])
            }
        }
        func remove(_ m: String) {
            switch command {
            case "SSCAN": _ = d.raw(["SREM", "c", m])
            case "HSCAN": _ = d.raw(["HDEL", "c", m])
            default: _ = d.raw(["ZREM", "c", m])
            }
        }
        for m in stable { add(m) }
        let doomed = (0..<2_000).map { "doomed:\($0)" }
        for m in doomed { add(m) }
        let encoding = Self.string(d.call(["OBJECT", "ENCODING", "c"]))
        #expect(encoding == (command == "HSCAN" ? "hashtable" : command == "SSCAN" ? "hashtable" : "skiplist"))

        var seen = Set<String>()
        var everPresent = Set(stable).union(doomed)
        var cursor = "0"
        var calls = 0
        var added = 0
        repeat {
            let (next, names) = Self.scanPage(d.call([command, "c", cursor, "COUNT", String(5 + calls % 40)]),
                                              step: command == "SSCAN" ? 1 : 2)
            seen.formUnion(names)
            cursor = next
            calls += 1
            // Between calls: remove a few doomed elements, add new ones (some at positions already passed).
            for _ in 0..<3 where !doomed.isEmpty {
                remove(doomed[(calls * 7919 + added) % doomed.count])
            }
            for _ in 0..<4 {
                let m = "new:\(added)"
                added += 1
                everPresent.insert(m)
                add(m)
            }
        } while cursor != "0" && calls < 10_000
        #expect(cursor == "0")
        #expect(calls < 2_000)
        let missing = stable.filter { !seen.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) elements present throughout were not returned")
        #expect(seen.isSubset(of: everPresent))
    }

    @Test("a scan page ends after COUNT elements, with the next position as the cursor")
    func scanPagesAndValues() {
        var d = Driver(KVServiceV1())
        for i in 0..<1_000 { _ = d.raw(["HSET", "h", "f\(i)", "v\(i)"]) }
        var cursor = "0"
        var all: [String: String] = [:]
        var pages = 0
        repeat {
            guard case .array(let top?) = d.call(["HSCAN", "h", cursor, "COUNT", "100"]), top.count == 2 else {
                Issue.record("bad reply")
                return
            }
            cursor = Self.string(top[0]) ?? "0"
            let items = Self.strings(top[1])
            #expect(items.count == 200 || cursor == "0")
            for j in stride(from: 0, to: items.count, by: 2) { all[items[j]] = items[j + 1] }
            pages += 1
        } while cursor != "0"
        #expect(pages == 10)
        #expect(all.count == 1_000)
        #expect(all.allSatisfy { $0.value == "v" + $0.key.dropFirst() })
        // MATCH filters a page after it is taken; a cursor past the last position ends the scan.
        let filtered = Self.scanPage(d.call(["HSCAN", "h", "0", "COUNT", "2000", "MATCH", "f1?"]), step: 2)
        #expect(filtered.cursor == "0" && Set(filtered.names) == Set((10..<20).map { "f\($0)" }))
        #expect(Self.scanPage(d.call(["HSCAN", "h", "18446744073709551615"]), step: 2) == ("0", []))
    }

    @Test("small collections are still returned whole with cursor 0, in Redis's order")
    func smallCollectionsWhole() {
        var d = Driver(KVServiceV1())
        _ = d.raw(["SADD", "s", "3", "1", "2", "10"])
        _ = d.raw(["HSET", "h", "b", "1", "a", "2", "c", "3"])
        _ = d.raw(["ZADD", "z", "3", "c", "1", "b", "2", "a", "-inf", "d"])
        #expect(Self.scanPage(d.call(["SSCAN", "s", "0", "COUNT", "1"]), step: 1) == ("0", ["1", "10", "2", "3"]))
        #expect(Self.scanPage(d.call(["HSCAN", "h", "0", "COUNT", "1"]), step: 2) == ("0", ["a", "b", "c"]))
        #expect(Self.scanPage(d.call(["ZSCAN", "z", "0", "COUNT", "1"]), step: 2) == ("0", ["d", "b", "a", "c"]))
    }

    // MARK: (b) random picks

    @Test("random picks on 100 000-element collections, 10 000 times each: members only, distinct where required")
    func randomPicksOnLargeCollections() {
        var d = Driver(KVServiceV2())
        let n = 100_000
        let names = (0..<n).map { "m:\($0)" }
        for chunk in stride(from: 0, to: n, by: 1_000) {
            let part = names[chunk..<(chunk + 1_000)]
            _ = d.raw(["SADD", "s"] + part)
            _ = d.raw(["HSET", "h"] + part.flatMap { [$0, "v" + $0] })
            _ = d.raw(["ZADD", "z"] + part.flatMap { [String($0.count), $0] })
        }
        #expect(Self.integer(d.call(["SCARD", "s"])) == Int64(n))
        let members = Set(names)
        var bad = 0
        for i in 0..<10_000 {
            if let m = Self.string(d.call(["SRANDMEMBER", "s"])), members.contains(m) {} else { bad += 1 }
            if let f = Self.string(d.call(["HRANDFIELD", "h"])), members.contains(f) {} else { bad += 1 }
            if let m = Self.string(d.call(["ZRANDMEMBER", "z"])), members.contains(m) {} else { bad += 1 }
            if i % 10 == 0 {
                let distinct = Self.strings(d.call(["SRANDMEMBER", "s", "5"]))
                if distinct.count != 5 || Set(distinct).count != 5 || !distinct.allSatisfy(members.contains) { bad += 1 }
                let repeated = Self.strings(d.call(["SRANDMEMBER", "s", "-7"]))
                if repeated.count != 7 || !repeated.allSatisfy(members.contains) { bad += 1 }
                let pairs = Self.strings(d.call(["HRANDFIELD", "h", "4", "WITHVALUES"]))
                let fields = stride(from: 0, to: pairs.count, by: 2).map { pairs[$0] }
                if pairs.count != 8 || Set(fields).count != 4
                    || !stride(from: 0, to: pairs.count, by: 2).allSatisfy({ pairs[$0 + 1] == "v" + pairs[$0] }) { bad += 1 }
                let scored = Self.strings(d.call(["ZRANDMEMBER", "z", "3", "WITHSCORES"]))
                let zm = stride(from: 0, to: scored.count, by: 2).map { scored[$0] }
                if scored.count != 6 || Set(zm).count != 3
                    || !stride(from: 0, to: scored.count, by: 2).allSatisfy({ scored[$0 + 1] == String(scored[$0].count) }) {
                    bad += 1
                }
            }
        }
        #expect(bad == 0)
        // SPOP: every pop is a member not popped before; the set shrinks by one each time.
        var popped = Set<String>()
        for i in 0..<10_000 {
            if i % 100 == 0 {
                for m in Self.strings(d.call(["SPOP", "s", "3"])) where !members.contains(m) || !popped.insert(m).inserted {
                    bad += 1
                }
            } else if let m = Self.string(d.call(["SPOP", "s"])), members.contains(m), popped.insert(m).inserted {
            } else {
                bad += 1
            }
        }
        #expect(bad == 0)
        #expect(Self.integer(d.call(["SCARD", "s"])) == Int64(n - popped.count))
        for m in popped.prefix(100) { #expect(Self.integer(d.call(["SISMEMBER", "s", m])) == 0) }
    }

    @Test("random picks depend on the contents only: a state restored from a snapshot picks as the live one does")
    func picksSurviveSnapshots() throws {
        var live = Driver(KVServiceV1())
        for i in 0..<3_000 {
            _ = live.raw(["SADD", "s", "m\(i)"])
            _ = live.raw(["HSET", "h", "f\(i)", "v\(i)"])
            _ = live.raw(["ZADD", "z", String(i % 17), "m\(i)"])
            if i % 3 == 0 { _ = live.raw(["SREM", "s", "m\(i / 2)"]) }
        }
        var restored = Driver(KVServiceV1())
        try restored.state.load(from: try StateSnapshot(bytes: live.state.encodeSnapshot(schemaVersion: 1,
                                                                                         sequence: live.sequence)))
        restored.sequence = live.sequence
        #expect(restored.state.digest(sequence: 0) == live.state.digest(sequence: 0))
        let commands: [[String]] = [["SPOP", "s"], ["SRANDMEMBER", "s", "-3"], ["SPOP", "s", "4"], ["HRANDFIELD", "h", "3"],
                                    ["ZRANDMEMBER", "z", "-2", "WITHSCORES"], ["SRANDMEMBER", "s", "6"], ["HRANDFIELD", "h"]]
        for i in 0..<700 {
            let c = commands[i % commands.count]
            #expect(live.raw(c) == restored.raw(c))
        }
        #expect(restored.state.digest(sequence: 0) == live.state.digest(sequence: 0))
    }

    // MARK: (c) sorted-set queries against a reference

    /// A sorted set as a dictionary, sorted on demand.
    struct Reference {
        var scores: [String: Double] = [:]
        var sorted: [(member: String, score: Double)] {
            scores.map { ($0.key, $0.value) }.sorted {
                $0.score != $1.score ? $0.score < $1.score : Array($0.member.utf8).lexicographicallyPrecedes(Array($1.member.utf8))
            }
        }
    }

    static let scorePool: [(String, Double)] = [
        ("-inf", -.infinity), ("inf", .infinity), ("+inf", .infinity), ("-0", 0), ("0", 0), ("1", 1), ("1", 1),
        ("-1", -1), ("2.5", 2.5), ("-2.5", -2.5), ("0.1", 0.1), ("1e300", 1e300), ("-1e300", -1e300), ("7", 7),
        ("5e-324", .leastNonzeroMagnitude), ("-5e-324", -.leastNonzeroMagnitude),
    ]
    static let boundPool = ["-inf", "+inf", "(-inf", "(inf", "-0", "(-0", "0", "(0", "1", "(1", "2.5", "(2.5", "-1", "(-1",
                            "1e300", "(1e300", "5e-324", "(5e-324", "-5e-324", "(-5e-324", "3", "(-3"]

    static func boundValue(_ b: String) -> (Double, Bool) {
        let exclusive = b.hasPrefix("(")
        let text = exclusive ? String(b.dropFirst()) : b
        return (Double(text)!, exclusive)
    }

    @Test("ranks and ranges by rank, score and lex match a sorted-array reference under ZADD, ZINCRBY and ZREM")
    func sortedSetAgainstReference() {
        var d = Driver(KVServiceV2())
        var ref = Reference()
        var rng = SeededRNG(seed: 0x5A5E7)
        let memberPool = (0..<400).map { i in i % 50 == 0 ? "" + String(repeating: "long-member-", count: 3) + "\(i)" : "m\(i)" }
            + ["", "a\u{0}", "a", "b"]
        var checks = 0
        for step in 0..<6_000 {
            let m = memberPool[rng.int(memberPool.count)]
            switch rng.int(10) {
            case 0, 1, 2, 3:
                let (text, value) = Self.scorePool[rng.int(Self.scorePool.count)]
                _ = d.raw(["ZADD", "z", text, m])
                ref.scores[m] = value == 0 ? 0 : value
            case 4, 5:
                let (text, value) = Self.scorePool[rng.int(Self.scorePool.count)]
                let reply = d.call(["ZINCRBY", "z", text, m])
                let sum = (ref.scores[m] ?? 0) + value
                if sum.isNaN {
                    #expect(reply == .error(Array("ERR resulting score is not a number (NaN)".utf8)))
                } else {
                    ref.scores[m] = sum == 0 ? 0 : sum
                    #expect(Self.string(reply).flatMap { Double($0) } == sum)
                }
            case 6:
                _ = d.raw(["ZREM", "z", m])
                ref.scores[m] = nil
            default:
                break
            }
            guard step % 5 == 0 else { continue }
            let sorted = ref.sorted
            let n = sorted.count
            #expect(Self.integer(d.call(["ZCARD", "z"])) == Int64(n))
            // ZRANK / ZREVRANK of a present or absent member.
            let probe = memberPool[rng.int(memberPool.count)]
            let rank = sorted.firstIndex { $0.member == probe }
            #expect(Self.integer(d.call(["ZRANK", "z", probe])) == rank.map(Int64.init))
            #expect(Self.integer(d.call(["ZREVRANK", "z", probe])) == rank.map { Int64(n - 1 - $0) })
            // ZRANGE by rank, forward and reverse, with negative indices.
            let start = rng.int(2 * n + 4) - n - 2, end = rng.int(2 * n + 4) - n - 2
            var s = start < 0 ? n + start : start, e = end < 0 ? n + end : end
            s = max(s, 0)
            e = min(e, n - 1)
            let byRank = s > e || s >= n ? [] : sorted[s...e].map(\.member)
            #expect(Self.strings(d.call(["ZRANGE", "z", String(start), String(end)])) == byRank)
            #expect(Self.strings(d.call(["ZRANGE", "z", String(start), String(end), "REV"]))
                    == (s > e || s >= n ? [] : sorted.reversed()[s...e].map(\.member)))
            // By score, with inclusive and exclusive bounds, infinities and -0, and a LIMIT.
            let minArg = Self.boundPool[rng.int(Self.boundPool.count)], maxArg = Self.boundPool[rng.int(Self.boundPool.count)]
            let (lo, loEx) = Self.boundValue(minArg), (hi, hiEx) = Self.boundValue(maxArg)
            let inRange = sorted.filter { (loEx ? $0.score > lo : $0.score >= lo) && (hiEx ? $0.score < hi : $0.score <= hi) }
            #expect(Self.integer(d.call(["ZCOUNT", "z", minArg, maxArg])) == Int64(inRange.count))
            #expect(Self.strings(d.call(["ZRANGEBYSCORE", "z", minArg, maxArg])) == inRange.map(\.member))
            #expect(Self.strings(d.call(["ZREVRANGEBYSCORE", "z", maxArg, minArg])) == inRange.reversed().map(\.member))
            let offset = rng.int(5), limit = rng.int(6) - 1
            let limited = inRange.dropFirst(offset).prefix(limit < 0 ? Int.max : limit).map(\.member)
            #expect(Self.strings(d.call(["ZRANGE", "z", minArg, maxArg, "BYSCORE", "LIMIT", String(offset), String(limit)]))
                    == limited)
            if let first = sorted.first {
                #expect(Self.string(d.call(["ZRANGE", "z", "0", "0", "WITHSCORES"]).arrayItem(1)).flatMap { Double($0) }
                        == first.score)
            }
            checks += 1
        }
        #expect(checks > 1_000)
        // Removals by rank and by score, and pops from both ends, against the reference.
        for _ in 0..<40 {
            var sorted = ref.sorted
            guard !sorted.isEmpty else { break }
            let minArg = Self.boundPool[rng.int(Self.boundPool.count)], maxArg = Self.boundPool[rng.int(Self.boundPool.count)]
            let (lo, loEx) = Self.boundValue(minArg), (hi, hiEx) = Self.boundValue(maxArg)
            let doomed = sorted.filter { (loEx ? $0.score > lo : $0.score >= lo) && (hiEx ? $0.score < hi : $0.score <= hi) }
            #expect(Self.integer(d.call(["ZREMRANGEBYSCORE", "z", minArg, maxArg])) == Int64(doomed.count))
            for x in doomed { ref.scores[x.member] = nil }
            sorted = ref.sorted
            let a = rng.int(5), b = a + rng.int(5)
            let removed = a >= sorted.count ? 0 : min(b, sorted.count - 1) - a + 1
            #expect(Self.integer(d.call(["ZREMRANGEBYRANK", "z", String(a), String(b)])) == Int64(removed))
            if removed > 0 { for x in sorted[a...min(b, sorted.count - 1)] { ref.scores[x.member] = nil } }
            sorted = ref.sorted
            let popMin = Self.strings(d.call(["ZPOPMIN", "z", "2"]))
            #expect(stride(from: 0, to: popMin.count, by: 2).map { popMin[$0] } == sorted.prefix(2).map(\.member))
            for x in sorted.prefix(2) { ref.scores[x.member] = nil }
            sorted = ref.sorted
            let popMax = Self.strings(d.call(["ZPOPMAX", "z", "2"]))
            #expect(stride(from: 0, to: popMax.count, by: 2).map { popMax[$0] } == sorted.reversed().prefix(2).map(\.member))
            for x in sorted.reversed().prefix(2) { ref.scores[x.member] = nil }
        }
        #expect(Self.strings(d.call(["ZRANGE", "z", "0", "-1"])) == ref.sorted.map(\.member))
    }

    @Test("lexicographic ranges on equal scores match a sorted-array reference")
    func lexRangesAgainstReference() {
        var d = Driver(KVServiceV1())
        var rng = SeededRNG(seed: 0x1E7)
        var members = Set<String>()
        let pool = (0..<300).map { "w\($0 * 7919 % 1000)" } + ["", "a", "a\u{0}", "b", "w", "w1", "w10", "x"]
        for m in pool where rng.int(3) != 0 {
            _ = d.raw(["ZADD", "z", "0", m])
            members.insert(m)
        }
        let sorted = members.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let bounds = ["-", "+", "[", "(", "[a", "(a", "[a\u{0}", "(a\u{0}", "[w1", "(w1", "[w5", "(w5", "[w999", "(x", "[x", "[zz"]
        func test(_ b: String, _ s: String, lower: Bool) -> Bool {
            if b == "-" { return lower }
            if b == "+" { return !lower }
            let v = Array(b.dropFirst().utf8), x = Array(s.utf8)
            let exclusive = b.hasPrefix("(")
            if lower { return exclusive ? v.lexicographicallyPrecedes(x) : !x.lexicographicallyPrecedes(v) }
            return exclusive ? x.lexicographicallyPrecedes(v) : !v.lexicographicallyPrecedes(x)
        }
        for lo in bounds {
            for hi in bounds {
                let expected = sorted.filter { test(lo, $0, lower: true) && test(hi, $0, lower: false) }
                #expect(Self.strings(d.call(["ZRANGEBYLEX", "z", lo, hi])) == expected, "\(lo) \(hi)")
                #expect(Self.integer(d.call(["ZLEXCOUNT", "z", lo, hi])) == Int64(expected.count))
                #expect(Self.strings(d.call(["ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", "1", "3"]))
                        == Array(expected.reversed().dropFirst(1).prefix(3)))
            }
        }
    }

    @Test("score bounds of the structure match a scan: ±inf, -0, neighbours of present scores")
    func scoreBoundsDirect() {
        var z = KVSortedSet()
        var rng = SeededRNG(seed: 99)
        let scores: [Double] = [-.infinity, -1e300, -1, -.leastNonzeroMagnitude, 0, .leastNonzeroMagnitude, 0.5, 1, 1, 2, 1e300, .infinity]
        for i in 0..<3_000 { z.set(Array("m\(i)".utf8), scores[rng.int(scores.count)]) }
        z.set(Array("neg-zero".utf8), -0.0)
        #expect(z.score(Array("neg-zero".utf8))?.sign == .plus)
        let all = z.elements
        #expect(all.count == z.count)
        #expect(zip(all, all.dropFirst()).allSatisfy { KVSortedSet.Element.lessForTests($0, $1) })
        let probes = scores + scores.flatMap { [$0.nextUp, $0.nextDown] }.filter { !$0.isNaN } + [-0.0]
        for p in probes {
            #expect(z.rank(ofScore: p, inclusive: false) == all.filter { $0.score < p }.count, "below \(p)")
            #expect(z.rank(ofScore: p, inclusive: true) == all.filter { $0.score <= p }.count, "up to \(p)")
        }
        for r in stride(from: 0, to: all.count, by: 97) {
            #expect(z[r] == all[r])
            #expect(z.rank(all[r].member) == r)
        }
    }

    // MARK: (d) canonical encodings

    /// The canonical bytes and digests the array-and-dictionary layout produced for these values (recorded from it).
    static let recorded: [(type: String, digest: UInt64, hex: String)] = [
        ("hash", 2_648_643_446_509_077_681,
         "020820612d6d7563682d6c6f6e6765722d6669656c642d6e616d652d6f7665722d313500076669656c642d310776616c75652d3708"
            + "6669656c642d31350976616c75652d313035076669656c642d320876616c75652d3134076669656c642d330876616c75652d3231"
            + "076669656c642d340876616c75652d3238076669656c642d360876616c75652d3432076669656c642d390876616c75652d3633"),
        ("set", 3_204_722_672_278_574_879,
         "030700023130016122612d6d7563682d6c6f6e6765722d6d656d6265722d6f7665722d31352d62797465730162036d0078027a7a"),
        ("zset", 15_506_377_338_002_522_375,
         "0408026d32000000000000f0ff0000000000000000c0026d340000000000000000026d359a9999999999b93f026d31000000000000"
            + "f83f026d36000000000000f83f22612d6d7563682d6c6f6e6765722d6d656d6265722d6f7665722d31352d6279746573000000"
            + "0000000840026d33000000000000f07f"),
    ]

    /// The hash, set and sorted set the recorded bytes are of, built in a given insertion order.
    static func sampleValues(reversed: Bool) -> [KVValue] {
        var h = KVHash()
        var hashFields = [3, 1, 4, 15, 9, 2, 6].map { (Array("field-\($0)".utf8), Array("value-\($0 * 7)".utf8)) }
        hashFields.append((Array("a-much-longer-field-name-over-15".utf8), []))
        if reversed {
            hashFields.reverse()
            h.set(hashFields[0].0, Array("overwritten".utf8))
            h.set(Array("removed".utf8), [1])
            h.remove(Array("removed".utf8))
        }
        for (f, v) in hashFields { h.set(f, v) }
        var s = KVSet()
        var setMembers = ["b", "a", "", "zz", "a-much-longer-member-over-15-bytes", "m\u{0}x", "10"]
        if reversed {
            setMembers.reverse()
            s.insert(Array("gone".utf8))
            s.remove(Array("gone".utf8))
        }
        for m in setMembers { s.insert(Array(m.utf8)) }
        var z = KVSortedSet()
        var zsetPairs: [(String, Double)] = [("m1", 1.5), ("m2", -.infinity), ("m3", .infinity), ("m4", -0.0), ("m5", 0.1),
                                             ("m6", 1.5), ("a-much-longer-member-over-15-bytes", 3), ("", -2)]
        if reversed {
            zsetPairs.reverse()
            for (m, sc) in zsetPairs { z.set(Array(m.utf8), sc + 10) }
        }
        for (m, sc) in zsetPairs { z.set(Array(m.utf8), sc) }
        return [.hash(h), .set(s), .zset(z)]
    }

    /// The documented format written independently: tag, count, then entries in byte order of the name (sorted
    /// sets: in (score, member) order, the score as its IEEE 754 bits, -0 as 0).
    static func expectedBytes(_ v: KVValue) -> [UInt8] {
        var w = ByteWriter()
        func byBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool { a.lexicographicallyPrecedes(b) }
        switch v {
        case .hash(let h):
            var pairs: [([UInt8], [UInt8])] = []
            h.fields.forEach { pairs.append(($0.bytes, $1)) }
            pairs.sort { byBytes($0.0, $1.0) }
            w.write(UInt8(2))
            w.writeVarint(UInt64(pairs.count))
            for (f, x) in pairs {
                w.writeBytes(f)
                w.writeBytes(x)
            }
        case .set(let s):
            var members: [[UInt8]] = []
            s.members.forEach { k, _ in members.append(k.bytes) }
            members.sort(by: byBytes)
            w.write(UInt8(3))
            w.writeVarint(UInt64(members.count))
            for m in members { w.writeBytes(m) }
        case .zset(let z):
            var pairs: [([UInt8], Double)] = []
            z.scores.forEach { pairs.append(($0.bytes, $1)) }
            pairs.sort { $0.1 != $1.1 ? $0.1 < $1.1 : byBytes($0.0, $1.0) }
            w.write(UInt8(4))
            w.writeVarint(UInt64(pairs.count))
            for (m, sc) in pairs {
                w.writeBytes(m)
                w.write((sc == 0 ? 0 : sc).bitPattern)
            }
        default:
            Issue.record("not a collection")
        }
        return w.bytes
    }

    @Test("canonical encodings and digests are those of the previous layout, whatever the insertion order")
    func canonicalEncodingUnchanged() throws {
        let forward = Self.sampleValues(reversed: false)
        let backward = Self.sampleValues(reversed: true)
        #expect(Self.recorded.count == forward.count)
        for (i, v) in forward.enumerated() {
            let bytes = v.canonicalBytes
            #expect(bytes == backward[i].canonicalBytes)
            #expect(v.stableDigest() == backward[i].stableDigest())
            #expect(bytes == Self.expectedBytes(v))
            if i < Self.recorded.count {
                #expect(v.typeName == Self.recorded[i].type)
                #expect(bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
                            .joined() == Self.recorded[i].hex)
                #expect(v.stableDigest() == Self.recorded[i].digest)
            }
            let decoded = try KVValue(canonicalBytes: bytes)
            #expect(decoded.canonicalBytes == bytes)
            #expect(decoded.stableDigest() == v.stableDigest())
        }
    }

    @Test("larger collections round-trip and keep their digests through encodings and through insertion order")
    func largeRoundTrip() throws {
        var rng = SeededRNG(seed: 7)
        var a = KVSet(), b = KVSet()
        var h1 = KVHash(), h2 = KVHash()
        var z1 = KVSortedSet(), z2 = KVSortedSet()
        let items = (0..<2_000).map { i in Array((i % 3 == 0 ? "long-item-name-number-\(i)" : "i\(i)").utf8) }
        for (i, m) in items.enumerated() {
            a.insert(m)
            h1.set(m, Array("\(i)".utf8))
            z1.set(m, Double(rng.int(50)) - 25)
        }
        for (i, m) in items.enumerated().reversed() {
            b.insert(m)
            h2.set(m, Array("\(i)".utf8))
        }
        for e in z1.elements.reversed() { z2.set(e.member, e.score) }
        for (x, y) in [(KVValue.set(a), KVValue.set(b)), (.hash(h1), .hash(h2)), (.zset(z1), .zset(z2))] {
            #expect(x.canonicalBytes == y.canonicalBytes)
            #expect(x.stableDigest() == y.stableDigest())
            #expect(x.canonicalBytes == Self.expectedBytes(x))
            let decoded = try KVValue(canonicalBytes: x.canonicalBytes)
            #expect(decoded.canonicalBytes == x.canonicalBytes && decoded.stableDigest() == x.stableDigest())
        }
    }
}

extension KVSortedSet.Element {
    /// Redis's order, for checks.
    static func lessForTests(_ a: Self, _ b: Self) -> Bool {
        a.score != b.score ? a.score < b.score : a.member.lexicographicallyPrecedes(b.member)
    }
}

extension RESPValue {
    /// The item at an index of an array reply (`.null` when there is none).
    func arrayItem(_ i: Int) -> RESPValue {
        if case .array(let items?) = self, i < items.count { return items[i] }
        return .bulk(nil)
    }
}

