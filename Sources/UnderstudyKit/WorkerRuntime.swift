#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CUnderstudySystem
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
    public static func serve<S: UnderstudyService>(_ service: S, fd: Int32) -> Int32 {
        let progress = WorkerProgress()
        var engine = ServiceEngine(service: service)
        var decoder = FrameDecoder()
        var output = ByteWriter(capacity: 1 << 16)
        FrameCodec.encode(.hello(ServiceEngine<S>.hello(pid: UInt32(getpid()))), into: &output)
        guard writeAll(fd, &output) else { return 0 }
        var readBuffer = [UInt8](repeating: 0, count: 1 << 16)
        var inputsSinceTrim = 0
        while true {
            // Idle (nothing to read) after much work: give freed heap pages back to the system, so resident
            // memory follows the state's size rather than the high-water mark of bursts and snapshots.
            if inputsSinceTrim >= trimAfterInputs && !inputReady(fd) {
                inputsSinceTrim = 0
                returnFreeMemory()
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
                if case .apply(let r) = message {
                    // Which input runs, where the supervisor can read it if this process dies or stalls in it.
                    progress.started(r.sequence)
                    _ = engine.handle(message, output: &output)
                    progress.finished(r.sequence)
                    inputsSinceTrim += 1
                } else if engine.handle(message, output: &output) == .exit {
                    _ = writeAll(fd, &output)
                    return 0
                } else if case .snapshotRequest = message {
                    // A snapshot is the one output the size of the whole state: send it, give its buffer back
                    // (see writeAll), and trim at the next idle moment. glibc raises its mmap and trim thresholds
                    // after freeing a large block, so without trimming a worker keeps the high-water mark of its
                    // last snapshot (or burst of catch-up input) as resident memory for good.
                    guard writeAll(fd, &output) else { return 0 }
                    inputsSinceTrim = trimAfterInputs
                }
                if output.bytes.count > 1 << 20 {
                    guard writeAll(fd, &output) else { return 0 }
                }
            }
            guard writeAll(fd, &output) else { return 0 }
        }
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
