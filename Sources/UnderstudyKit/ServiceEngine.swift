import UnderstudyWire

/// The message-level core of a worker: takes wire messages, drives the service, emits replies.
///
/// ``WorkerRuntime`` wraps it in a socket loop; tests and benchmarks drive it in-process.
public struct ServiceEngine<Service: UnderstudyService> {
    /// The service.
    public let service: Service
    /// The live state.
    public private(set) var state: Service.State
    /// The last sequence number applied.
    public private(set) var lastSequence: UInt64 = 0
    /// The journaled time of the last applied input.
    public private(set) var lastTime: Int64 = 0
    var forks: [UInt32: Service.State] = [:]
    var restoreStream: (id: UInt32, sequence: UInt64, schema: UInt32, bytes: [UInt8])?
    /// The chunk size for outgoing snapshots.
    public var snapshotChunkSize = 1 << 20

    /// Creates an engine over the service's initial state.
    public init(service: Service) {
        self.service = service
        self.state = service.makeInitialState()
    }

    /// The greeting this engine's worker sends.
    public static func hello(pid: UInt32) -> Hello {
        Hello(
            service: Service.name, version: Service.version, schemaVersion: Service.schemaVersion,
            minimumMigratableSchema: Service.minimumMigratableSchema, canDowngrade: Service.supportsDowngrade,
            pid: pid, comparisonRules: Service.comparisonRules, http: Service.httpDeclaration,
            commands: Service.commandTable, blockingCommands: Service.blockingCommands)
    }

    /// Applies one input to the live state and returns its result.
    public mutating func apply(_ r: ApplyRequest) -> ApplyResult {
        if r.tag == InputTag.checkpoint {
            lastSequence = r.sequence
            lastTime = r.time
            return ApplyResult(sequence: r.sequence, response: checkpointDigest(r), touched: [], written: [])
        }
        if r.tag == InputTag.quarantine {
            // A quarantined input's stand-in (or the quarantine record): nothing to apply.
            lastSequence = r.sequence
            lastTime = r.time
            return ApplyResult(sequence: r.sequence, response: [], touched: [], written: [])
        }
        var context = RequestContext(sequence: r.sequence, timeMillis: r.time, seed: r.seed)
        let response = service.handle(ServiceRequest(tag: r.tag, payload: r.payload), state: &state, context: &context)
        lastSequence = r.sequence
        lastTime = r.time
        var (touched, written) = state.drainTouchedKeys()
        // Hints only: the first keys are reported (the supervisor keeps no more than these anyway).
        let keys = UnderstudyLimits.maxReportedKeys
        if touched.count > keys { touched.removeSubrange(keys...) }
        if written.count > keys { written.removeSubrange(keys...) }
        return ApplyResult(
            sequence: r.sequence, response: context.isReplyDeferred ? [] : response, touched: touched,
            written: written, pending: context.isReplyDeferred, deferredReplies: context.deferredReplies)
    }

    /// The state as it is now, to be encoded into snapshot frames later — on another thread while this engine goes
    /// on applying inputs (``WorkerRuntime`` does so). The state is a persistent value: this copy costs O(1), and
    /// the live state copies only the nodes it changes afterwards. The frames are those a `snapshotRequest` gets.
    public func snapshotJob(streamID: UInt32) -> SnapshotJob {
        SnapshotJob(state: state, streamID: streamID, sequence: lastSequence, chunkSize: snapshotChunkSize)
    }

    /// A snapshot of the state at one sequence number, not yet encoded (see ``snapshotJob(streamID:)``).
    public struct SnapshotJob: Sendable {
        let state: Service.State
        /// The stream the frames answer.
        public let streamID: UInt32
        /// The last input the state includes.
        public let sequence: UInt64
        let chunkSize: Int

        /// Appends the snapshot's chunk frames (the last carries the checksum of the whole) to `output`.
        public func encodeFrames(into output: inout ByteWriter) {
            let bytes = state.encodeSnapshot(schemaVersion: Service.schemaVersion, sequence: sequence)
            let checksum = StableHasher.hash(bytes)
            var start = 0
            repeat {
                let end = min(bytes.count, start + chunkSize)
                FrameCodec.encode(.snapshotChunk(SnapshotChunk(
                    streamID: streamID, sequence: sequence, schemaVersion: Service.schemaVersion,
                    data: Array(bytes[start..<end]), isFinal: end == bytes.count,
                    checksum: end == bytes.count ? checksum : 0)), into: &output)
                start = end
            } while start < bytes.count
        }
    }

    /// What the engine wants its runtime to do after a message.
    public enum Disposition: Sendable, Equatable {
        /// Keep serving.
        case `continue`
        /// Exit cleanly (orderly shutdown).
        case exit
    }

    /// Handles one message, appending reply frames to `output`.
    public mutating func handle(_ message: WireMessage, output: inout ByteWriter) -> Disposition {
        func send(_ m: WireMessage) { FrameCodec.encode(m, into: &output) }
        switch message {
        case .apply(let r):
            // `lastSequence` may be anything a restored snapshot claimed, UInt64.max included: no trapping `+ 1`.
            guard lastSequence != .max, r.sequence == lastSequence &+ 1 else {
                send(.error(code: .outOfOrder, message: "expected sequence \(lastSequence &+ 1), got \(r.sequence); not applied"))
                return .continue
            }
            send(.applied(Self.bounded(apply(r))))
        case .ping(let nonce):
            send(.pong(nonce: nonce, sequence: lastSequence))
        case .digestRequest:
            send(.digest(state.digest(sequence: lastSequence)))
        case .downgradeDigestRequest:
            do {
                if let old = try service.downgrade(state) {
                    send(.digest(old.digest(sequence: lastSequence)))
                } else {
                    send(.error(code: .unsupported, message: "\(Service.name) \(Service.version) has no downgrade"))
                }
            } catch {
                send(.error(code: .handlerFailed, message: "downgrade failed: \(error)"))
            }
        case .drillDown(let buckets):
            send(.drillDownResult(sequence: lastSequence, entries: state.entries(inBuckets: buckets.map { Int($0) })))
        case .fetch(let keys):
            send(.fetchResult(entries: state.fetch(keys)))
        case .patch(let entries):
            do {
                send(.patched(count: UInt32(try state.applyPatch(entries))))
            } catch {
                send(.error(code: .handlerFailed, message: "patch failed: \(error)"))
            }
        case .prefetch(let keys):
            service.prefetch(keys: keys, state: state)
        case .snapshotRequest(let id):
            snapshotJob(streamID: id).encodeFrames(into: &output)
        case .snapshotChunk(let chunk):
            if restoreStream?.id != chunk.streamID {
                restoreStream = (chunk.streamID, chunk.sequence, chunk.schemaVersion, [])
            }
            restoreStream!.bytes.append(contentsOf: chunk.data)
            if chunk.isFinal {
                let stream = restoreStream!
                restoreStream = nil
                send(finishRestore(stream.bytes, checksum: chunk.checksum))
            }
        case .forkCreate(let id):
            forks[id] = state
            send(.forkAck(forkID: id))
        case .forkApply(let id, let r):
            guard var fork = forks.removeValue(forKey: id) else {
                send(.error(code: .unknownFork, message: "no fork \(id)"))
                return .continue
            }
            var context = RequestContext(sequence: r.sequence, timeMillis: r.time, seed: r.seed)
            let response = service.handle(ServiceRequest(tag: r.tag, payload: r.payload), state: &fork, context: &context)
            _ = fork.drainTouchedKeys()
            forks[id] = fork
            send(.forkResult(forkID: id, response: Self.boundedReply(response)))
        case .forkDrop(let id):
            forks[id] = nil
            send(.forkAck(forkID: id))
        case .validate:
            send(.validationReport(runValidation()))
        case .shutdown:
            return .exit
        case .helloAck:
            break
        case .hello, .applied, .restored, .digest, .drillDownResult, .fetchResult, .patched, .pong, .error,
            .forkResult, .forkAck, .validationReport:
            send(.error(code: .unexpectedMessage, message: "a worker does not accept frame type \(message.frameType)"))
        }
        return .continue
    }

    /// The largest reply a worker sends: what fits one frame with the keys it touched and room to spare.
    static var maximumReplyBytes: Int { UnderstudyLimits.maxFrameBytes - UnderstudyLimits.frameHeaderSlack }

    /// A reply too large for a frame becomes an error reply — the same on every replica, since it depends on the
    /// reply alone — instead of a frame the supervisor would refuse (or a length that does not fit its field).
    static func boundedReply(_ response: [UInt8]) -> [UInt8] {
        guard response.count > maximumReplyBytes else { return response }
        return Array("-ERR reply of \(response.count) bytes exceeds the maximum of \(maximumReplyBytes) bytes\r\n".utf8)
    }

    /// ``boundedReply(_:)`` for a whole result: the touched and written keys, and the deferred replies, count
    /// toward the frame too.
    static func bounded(_ result: ApplyResult) -> ApplyResult {
        var size = result.response.count
        for key in result.touched { size += key.count + 10 }
        for key in result.written { size += key.count + 10 }
        for d in result.deferredReplies { size += d.response.count + 20 }
        guard size > maximumReplyBytes else { return result }
        var r = result
        if !r.deferredReplies.isEmpty {
            // Deferred replies too large together become error replies, largest first, until the frame fits.
            let order = r.deferredReplies.indices.sorted {
                (r.deferredReplies[$0].response.count, $1) > (r.deferredReplies[$1].response.count, $0)
            }
            for i in order where size > maximumReplyBytes {
                let old = r.deferredReplies[i].response.count
                let replacement = Array("-ERR reply of \(old) bytes exceeds the maximum of \(maximumReplyBytes) bytes\r\n".utf8)
                r.deferredReplies[i].response = replacement
                size += replacement.count - old
            }
            if size <= maximumReplyBytes { return r }
        }
        r.response = r.pending ? [] : Array("-ERR reply of \(result.response.count) bytes exceeds the maximum of \(maximumReplyBytes) bytes\r\n".utf8)
        if size - result.response.count > maximumReplyBytes / 2 {
            // Keys alone would overflow the frame: drop them (the digest still covers the state; only the
            // prediction engine and the comparison's key hints lose this request's keys).
            r.touched = []
            r.written = []
        }
        return r
    }

    func checkpointDigest(_ r: ApplyRequest) -> [UInt8] {
        var reader = ByteReader(r.payload)
        guard let reference = try? reader.read(UInt32.self) else { return [] }
        if reference == Service.schemaVersion {
            return state.digest(sequence: r.sequence).encoded
        }
        if Service.supportsDowngrade && reference &+ 1 == Service.schemaVersion,
            let old = try? service.downgrade(state)
        {
            return old.digest(sequence: r.sequence).encoded
        }
        return []
    }

    mutating func finishRestore(_ bytes: [UInt8], checksum: UInt64) -> WireMessage {
        guard StableHasher.hash(bytes) == checksum else {
            return .error(code: .restoreFailed, message: "snapshot checksum mismatch; state unchanged")
        }
        do {
            let snapshot = try StateSnapshot(bytes: bytes)
            var newState: Service.State
            if snapshot.schemaVersion == Service.schemaVersion {
                newState = service.makeInitialState()
                try newState.load(from: snapshot)
            } else if snapshot.schemaVersion >= Service.minimumMigratableSchema
                && snapshot.schemaVersion < Service.schemaVersion
            {
                newState = try service.migrate(from: snapshot)
            } else {
                return .error(
                    code: .restoreFailed,
                    message: "\(Service.name) \(Service.version) (schema \(Service.schemaVersion)) cannot read a schema \(snapshot.schemaVersion) snapshot; it migrates from schema \(Service.minimumMigratableSchema) on")
            }
            _ = newState.drainTouchedKeys()
            state = newState
            lastSequence = snapshot.sequence
            let d = state.digest(sequence: lastSequence)
            return .restored(sequence: snapshot.sequence, entryCount: d.entryCount)
        } catch {
            return .error(code: .restoreFailed, message: "restore failed: \(error); state unchanged")
        }
    }

    func runValidation() -> ValidationReport {
        var failures: [ValidationReport.Failure] = []
        let suite = service.validationSuite
        for testCase in suite {
            var fork = state
            var sequence = lastSequence
            for (index, step) in testCase.steps.enumerated() {
                sequence &+= 1
                var context = RequestContext(sequence: sequence, timeMillis: lastTime, seed: sequence &* 0x9E37_79B9)
                let reply = service.handle(step.request, state: &fork, context: &context)
                if let problem = step.check(reply) {
                    failures.append(.init(name: testCase.name, message: "step \(index + 1): \(problem)"))
                    break
                }
            }
        }
        return ValidationReport(casesRun: UInt32(suite.count), failures: failures)
    }
}
