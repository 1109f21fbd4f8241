#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CUnderstudySystem
import Synchronization
import UnderstudyWire

/// The entry point a service's `main` calls: connect to the supervisor and serve until it goes away.
///
/// ```swift
/// WorkerRuntime.main(CounterService())
/// ```
///
/// The supervisor passes its socket path as `--understudy-socket PATH` (or the environment
/// variable `UNDERSTUDY_SOCKET`). The worker connects, sends its greeting, then serves frames one
/// at a time on a single thread, which is what makes it deterministic. It exits with status 0
/// when the socket closes or the supervisor says shut down, and non-zero on a broken stream.
public enum WorkerRuntime {
    /// Exit status when started without a supervisor socket.
    public static let usageExitStatus: Int32 = 64
    /// Exit status when the supervisor socket cannot be reached.
    public static let connectExitStatus: Int32 = 69
    /// Exit status when the stream from the supervisor is broken beyond recovery.
    public static let protocolExitStatus: Int32 = 76

    /// Runs the worker; never returns.
    public static func main<S: UnderstudyService>(_ service: S, arguments: [String] = CommandLine.arguments) -> Never {
        var path: String?
        if let i = arguments.firstIndex(of: "--understudy-socket"), i + 1 < arguments.count {
            path = arguments[i + 1]
        } else if let env = getenv("UNDERSTUDY_SOCKET") {
            path = String(cString: env)
        }
        if arguments.contains("--describe") {
            let h = ServiceEngine<S>.hello(pid: UInt32(getpid()))
            print("\(h.service) \(h.version) schema \(h.schemaVersion) protocol \(h.protocolVersion)")
            exit(0)
        }
        guard let path else {
            warn(
                "\(S.name) \(S.version) is an Understudy worker; start it with `understudy run --service \(arguments.first ?? "PATH")` "
                    + "(it needs --understudy-socket PATH from its supervisor)")
            exit(usageExitStatus)
        }
        // A write to a socket the supervisor already closed must fail with EPIPE, not kill the worker.
        _ = signal(SIGPIPE, SIG_IGN)
        dieWithSupervisor()
        let fd: Int32
        do {
            fd = try connect(path: path)
        } catch {
            warn("\(S.name): cannot connect to supervisor socket \(path): \(error)")
            exit(connectExitStatus)
        }
        exit(serve(service, fd: fd))
    }

    /// The environment variable in which the supervisor passes its process id.
    public static let supervisorPIDVariable = "UNDERSTUDY_SUPERVISOR_PID"
    /// Exit status when the supervisor is already gone at start.
    public static let orphanExitStatus: Int32 = 70

    /// Asks the kernel to kill this worker when its supervisor dies — even while a handler is stuck in a loop —
    /// and closes the race where the supervisor died before the request was made.
    static func dieWithSupervisor() {
        guard understudy_set_parent_death_signal(SIGKILL) == 0 else { return }
        if let text = getenv(supervisorPIDVariable), let expected = Int32(String(cString: text)), getppid() != expected {
            warn("understudy worker: the supervisor (pid \(expected)) is gone; exiting")
            exit(orphanExitStatus)
        }
    }

    /// Serves frames on a connected socket until it closes; returns the exit status.
    ///
    /// Inputs are applied one at a time on this thread. A snapshot is encoded on a thread of its own from an O(1)
    /// copy of the state (``ServiceEngine/snapshotJob(streamID:)``) while this thread goes on with everything else,
    /// so a snapshot of a large state does not stall the replica it is taken from, nor a swap's digest requests.
    /// Each snapshot holds the state as of its request; streams answer requests in order (a second request's
    /// stream follows the first's); every other reply keeps its order among the others.
    public static func serve<S: UnderstudyService>(_ service: S, fd: Int32) -> Int32 {
        let progress = WorkerProgress()
        var engine = ServiceEngine(service: service)
        var decoder = FrameDecoder()
        var output = ByteWriter(capacity: 1 << 16)
        FrameCodec.encode(.hello(ServiceEngine<S>.hello(pid: UInt32(getpid()))), into: &output)
        guard writeAll(fd, &output) else { return 0 }
        var readBuffer = [UInt8](repeating: 0, count: 1 << 16)
        var inputsSinceTrim = 0
        let background = BackgroundSnapshot()
        var snapshotInFlight = false
        /// Snapshots requested while one is in flight, in request order (each the state as of its request).
        var waitingSnapshots: [ServiceEngine<S>.SnapshotJob] = []

        func start(_ job: ServiceEngine<S>.SnapshotJob, on background: BackgroundSnapshot) {
            background.start { var frames = ByteWriter(); job.encodeFrames(into: &frames); return frames.bytes }
            snapshotInFlight = true
        }

        /// Handles one message; false when the worker is to exit.
        func handle(_ message: WireMessage) -> Bool {
            if snapshotInFlight, case .snapshotRequest(let id) = message {
                waitingSnapshots.append(engine.snapshotJob(streamID: id))
                return true
            }
            if case .apply(let r) = message {
                // Which input runs, where the supervisor can read it if this process dies or stalls in it.
                progress.started(r.sequence)
                _ = engine.handle(message, output: &output)
                progress.finished(r.sequence)
                inputsSinceTrim += 1
            } else if case .snapshotRequest(let id) = message, let background {
                start(engine.snapshotJob(streamID: id), on: background)
            } else if engine.handle(message, output: &output) == .exit {
                _ = writeAll(fd, &output)
                return false
            } else if case .snapshotRequest = message {
                // Encoded in place (no second thread could be made): send it now.
                guard writeAll(fd, &output) else { return false }
                inputsSinceTrim = trimAfterInputs
            }
            if output.bytes.count > 1 << 20 {
                guard writeAll(fd, &output) else { return false }
            }
            return true
        }

        /// The snapshot in flight is encoded: its frames go out, and the next snapshot request waiting starts.
        func finishSnapshot(_ frames: [UInt8]) -> Bool {
            guard writeAll(fd, &output) else { return false }
            // A snapshot is the one output the size of the whole state: written from its own buffer, which is
            // freed right after; trim at the next idle moment. glibc raises its mmap and trim thresholds after
            // freeing a large block, so without trimming a worker keeps the high-water mark of its last snapshot
            // (or burst of catch-up input) as resident memory for good.
            var snapshot = ByteWriter()
            snapshot.bytes = frames
            guard writeAll(fd, &snapshot) else { return false }
            inputsSinceTrim = trimAfterInputs
            snapshotInFlight = false
            if !waitingSnapshots.isEmpty, let background {
                start(waitingSnapshots.removeFirst(), on: background)
            }
            return true
        }

        while true {
            // Idle (nothing to read) after much work: give freed heap pages back to the system, so resident
            // memory follows the state's size rather than the high-water mark of bursts and snapshots.
            if inputsSinceTrim >= trimAfterInputs && !snapshotInFlight && !inputReady(fd) {
                inputsSinceTrim = 0
                returnFreeMemory()
            }
            if snapshotInFlight, let background {
                // Wait for the socket or the snapshot, whichever comes first.
                switch wait(socket: fd, orSnapshot: background) {
                case .snapshot:
                    guard let frames = background.take() else { continue }
                    guard finishSnapshot(frames) else { return 0 }
                    guard writeAll(fd, &output) else { return 0 }
                    continue
                case .socket:
                    break
                case .interrupted:
                    continue
                }
            }
            let n = readBuffer.withUnsafeMutableBytes { raw in read(fd, raw.baseAddress, raw.count) }
            if n == 0 {
                // The supervisor closed the socket: exit promptly. A frame cut off by the close means
                // the stream broke mid-frame: say so (the peer may have only shut down its write side).
                do {
                    try decoder.finish()
                } catch {
                    FrameCodec.encode(.error(code: error.wireCode, message: error.description), into: &output)
                    _ = writeAll(fd, &output)
                    return protocolExitStatus
                }
                return 0
            }
            if n < 0 {
                if errno == EINTR { continue }
                return 0
            }
            readBuffer.withUnsafeBytes { decoder.append(buffer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            while true {
                let message: WireMessage?
                do {
                    message = try decoder.next()
                } catch .frameTooLarge(let length, let maximum) {
                    FrameCodec.encode(
                        .error(code: .frameTooLarge, message: "frame of \(length) bytes exceeds \(maximum); closing"),
                        into: &output)
                    _ = writeAll(fd, &output)
                    return protocolExitStatus
                } catch {
                    FrameCodec.encode(.error(code: error.wireCode, message: error.description), into: &output)
                    continue
                }
                guard let message else { break }
                guard handle(message) else { return 0 }
            }
            guard writeAll(fd, &output) else { return 0 }
        }
    }

    enum WakeReason { case socket, snapshot, interrupted }

    /// Blocks until the socket has bytes (or was closed) or the background snapshot is done.
    static func wait(socket fd: Int32, orSnapshot background: BackgroundSnapshot) -> WakeReason {
        var fds = [
            pollfd(fd: background.wakeFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
        ]
        let n = poll(&fds, 2, -1)
        if n < 0 { return errno == EINTR ? .interrupted : .socket }
        if fds[0].revents != 0 { return .snapshot }
        return .socket
    }

    /// Output buffers above this capacity are released after they are written (a snapshot's), not kept.
    static let retainedOutputCapacity = 4 << 20

    /// Inputs applied after which the next idle moment returns free heap memory to the system.
    static let trimAfterInputs = 50_000

    /// True when the socket has bytes to read now.
    static func inputReady(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    static func returnFreeMemory() {
        _ = understudy_return_free_memory()
    }

    static func writeAll(_ fd: Int32, _ output: inout ByteWriter) -> Bool {
        defer {
            if output.bytes.capacity > retainedOutputCapacity {
                output.bytes = []
                output.bytes.reserveCapacity(64 << 10)
            } else {
                output.bytes.removeAll(keepingCapacity: true)
            }
        }
        var offset = 0
        let total = output.bytes.count
        while offset < total {
            // MSG_NOSIGNAL: a closed peer is an EPIPE error here, never a SIGPIPE (which would kill the
            // process when `serve` runs in one that did not ignore the signal); plain write() for non-sockets.
            var n = output.bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, total - offset, noSignalFlag)
            }
            if n < 0 && errno == ENOTSOCK {
                n = output.bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress! + offset, total - offset) }
            }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    #if canImport(Darwin)
    static let noSignalFlag: Int32 = 0  // Darwin has SO_NOSIGPIPE instead; `main` ignores SIGPIPE
    #else
    static let noSignalFlag = Int32(MSG_NOSIGNAL)
    #endif

    struct ConnectError: Error, CustomStringConvertible {
        var description: String
    }

    static func connect(path: String) throws -> Int32 {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw ConnectError(description: "socket(): \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            close(fd)
            throw ConnectError(description: "socket path longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw ConnectError(description: message)
        }
        return fd
    }

    static func warn(_ message: String) {
        var line = Array((message + "\n").utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
}

/// A snapshot encoded on a thread of its own; the worker's loop learns it is done from a pipe it polls along
/// with its socket.
final class BackgroundSnapshot: Sendable {
    /// Readable once the frames are ready.
    let wakeFD: Int32
    private let notifyFD: Int32
    private let frames = Mutex<[UInt8]?>(nil)

    /// Nil when no pipe can be made (the worker then encodes snapshots in place).
    init?() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        (wakeFD, notifyFD) = (fds[0], fds[1])
    }

    deinit {
        close(wakeFD)
        close(notifyFD)
    }

    /// Runs `encode` on a new thread; its result is ready when ``wakeFD`` is readable.
    func start(_ encode: @escaping @Sendable () -> [UInt8]) {
        _ = startThread(detached: true) { [self] in
            // Below the thread that applies inputs: where cores are scarce, a snapshot of a large state takes
            // longer rather than delaying the inputs (a standby's catch-up inside a swap's pause, its lag).
            _ = understudy_lower_current_thread_priority(10)
            let bytes = encode()
            frames.withLock { $0 = bytes }
            var one: UInt8 = 1
            while write(notifyFD, &one, 1) < 0 && errno == EINTR {}
        }
    }

    /// The encoded frames, once ready (consumes the wake-up).
    func take() -> [UInt8]? {
        var byte: UInt8 = 0
        while read(wakeFD, &byte, 1) < 0 && errno == EINTR {}
        return frames.withLock { value in
            defer { value = nil }
            return value
        }
    }
}
