import UnderstudyKit
import UnderstudyWire

/// A schema 2 counter: its value and how many writes it has seen since it was created or migrated.
struct Counter2: StateValue, Equatable {
    var value: Int64
    var updates: UInt64

    func encode(to writer: inout ByteWriter) {
        writer.write(value)
        writer.write(updates)
    }

    init(value: Int64, updates: UInt64) {
        self.value = value
        self.updates = updates
    }

    init(decoding reader: inout ByteReader) throws {
        self.value = try reader.readInt64()
        self.updates = try reader.read(UInt64.self)
    }
}

/// Schema 2 state: one map of ``Counter2``.
struct CounterStateV2: TrackedState {
    var counters = TrackedMap<Counter2>(name: "counters2")
    func visitMaps(_ v: inout some TrackedMapVisitor) { v.visit(counters) }
    mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) { v.visit(&counters) }
}

/// Version 2 of the counter service (schema 2): migrates from schema 1 and can downgrade to it.
struct CounterServiceV2: UnderstudyService {
    static let name = "test-service"
    static let version = "2.0.0"
    static let schemaVersion: UInt32 = 2
    static var minimumMigratableSchema: UInt32 { 1 }
    static var supportsDowngrade: Bool { true }
    static var comparisonRules: [String: ComparisonRule] { ["NOW": .ignore, "PREFETCHED": .ignore] }

    func prefetch(keys: [[UInt8]], state: CounterStateV2) {
        PrefetchLog.record(keys.count)
    }

    func makeInitialState() -> CounterStateV2 { CounterStateV2() }

    func handle(_ request: ServiceRequest, state: inout CounterStateV2, context: inout RequestContext) -> [UInt8] {
        switch CounterCommand.parse(request) {
        case .failure(let f):
            return f.reply
        case .success(let command):
            switch command {
            case .incr(let key):
                return add(1, to: key, in: &state.counters)
            case .add(let key, let amount):
                return add(amount, to: key, in: &state.counters)
            case .get(let key):
                return state.counters.get(key).map { Reply.integer($0.value) } ?? Reply.null
            case .del(let key):
                return Reply.integer(Int64(state.counters.remove(key) == nil ? 0 : 1))
            case .rand(let key):
                let value = Int64(context.random.next() % 1000)
                state.counters.update(key) { c in
                    c = Counter2(value: value, updates: (c?.updates ?? 0) + 1)
                }
                return Reply.integer(value)
            case .now:
                return Reply.integer(context.timeMillis)
            case .prefetched:
                return Reply.integer(PrefetchLog.count)
            case .updates(let key):
                return Reply.integer(state.counters.get(key)?.updates ?? 0)
            }
        }
    }

    private func add(_ amount: Int64, to key: [UInt8], in map: inout TrackedMap<Counter2>) -> [UInt8] {
        map.update(key) { c -> [UInt8] in
            guard let sum = checkedAdd(c?.value ?? 0, amount) else { return overflowReply }
            c = Counter2(value: sum, updates: (c?.updates ?? 0) + 1)
            return Reply.integer(sum)
        }
    }

    /// Reads a schema 1 snapshot: each counter keeps its value, with no updates counted yet.
    func migrate(from snapshot: StateSnapshot) throws -> CounterStateV2 {
        guard snapshot.schemaVersion == 1 else {
            throw MigrationError("test-service 2.0.0 migrates from schema 1 only, not \(snapshot.schemaVersion)")
        }
        var state = CounterStateV2()
        try snapshot.forEachEntry(of: "counters") { key, bytes in
            state.counters.set(key, Counter2(value: try Int64(canonicalBytes: bytes), updates: 0))
        }
        return state
    }

    /// Back to schema 1: the values stay, the update counts are dropped.
    func downgrade(_ state: CounterStateV2) throws -> (any TrackedState)? {
        var old = CounterStateV1()
        state.counters.forEach { key, c in old.counters.set(key, c.value) }
        _ = old.drainTouchedKeys()
        return old
    }

    var validationSuite: [ValidationCase] {
        counterValidationSuite + [
            ValidationCase(
                name: "updates are counted",
                steps: [
                    ValidationStep(.command(["DEL", "validation:u"]), check: { _ in nil }),
                    ValidationStep(.command(["INCR", "validation:u"]), expect: Reply.integer(Int64(1))),
                    ValidationStep(.command(["ADD", "validation:u", "5"]), expect: Reply.integer(Int64(6))),
                    ValidationStep(.command(["UPDATES", "validation:u"]), expect: Reply.integer(UInt64(2))),
                ])
        ]
    }
}
