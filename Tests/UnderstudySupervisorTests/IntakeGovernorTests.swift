import NIOCore
import NIOEmbedded
import Testing
@testable import UnderstudyFrontend

@testable import UnderstudySupervisor

@Suite("Intake governor (--max-standby-lag-ms)")
struct IntakeGovernorTests {
    static let ms: Int64 = 1_000_000

    @Test("the apply rate is measured only while the worker is busy, and turns a backlog into time")
    func applyRate() {
        var meter = ApplyRateMeter()
        #expect(meter.drainTime(backlog: 1000) == 0, "no projection before any measurement")
        // Idle (no backlog): applying nothing is not slowness.
        meter.observe(nanoseconds: 0, applied: 0, backlog: 0)
        meter.observe(nanoseconds: 10 * Self.ms, applied: 0, backlog: 0)
        #expect(meter.inputsPerSecond == nil)
        // Busy at the start of the interval but drained at its end: not a sample either.
        meter.observe(nanoseconds: 20 * Self.ms, applied: 0, backlog: 500)
        meter.observe(nanoseconds: 30 * Self.ms, applied: 500, backlog: 0)
        #expect(meter.inputsPerSecond == nil)
        // Busy throughout: 1 000 inputs in 10 ms is 100 000 per second.
        meter.observe(nanoseconds: 40 * Self.ms, applied: 500, backlog: 5000)
        meter.observe(nanoseconds: 50 * Self.ms, applied: 1500, backlog: 4000)
        #expect(meter.inputsPerSecond == 100_000)
        #expect(meter.drainTime(backlog: 4000) == 40 * Self.ms)
        #expect(meter.drainTime(backlog: 0) == 0)
        // Samples closer together than the minimum interval are ignored (noise of a loop turn).
        meter.observe(nanoseconds: 51 * Self.ms, applied: 1600, backlog: 3900)
        #expect(meter.inputsPerSecond == 100_000)
        // A worker that stops applying (a stall) drives the rate down: the projection grows.
        for t in 1...40 {
            meter.observe(nanoseconds: (50 + Int64(t) * 10) * Self.ms, applied: 1500, backlog: 4000)
        }
        #expect(meter.drainTime(backlog: 4000) > 1000 * Self.ms)
        #expect(meter.drainTime(backlog: UInt64.max) == 3_600_000 * Self.ms, "capped at an hour")
    }

    @Test("single inputs at a steady pace, each applied at once, are not a busy worker (no rate, no projected lag)")
    func tickPaceIsIdle() {
        var meter = ApplyRateMeter()
        // A tick every 100 ms: sequenced (backlog 1), applied 0.1 ms later (backlog 0) — as the supervisor sees an
        // idle worker. Measured as busy throughout, this was 10 inputs/s and a 100 ms projection per queued input.
        for tick in 0..<20 {
            let t = Int64(tick) * 100 * Self.ms
            meter.observe(nanoseconds: t, applied: UInt64(tick), backlog: 1)
            meter.observe(nanoseconds: t + Self.ms / 10, applied: UInt64(tick + 1), backlog: 0)
        }
        #expect(meter.inputsPerSecond == nil)
        #expect(meter.drainTime(backlog: 1) == 0)
        // Real load afterwards is measured as before.
        meter.observe(nanoseconds: 3000 * Self.ms, applied: 20, backlog: 800)
        meter.observe(nanoseconds: 3010 * Self.ms, applied: 520, backlog: 900)
        #expect(meter.inputsPerSecond == 50_000)
    }

    @Test("levels: pipelines held above half the limit, closed only for the live standby above the limit, with hysteresis")
    func levels() {
        let limit = 100 * Self.ms
        func level(_ current: IntakeThrottle.Level, queue: Int64 = 0, standby: Int64 = 0) -> IntakeThrottle.Level {
            IntakeGovernor.level(current: current, limit: limit, queue: queue * Self.ms, standby: standby * Self.ms)
        }
        #expect(level(.open) == .open)
        #expect(level(.open, queue: 50, standby: 50) == .open)
        #expect(level(.open, queue: 51) == .pipelinesHeld)
        #expect(level(.open, standby: 51) == .pipelinesHeld)
        // The primary's queue and a catch-up never close intake, however long.
        #expect(level(.open, queue: 10_000) == .pipelinesHeld)
        #expect(level(.closed, queue: 10_000) == .pipelinesHeld)
        // The live standby beyond the limit does.
        #expect(level(.open, standby: 101) == .closed)
        #expect(level(.pipelinesHeld, standby: 101) == .closed)
        // Hysteresis: closed until below half, held until below a quarter.
        #expect(level(.closed, standby: 51) == .closed)
        #expect(level(.closed, standby: 50) == .pipelinesHeld)
        #expect(level(.pipelinesHeld, standby: 26) == .pipelinesHeld)
        #expect(level(.pipelinesHeld, queue: 26) == .pipelinesHeld)
        #expect(level(.pipelinesHeld, queue: 25, standby: 25) == .open)
        #expect(level(.closed, standby: 0) == .open)
    }

    final class Connection: ThrottledConnection {
        var unansweredRequests = 0
    }

    /// Counts the reads that pass the throttle on their way to the socket.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    struct Client {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        let connection = Connection()

        init(_ throttle: IntakeThrottle) throws {
            try channel.pipeline.syncOperations.addHandler(counter)
            try channel.pipeline.syncOperations.addHandler(IntakeThrottleHandler(throttle: throttle, connection: connection))
        }

        /// Asks for a read, as NIO does after every read batch; true when it reached the socket.
        func read() -> Bool {
            let before = counter.reads
            channel.read()
            return counter.reads > before
        }
    }

    @Test("pipelines held: a connection waiting for replies is not read until answered; one with none is read")
    func pipelinesHeld() throws {
        let throttle = IntakeThrottle()
        let loader = try Client(throttle)
        let interactive = try Client(throttle)
        loader.connection.unansweredRequests = 500
        #expect(loader.read(), "open: every connection is read")
        throttle.set(.pipelinesHeld)
        #expect(throttle.engaged && throttle.engagements == 1)
        #expect(!loader.read())
        #expect(interactive.read())
        #expect(throttle.heldConnections == 1)
        // Answered: the held read goes through now, once.
        loader.connection.unansweredRequests = 0
        let before = loader.counter.reads
        throttle.answered(loader.connection)
        #expect(loader.counter.reads == before + 1)
        #expect(throttle.heldConnections == 0)
        throttle.answered(loader.connection)
        #expect(loader.counter.reads == before + 1, "no read that was not held")
    }

    @Test("closed holds every connection; lowering the level reads those it no longer holds, once")
    func closedAndRelease() throws {
        let throttle = IntakeThrottle()
        let loader = try Client(throttle)
        let interactive = try Client(throttle)
        loader.connection.unansweredRequests = 16
        throttle.set(.closed)
        #expect(!loader.read())
        #expect(!interactive.read())
        #expect(throttle.heldConnections == 2)
        // Answering does not open a closed intake.
        throttle.answered(interactive.connection)
        #expect(throttle.heldConnections == 2)
        // Down to pipelines held: only the connection with nothing unanswered reads.
        let (l, i) = (loader.counter.reads, interactive.counter.reads)
        throttle.set(.pipelinesHeld)
        #expect(loader.counter.reads == l && interactive.counter.reads == i + 1)
        // Open: the rest.
        throttle.set(.open)
        #expect(loader.counter.reads == l + 1 && interactive.counter.reads == i + 1)
        #expect(throttle.heldConnections == 0 && !throttle.engaged)
        #expect(throttle.engagements == 1, "closed then pipelines then open is one engagement")
        // A closed connection's held read is forgotten with it.
        throttle.set(.closed)
        #expect(!loader.read())
        let sync = loader.channel.pipeline.syncOperations
        _ = sync.removeHandler(context: try sync.context(handlerType: IntakeThrottleHandler.self))
        loader.channel.embeddedEventLoop.run()
        #expect(throttle.heldConnections == 0)
        #expect(throttle.engagements == 2)
    }
}
