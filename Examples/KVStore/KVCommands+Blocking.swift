import UnderstudyKit
import UnderstudyWire

// The blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP), as Redis 7.0 has
// them, made deterministic: a request that finds no data is held in the state (``KVBlocking``) and its reply is
// deferred; the input that creates a key it waits on answers it in the same step, first blocked first served per
// key; a journaled input whose time is past its deadline answers it with a null; its connection's journaled
// close forgets it. A command blocks only when it came as a connection-scoped input (the supervisor then routes
// the deferred reply and reports the close); inside MULTI, or as a plain command, it answers as on a timeout.

extension KVStorage {
    /// A blocking command: served at once when a key has data, else blocked (or, where it may not block, a null).
    mutating func blockingCommand(_ name: String, _ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        let command: KVBlockingCommand
        switch KVBlockingCommand.parse(name, a) {
        case .success(let c): command = c
        case .failure(let e): return e.reply
        }
        if case .move(let fromLeft, let toLeft, let destination) = command.operation {
            switch kind(command.keys[0], &env) {
            case nil: if !env.canBlock { return .null }
            case .list: return lmove(command.keys[0], destination, fromLeft: fromLeft, toLeft: toLeft, &env)
            default: return .wrongType
            }
        } else {
            for key in command.keys {
                switch kind(key, &env) {
                case nil: continue
                case .list where command.operation.onLists: return serveBlocking(command.operation, key: key, &env)
                case .zset where !command.operation.onLists: return serveBlocking(command.operation, key: key, &env)
                default: return .wrongType
                }
            }
            if !env.canBlock { return .nullArray }
        }
        var deadline: Int64 = 0
        if command.timeout > 0 {
            // A deadline past the 64-bit range never comes (Redis's wraps, and its timeout table never reaches it).
            let (sum, overflow) = env.now.addingReportingOverflow(command.timeout)
            deadline = overflow ? 0 : sum
        }
        blocking.add(
            sequence: env.context.sequence, connection: env.connection ?? 0, arguments: a, keys: command.keys,
            deadline: deadline)
        env.blocked = true
        return .null
    }

    /// Pops from `key`, which holds data of the operation's type, and builds the reply.
    mutating func serveBlocking(_ operation: KVBlockingCommand.Operation, key: [UInt8], _ env: inout KVEnvironment) -> Reply {
        switch operation {
        case .pop(let left):
            let e = mutateList(key, env) { l in left ? l.popFront() : l.popBack() } ?? nil
            return .array([.bulk(key), .bulk(e)])
        case .multiPop(let left, let count):
            let popped = mutateList(key, env) { l -> [[UInt8]] in
                var out: [[UInt8]] = []
                while out.count < count, let e = left ? l.popFront() : l.popBack() { out.append(e) }
                return out
            } ?? []
            return .array([.bulk(key), .bulks(popped)])
        case .move(let fromLeft, let toLeft, let destination):
            return lmove(key, destination, fromLeft: fromLeft, toLeft: toLeft, &env)
        case .zpop(let min):
            guard let e = popZset(key, min: min, count: 1, &env).first else { return .nullArray }
            return .array([.bulk(key), .bulk(e.member), .score(e.score)])
        case .zmultiPop(let min, let count):
            let popped = popZset(key, min: min, count: count, &env)
            return .array([.bulk(key), .array(popped.map { .array([.bulk($0.member), .score($0.score)]) })])
        }
    }

    /// Removes up to `count` of the lowest (`min`) or highest members of a sorted set, in the order popped.
    mutating func popZset(_ key: [UInt8], min: Bool, count: Int, _ env: inout KVEnvironment) -> [KVSortedSet.Element] {
        mutateZset(key, &env, create: false) { z -> [KVSortedSet.Element] in
            let n = Swift.min(count, z.count)
            let range = min ? 0..<n : (z.count - n)..<z.count
            var out = z.removeRanks(range)
            if !min { out.reverse() }
            return out
        } ?? []
    }

    /// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]` (version 2, as LMPOP).
    mutating func cmdZmpop(_ a: [[UInt8]], _ env: inout KVEnvironment) -> Reply {
        guard let numkeys = RedisNumber.parseInt(a[1]), numkeys >= 1 else {
            return .error("ERR numkeys should be greater than 0")
        }
        if numkeys > Int64(a.count - 3) { return .syntax }
        let wi = 2 + Int(numkeys)
        let min: Bool
        if eq(a[wi], "min") { min = true } else if eq(a[wi], "max") { min = false } else { return .syntax }
        let n: Int
        switch mpopCount(a, from: wi + 1) {
        case .success(let c): n = Int(clamping: c)
        case .failure(let e): return e.reply
        }
        for k in a[2..<wi] {
            switch kind(k, &env) {
            case nil: continue
            case .zset: return serveBlocking(.zmultiPop(min: min, count: n), key: k, &env)
            default: return .wrongType
            }
        }
        return .nullArray
    }

    /// Serves requests blocked on the keys created by this input (Redis's ready keys), in the order the keys were
    /// created; on each key, the first blocked first, while it has data. A BLMOVE served may create its
    /// destination, which is then served in turn.
    mutating func serveReadyKeys(_ env: inout KVEnvironment) {
        while !blocking.ready.isEmpty {
            let key = blocking.ready.removeFirst()
            guard let waiting = blocking.waiters.peek(key) else { continue }
            let onLists: Bool
            switch kind(key, &env) {
            case .list?: onLists = true
            case .zset?: onLists = false
            default: continue
            }
            for sequence in waiting.sequences {
                guard let request = blocking.requests.peek(KVBlocking.key(sequence)),
                    case .success(let command) = KVBlockingCommand.parse(lower(request.arguments[0]), request.arguments),
                    command.operation.onLists == onLists
                else { continue }
                let reply = serveBlocking(command.operation, key: key, &env)
                blocking.remove(sequence)
                env.context.reply(to: sequence, reply.bytes)
                if !peekExists(key) { break }
            }
        }
    }

    /// Answers, with a null, every blocked request whose deadline is before the input's time.
    mutating func timeOutBlocked(_ env: inout KVEnvironment) {
        guard !blocking.requests.isEmpty else { return }
        for sequence in blocking.expired(before: env.now) {
            blocking.remove(sequence)
            env.context.reply(to: sequence, Reply.nullArray.bytes)
        }
    }
}
