import UnderstudyKit
import UnderstudyWire

/// Schema 1 state: one map of signed counters.
struct CounterStateV1: TrackedState {
    var counters = TrackedMap<Int64>(name: "counters")
    func visitMaps(_ v: inout some TrackedMapVisitor) { v.visit(counters) }
    mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) { v.visit(&counters) }
}

/// Version 1 of the counter service (schema 1).
struct CounterServiceV1: UnderstudyService {
    static let name = "test-service"
    static let version = "1.0.0"
    static let schemaVersion: UInt32 = 1
    /// The time is journaled, so NOW is deterministic, but its reply carries no state worth comparing.
    static var comparisonRules: [String: ComparisonRule] { ["NOW": .ignore, "PREFETCHED": .ignore] }

    func prefetch(keys: [[UInt8]], state: CounterStateV1) {
        PrefetchLog.record(keys.count)
    }

    func makeInitialState() -> CounterStateV1 { CounterStateV1() }

    func handle(_ request: ServiceRequest, state: inout CounterStateV1, context: inout RequestContext) -> [UInt8] {
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
                return state.counters.get(key).map(Reply.integer) ?? Reply.null
            case .del(let key):
                return Reply.integer(Int64(state.counters.remove(key) == nil ? 0 : 1))
            case .rand(let key):
                let value = Int64(context.random.next() % 1000)
                state.counters.set(key, value)
                return Reply.integer(value)
            case .now:
                return Reply.integer(context.timeMillis)
            case .prefetched:
                return Reply.integer(PrefetchLog.count)
            case .updates:
                return Reply.error("unknown command 'UPDATES'")
            }
        }
    }

    private func add(_ amount: Int64, to key: [UInt8], in map: inout TrackedMap<Int64>) -> [UInt8] {
        map.update(key) { value -> [UInt8] in
            guard let sum = checkedAdd(value ?? 0, amount) else { return overflowReply }
            value = sum
            return Reply.integer(sum)
        }
    }

    var validationSuite: [ValidationCase] { counterValidationSuite }
}
