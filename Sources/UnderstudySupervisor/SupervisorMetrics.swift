import CoreMetrics
import Metrics
import NIOCore
import UnderstudyWire

/// The supervisor's metrics, through swift-metrics (exported as Prometheus text by the admin server).
///
/// Confined to the core event loop (the per-command caches are plain dictionaries).
// Not Sendable: the compiler keeps it off other threads (its owner, on the core event loop, is its only user).
final class SupervisorMetrics {
    let factory: any MetricsFactory
    private var requestCounters: [String: Counter] = [:]
    private var errorCounters: [String: Counter] = [:]
    let classifier = CommandClassifier()
    lazy var latency = Metrics.Timer(label: "understudy_request_latency_seconds", factory: factory)
    lazy var workerRestarts = Counter(label: "understudy_worker_restarts_total", factory: factory)
    lazy var quarantinedInputs = Counter(label: "understudy_quarantined_inputs_total", factory: factory)
    lazy var intakeThrottled = Counter(label: "understudy_intake_throttled_total", factory: factory)
    lazy var snapshotSeconds = Metrics.Timer(label: "understudy_snapshot_seconds", factory: factory)
    lazy var shadowLagRecords = Gauge(label: "understudy_shadow_lag_records", factory: factory)
    lazy var shadowLagMillis = Gauge(label: "understudy_shadow_lag_ms", factory: factory)
    lazy var discrepancyRate = Gauge(label: "understudy_discrepancy_rate", factory: factory)
    lazy var discrepanciesTotal = Gauge(label: "understudy_discrepancies_total", factory: factory)
    lazy var journalSequence = Gauge(label: "understudy_journal_sequence", factory: factory)
    lazy var journalDurableSequence = Gauge(label: "understudy_journal_durable_sequence", factory: factory)
    lazy var heldRequests = Gauge(label: "understudy_held_requests", factory: factory)
    private var predictorGauges: [String: Gauge] = [:]
    private var swapTimers: [String: Metrics.Timer] = [:]
    lazy var swapsTotal = Counter(label: "understudy_swaps_total", factory: factory)
    lazy var swapAborts = Counter(label: "understudy_swap_aborts_total", factory: factory)
    lazy var predictionDrops = Gauge(label: "understudy_prediction_dropped_observations", factory: factory)

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func recordRequest(command: String, latency elapsed: TimeAmount, error: Bool) {
        let counter = requestCounters[command] ?? {
            let c = Counter(label: "understudy_requests_total", dimensions: [("command", command)], factory: factory)
            requestCounters[command] = c
            return c
        }()
        counter.increment()
        if error {
            let e = errorCounters[command] ?? {
                let c = Counter(label: "understudy_request_errors_total", dimensions: [("command", command)], factory: factory)
                errorCounters[command] = c
                return c
            }()
            e.increment()
        }
        latency.recordNanoseconds(elapsed.nanoseconds)
    }

    func recordSwapStep(_ step: String, _ elapsed: TimeAmount) {
        let t = swapTimers[step] ?? {
            let t = Metrics.Timer(label: "understudy_swap_pause_seconds", dimensions: [("step", step)], factory: factory)
            swapTimers[step] = t
            return t
        }()
        t.recordNanoseconds(elapsed.nanoseconds)
    }

    func recordPredictor(_ name: String, top1: Double) {
        let g = predictorGauges[name] ?? {
            let g = Gauge(label: "understudy_predictor_top1", dimensions: [("predictor", name)], factory: factory)
            predictorGauges[name] = g
            return g
        }()
        g.record(top1)
    }
}
