import UnderstudyKit

/// Redis's bitfield arithmetic (`getUnsignedBitfield`, `checkSignedBitfieldOverflow` and their kin), bit for bit.
enum Bitfield {
    enum Overflow { case wrap, sat, fail }

    static func getUnsigned(_ p: [UInt8], _ offset: Int, _ bits: Int) -> UInt64 {
        var value: UInt64 = 0
        for j in 0..<bits {
            let o = offset + j
            let byte = o >> 3
            let bit = 7 - (o & 7)
            let v = byte < p.count ? (p[byte] >> bit) & 1 : 0
            value = (value << 1) | UInt64(v)
        }
        return value
    }

    static func getSigned(_ p: [UInt8], _ offset: Int, _ bits: Int) -> Int64 {
        var value = getUnsigned(p, offset, bits)
        if bits < 64 && value & (1 << (bits - 1)) != 0 { value |= UInt64.max << bits }
        return Int64(bitPattern: value)
    }

    static func set(_ p: inout [UInt8], _ offset: Int, _ bits: Int, _ value: UInt64) {
        for j in 0..<bits {
            let bitval = (value >> UInt64(bits - 1 - j)) & 1
            let o = offset + j
            let byte = o >> 3
            let bit = 7 - (o & 7)
            if bitval == 1 { p[byte] |= 1 << bit } else { p[byte] &= ~(1 << bit) }
        }
    }

    /// 0: no overflow; otherwise the value to store (wrapped or saturated) is in `limit`.
    static func checkUnsigned(_ value: UInt64, _ incr: Int64, _ bits: Int, _ ow: Overflow, _ limit: inout UInt64) -> Int {
        let max: UInt64 = bits == 64 ? .max : (1 << bits) - 1
        let maxincr = Int64(bitPattern: max &- value)
        let minincr = Int64(bitPattern: 0 &- value)
        func wrap() -> Int {
            limit = (value &+ UInt64(bitPattern: incr)) & ~(UInt64.max << bits)
            return 1
        }
        if value > max || (incr > 0 && incr > maxincr) {
            if ow == .wrap { return wrap() }
            if ow == .sat { limit = max }
            return 1
        } else if incr < 0 && incr < minincr {
            if ow == .wrap { return wrap() }
            if ow == .sat { limit = 0 }
            return -1
        }
        return 0
    }

    static func checkSigned(_ value: Int64, _ incr: Int64, _ bits: Int, _ ow: Overflow, _ limit: inout Int64) -> Int {
        let max: Int64 = bits == 64 ? .max : (1 << (bits - 1)) - 1
        let min = -max - 1
        let maxincr = Int64(bitPattern: UInt64(bitPattern: max) &- UInt64(bitPattern: value))
        let minincr = min &- value
        func wrap() -> Int {
            let msb: UInt64 = 1 << (bits - 1)
            var c = UInt64(bitPattern: value) &+ UInt64(bitPattern: incr)
            if bits < 64 {
                let mask = UInt64.max << bits
                if c & msb != 0 { c |= mask } else { c &= ~mask }
            }
            limit = Int64(bitPattern: c)
            return 1
        }
        if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
            if ow == .wrap { return wrap() }
            if ow == .sat { limit = max }
            return 1
        } else if value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr) {
            if ow == .wrap { return wrap() }
            if ow == .sat { limit = min }
            return -1
        }
        return 0
    }
}

/// One BITFIELD operation.
struct BitfieldOp {
    enum Code { case get, set, incrby }
    var code: Code
    var offset: Int
    var bits: Int
    var signed: Bool
    var value: Int64
    var overflow: Bitfield.Overflow
}

extension Reply {
    static let bitOffsetInvalid = Reply.error("ERR bit offset is not an integer or out of range")
}

/// Redis's `redisBitpos` over a bit range: the first bit equal to `bit` in `[from, to]` (bit positions), or nil.
func firstBit(_ s: [UInt8], _ bit: Bool, from: Int, to: Int) -> Int? {
    var i = from
    while i <= to {
        // Whole bytes that cannot match are skipped a byte at a time.
        if i & 7 == 0 && i + 7 <= to && s[i >> 3] == (bit ? 0 : 0xFF) {
            i += 8
            continue
        }
        if (s[i >> 3] >> (7 - (i & 7))) & 1 == (bit ? 1 : 0) { return i }
        i += 1
    }
    return nil
}

extension KVStorage {
    mutating func bitCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        switch name {
        case "setbit": return cmdSetbit(a, &env)
        case "getbit":
            guard let offset = Self.bitOffset(a[2], hash: false, bits: 0) else { return .bitOffsetInvalid }
            switch getString(a[1], &env) {
            case .failure(let e): return e.reply
            case .success(nil): return .integer(0)
            case .success(let s?):
                let byte = offset >> 3
                guard byte < s.count else { return .integer(0) }
                return .integer(Int64((s[byte] >> (7 - (offset & 7))) & 1))
            }
        case "bitcount": return cmdBitcount(a, &env)
        case "bitpos": return cmdBitpos(a, &env)
        case "bitop": return cmdBitop(a, &env)
        case "bitfield", "bitfield_ro": return cmdBitfield(a, readOnly: name == "bitfield_ro", &env)
        case "lcs": return cmdLcs(a, &env)
        default: return .error("ERR unknown command '\(name)'")
        }
    }

    /// `getBitOffsetFromArgument`: a bit offset below 2^32 (512 MB), `#n` meaning n × `bits` where allowed.
    static func bitOffset(_ b: [UInt8], hash: Bool, bits: Int) -> Int? {
        let useHash = hash && bits > 0 && b.first == UInt8(ascii: "#")
        guard var n = RedisNumber.parseInt(useHash ? Array(b.dropFirst()) : b) else { return nil }
        if useHash { n = n &* Int64(bits) }
        if n < 0 || (n >> 3) >= Int64(maxStringLength) { return nil }
        return Int(n)
    }

    /// `lookupStringForBitCommand`: the string at `key`, grown with zero bytes to hold bit `maxBit`, created when
    /// absent (its expiry kept). Nil on WRONGTYPE.
    mutating func growBitString<R>(_ key: [UInt8], maxBit: Int, _ env: inout KVEnvironment, _ body: (inout [UInt8]) -> R) -> R? {
        let byte = maxBit >> 3
        switch kind(key, &env) {
        case nil:
            var s = [UInt8](repeating: 0, count: byte + 1)
            let r = body(&s)
            write(key, .string(s), expireAt: kvNoExpiry, now: env.now)
            return r
        case .string:
            return modify(key, now: env.now) { v -> R? in
                guard case .string(var s)? = v else { return nil }
                v = nil
                if s.count < byte + 1 { s.append(contentsOf: repeatElement(0, count: byte + 1 - s.count)) }
                let r = body(&s)
                v = .string(s)
                return r
            }
        default: return nil
        }
    }

    mutating func cmdSetbit(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let offset = Self.bitOffset(a[2], hash: false, bits: 0) else { return .bitOffsetInvalid }
        guard let on = RedisNumber.parseInt(a[3]), on & ~1 == 0 else {
            return .error("ERR bit is not an integer or out of range")
        }
        let old: Int64? = growBitString(a[1], maxBit: offset, &env) { s in
            let byte = offset >> 3, bit = UInt8(7 - (offset & 7))
            let old = Int64((s[byte] >> bit) & 1)
            if on == 1 { s[byte] |= 1 << bit } else { s[byte] &= ~(1 << bit) }
            return old
        }
        return old.map(Reply.integer) ?? .wrongType
    }

    /// Start and end of a BITCOUNT/BITPOS range as bit positions, Redis's index rules applied; nil when empty.
    static func bitRange(start: Int64, end: Int64, length: Int, isBit: Bool) -> (Int, Int)? {
        var start = start, end = end
        var total = Int64(length)
        if isBit { total <<= 3 }
        if start < 0 { start = total + start }
        if end < 0 { end = total + end }
        if start < 0 { start = 0 }
        if end < 0 { end = 0 }
        if end >= total { end = total - 1 }
        if start > end { return nil }
        return isBit ? (Int(start), Int(end)) : (Int(start) * 8, Int(end) * 8 + 7)
    }

    mutating func cmdBitcount(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let s: [UInt8]
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(nil): return .integer(0)
        case .success(let v?): s = v
        }
        var range: (Int, Int)?
        if a.count == 4 || a.count == 5 {
            guard let start = RedisNumber.parseInt(a[2]), let end = RedisNumber.parseInt(a[3]) else { return .notInteger }
            // Redis 7.0 answers a reversed negative range before it reads the unit.
            if start < 0 && end < 0 && start > end { return .integer(0) }
            var isBit = false
            if a.count == 5 {
                if eq(a[4], "bit") { isBit = true } else if !eq(a[4], "byte") { return .syntax }
            }
            range = Self.bitRange(start: start, end: end, length: s.count, isBit: isBit)
        } else if a.count == 2 {
            range = s.isEmpty ? nil : (0, s.count * 8 - 1)
        } else {
            return .syntax
        }
        guard let (from, to) = range else { return .integer(0) }
        var n = 0
        var i = from
        while i <= to {
            if i & 7 == 0 && i + 7 <= to {
                n += s[i >> 3].nonzeroBitCount
                i += 8
            } else {
                n += Int((s[i >> 3] >> (7 - (i & 7))) & 1)
                i += 1
            }
        }
        return .integer(Int64(n))
    }

    mutating func cmdBitpos(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let bit = RedisNumber.parseInt(a[2]) else { return .notInteger }
        if bit != 0 && bit != 1 { return .error("ERR The bit argument must be 1 or 0.") }
        let s: [UInt8]
        switch getString(a[1], &env) {
        case .failure(let e): return e.reply
        case .success(nil): return .integer(bit == 1 ? -1 : 0)
        case .success(let v?): s = v
        }
        var range: (Int, Int)?
        var endGiven = false
        if a.count >= 4 && a.count <= 6 {
            guard let start = RedisNumber.parseInt(a[3]) else { return .notInteger }
            var isBit = false
            if a.count == 6 {
                if eq(a[5], "bit") { isBit = true } else if !eq(a[5], "byte") { return .syntax }
            }
            var end: Int64
            if a.count >= 5 {
                guard let e = RedisNumber.parseInt(a[4]) else { return .notInteger }
                end = e
                endGiven = true
            } else {
                end = isBit ? Int64(s.count) << 3 + 7 : Int64(s.count) - 1
            }
            range = Self.bitRange(start: start, end: end, length: s.count, isBit: isBit)
        } else if a.count == 3 {
            range = s.isEmpty ? nil : (0, s.count * 8 - 1)
        } else {
            return .syntax
        }
        guard let (from, to) = range else { return .integer(-1) }
        if let p = firstBit(s, bit == 1, from: from, to: to) { return .integer(Int64(p)) }
        // Looking for a clear bit without an end: the first bit past the string.
        return .integer(bit == 0 && !endGiven ? Int64(to + 1) : -1)
    }

    mutating func cmdBitop(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let op = a[1]
        guard eq(op, "and") || eq(op, "or") || eq(op, "xor") || eq(op, "not") else { return .syntax }
        if eq(op, "not") && a.count != 4 { return .error("ERR BITOP NOT must be called with a single source key.") }
        var sources: [[UInt8]] = []
        for k in a[3...] {
            switch getString(k, &env) {
            case .failure(let e): return e.reply
            case .success(let v): sources.append(v ?? [])
            }
        }
        let length = sources.map(\.count).max() ?? 0
        var out = [UInt8](repeating: 0, count: length)
        for j in 0..<length {
            var o = j < sources[0].count ? sources[0][j] : 0
            if eq(op, "not") { o = ~o }
            for src in sources.dropFirst() {
                let b = j < src.count ? src[j] : 0
                if eq(op, "and") { o &= b } else if eq(op, "or") { o |= b } else { o ^= b }
            }
            out[j] = o
        }
        delete(a[2])
        if length > 0 { write(a[2], .string(out), expireAt: kvNoExpiry, now: env.now) }
        return .integer(Int64(length))
    }

    mutating func cmdBitfield(_ a: [[UInt8]], readOnly: Bool, _ env: inout KVEnvironment) -> Reply {
        let typeError = Reply.error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")
        var ops: [BitfieldOp] = []
        var overflow = Bitfield.Overflow.wrap
        var writes = false
        var highest = 0
        var j = 2
        while j < a.count {
            let rem = a.count - j - 1
            let code: BitfieldOp.Code
            if eq(a[j], "get") && rem >= 2 {
                code = .get
            } else if eq(a[j], "set") && rem >= 3 {
                code = .set
            } else if eq(a[j], "incrby") && rem >= 3 {
                code = .incrby
            } else if eq(a[j], "overflow") && rem >= 1 {
                if eq(a[j + 1], "wrap") { overflow = .wrap } else if eq(a[j + 1], "sat") { overflow = .sat } else if eq(a[j + 1], "fail") {
                    overflow = .fail
                } else { return .error("ERR Invalid OVERFLOW type specified") }
                j += 2
                continue
            } else {
                return .syntax
            }
            let type = a[j + 1]
            guard let first = type.first, first == UInt8(ascii: "i") || first == UInt8(ascii: "u") else { return typeError }
            let signed = first == UInt8(ascii: "i")
            guard let bits = RedisNumber.parseInt(Array(type.dropFirst().prefix { $0 != 0 })), bits >= 1,
                  bits <= (signed ? 64 : 63) else { return typeError }
            guard let offset = Self.bitOffset(a[j + 2], hash: true, bits: Int(bits)) else { return .bitOffsetInvalid }
            var value: Int64 = 0
            if code != .get {
                writes = true
                guard let v = RedisNumber.parseInt(a[j + 3]) else { return .notInteger }
                value = v
                highest = max(highest, offset + Int(bits) - 1)
            }
            ops.append(BitfieldOp(code: code, offset: offset, bits: Int(bits), signed: signed, value: value, overflow: overflow))
            j += code == .get ? 3 : 4
        }
        func run(_ s: inout [UInt8]) -> Reply {
            var replies: [Reply] = []
            for op in ops {
                if op.code == .get {
                    replies.append(op.signed ? .integer(Bitfield.getSigned(s, op.offset, op.bits))
                                   : .integer(Int64(bitPattern: Bitfield.getUnsigned(s, op.offset, op.bits))))
                } else if op.signed {
                    let old = Bitfield.getSigned(s, op.offset, op.bits)
                    var wrapped: Int64 = 0
                    var new: Int64, result: Int64
                    let o: Int
                    if op.code == .incrby {
                        o = Bitfield.checkSigned(old, op.value, op.bits, op.overflow, &wrapped)
                        new = o != 0 ? wrapped : old &+ op.value
                        result = new
                    } else {
                        new = op.value
                        o = Bitfield.checkSigned(new, 0, op.bits, op.overflow, &wrapped)
                        if o != 0 { new = wrapped }
                        result = old
                    }
                    if o != 0 && op.overflow == .fail {
                        replies.append(.null)
                    } else {
                        replies.append(.integer(result))
                        Bitfield.set(&s, op.offset, op.bits, UInt64(bitPattern: new))
                    }
                } else {
                    let old = Bitfield.getUnsigned(s, op.offset, op.bits)
                    var wrapped: UInt64 = 0
                    var new: UInt64, result: UInt64
                    let o: Int
                    if op.code == .incrby {
                        new = old &+ UInt64(bitPattern: op.value)
                        o = Bitfield.checkUnsigned(old, op.value, op.bits, op.overflow, &wrapped)
                        if o != 0 { new = wrapped }
                        result = new
                    } else {
                        new = UInt64(bitPattern: op.value)
                        o = Bitfield.checkUnsigned(new, 0, op.bits, op.overflow, &wrapped)
                        if o != 0 { new = wrapped }
                        result = old
                    }
                    if o != 0 && op.overflow == .fail {
                        replies.append(.null)
                    } else {
                        replies.append(.integer(Int64(bitPattern: result)))
                        Bitfield.set(&s, op.offset, op.bits, new)
                    }
                }
            }
            return .array(replies)
        }
        if !writes {
            switch getString(a[1], &env) {
            case .failure(let e): return e.reply
            case .success(let v):
                var s = v ?? []
                return run(&s)
            }
        }
        if readOnly { return .error("ERR BITFIELD_RO only supports the GET subcommand") }
        return growBitString(a[1], maxBit: highest, &env) { run(&$0) } ?? .wrongType
    }

    mutating func cmdLcs(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let va = lookup(a[1], &env), vb = lookup(a[2], &env)
        var x: [UInt8] = [], y: [UInt8] = []
        switch va {
        case nil: break
        case .string(let s)?: x = s
        default: return .error("ERR The specified keys must contain string values")
        }
        switch vb {
        case nil: break
        case .string(let s)?: y = s
        default: return .error("ERR The specified keys must contain string values")
        }
        var getIdx = false, getLen = false, withMatchLen = false
        var minMatchLen: Int64 = 0
        var j = 3
        while j < a.count {
            let more = a.count - 1 - j
            if eq(a[j], "idx") {
                getIdx = true
            } else if eq(a[j], "len") {
                getLen = true
            } else if eq(a[j], "withmatchlen") {
                withMatchLen = true
            } else if eq(a[j], "minmatchlen") && more > 0 {
                guard let n = RedisNumber.parseInt(a[j + 1]) else { return .notInteger }
                minMatchLen = max(0, n)
                j += 1
            } else {
                return .syntax
            }
            j += 1
        }
        if getIdx && getLen { return .error("ERR If you want both the length and indexes, please just use IDX.") }
        let alen = x.count, blen = y.count
        let cells = (alen + 1).multipliedReportingOverflow(by: blen + 1)
        if cells.overflow || cells.partialValue > maxStringLength / 4 {
            return .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
        }
        var table = [UInt32](repeating: 0, count: cells.partialValue)
        let w = blen + 1
        if alen > 0 && blen > 0 {
            for i in 1...alen {
                for k in 1...blen {
                    table[i * w + k] = x[i - 1] == y[k - 1] ? table[(i - 1) * w + k - 1] + 1
                        : max(table[(i - 1) * w + k], table[i * w + k - 1])
                }
            }
        }
        let total = Int(table[alen * w + blen])
        if getLen && !getIdx { return .integer(Int64(total)) }
        var result = [UInt8](repeating: 0, count: total)
        var idx = total
        var matches: [Reply] = []
        var aStart = alen, aEnd = 0, bStart = 0, bEnd = 0
        var i = alen, k = blen
        while i > 0 && k > 0 {
            var emit = false
            if x[i - 1] == y[k - 1] {
                result[idx - 1] = x[i - 1]
                if aStart == alen {
                    (aStart, aEnd, bStart, bEnd) = (i - 1, i - 1, k - 1, k - 1)
                } else if aStart == i && bStart == k {
                    aStart -= 1
                    bStart -= 1
                } else {
                    emit = true
                }
                if aStart == 0 || bStart == 0 { emit = true }
                idx -= 1
                i -= 1
                k -= 1
            } else {
                if table[(i - 1) * w + k] > table[i * w + k - 1] { i -= 1 } else { k -= 1 }
                if aStart != alen { emit = true }
            }
            let matchLen = aEnd - aStart + 1
            if emit {
                if getIdx && (minMatchLen == 0 || Int64(matchLen) >= minMatchLen) {
                    var m: [Reply] = [.array([.integer(Int64(aStart)), .integer(Int64(aEnd))]),
                                      .array([.integer(Int64(bStart)), .integer(Int64(bEnd))])]
                    if withMatchLen { m.append(.integer(Int64(matchLen))) }
                    matches.append(.array(m))
                }
                aStart = alen
            }
        }
        if getIdx { return .array([.text("matches"), .array(matches), .text("len"), .integer(Int64(total))]) }
        return .bulk(result)
    }
}
