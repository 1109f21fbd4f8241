#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import UnderstudyWire

/// Something went wrong driving a worker process; the message says what.
struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func errnoText() -> String { String(cString: strerror(errno)) }

/// The `test-service` executable, built next to this test bundle (`.build/<triple>/debug/`).
func testServiceBinary() throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw HarnessError("readlink(/proc/self/exe): \(errnoText())") }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let directory = exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)]
    let path = String(directory) + "/test-service"
    guard access(path, X_OK) == 0 else {
        throw HarnessError("no test-service executable at \(path): build the package (swift build --build-tests) first")
    }
    return path
}

/// A fresh directory under /tmp with a short name (socket paths must stay under 108 bytes).
func makeTemporaryDirectory() throws -> String {
    var template = Array("/tmp/usk-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw HarnessError("mkdtemp: \(errnoText())") }
    return String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Removes the files (not subdirectories) of a directory, then the directory.
func removeDirectory(_ path: String) {
    if let dir = opendir(path) {
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
    }
    rmdir(path)
}

func readFile(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

/// How a child process ended.
enum ProcessExit: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    var description: String {
        switch self {
        case .exited(let s): return "exit status \(s)"
        case .signaled(let s): return "signal \(s)"
        }
    }
}

/// A child process started with posix_spawn; killed and reaped when released.
final class ChildProcess {
    let pid: pid_t
    private(set) var exit: ProcessExit?

    /// Starts `path` with `arguments`; standard output and error go to files when paths are given.
    /// The environment is this process's, less `UNDERSTUDY_SOCKET`, plus `environment`.
    init(_ path: String, arguments: [String], environment: [String: String] = [:], stdout: String? = nil, stderr: String? = nil) throws {
        var env = readFile("/proc/self/environ").split(separator: "\0").map(String.init)
            .filter { !$0.hasPrefix("UNDERSTUDY_SOCKET=") }
        for (k, v) in environment { env.append("\(k)=\(v)") }
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw HarnessError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    /// Waits up to `timeout` for the process to end; nil if it is still running then.
    @discardableResult
    func wait(timeout: Duration) -> ProcessExit? {
        if let exit { return exit }
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                let signal = status & 0x7f
                exit = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
                return exit
            }
            if r < 0 && errno != EINTR { return nil }
            if ContinuousClock.now >= deadline { return nil }
            usleep(500)
        }
    }

    /// True while the process has not ended.
    var isRunning: Bool { wait(timeout: .zero) == nil }

    deinit {
        if exit == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}

/// glibc's accept4(2), which the Glibc module does not import.
@_silgen_name("accept4")
func acceptCloseOnExec(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>?, _ length: UnsafeMutablePointer<socklen_t>?, _ flags: Int32) -> Int32

/// A listening Unix-domain socket (close-on-exec, so sibling workers never inherit it).
final class UnixListener {
    let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errnoText())") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw HarnessError("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 4) == 0 else {
            let text = errnoText()
            close(fd)
            throw HarnessError("bind/listen \(path): \(text)")
        }
    }

    /// Accepts one connection, waiting at most `timeout`.
    func accept(timeout: Duration) throws -> Int32 {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000)
        let ready = poll(&pfd, 1, ms)
        guard ready > 0 else { throw HarnessError("no connection on \(path) within \(timeout)") }
        // accept4 with SOCK_CLOEXEC: no window in which a worker spawned by a parallel test inherits it.
        let conn = acceptCloseOnExec(fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        guard conn >= 0 else { throw HarnessError("accept: \(errnoText())") }
        return conn
    }

    deinit {
        close(fd)
        unlink(path)
    }
}

/// A `test-service` process connected to a socket this test listens on, driven frame by frame.
///
/// Writes are buffered with ``enqueue(_:)`` and pushed while replies are read, so large batches
/// never deadlock on full socket buffers.
final class TestWorker {
    let process: ChildProcess
    let directory: String
    private(set) var fd: Int32
    private(set) var hello: Hello!
    private var decoder = FrameDecoder()
    private var outbox: [UInt8] = []
    private var outboxOffset = 0
    private var inbox: [WireMessage] = []
    private(set) var sawEOF = false
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 16)

    /// Starts a worker, accepts its connection and reads its greeting.
    static func start(schema: Int? = nil) throws -> TestWorker {
        let binary = try testServiceBinary()
        let directory = try makeTemporaryDirectory()
        let socketPath = directory + "/s"
        let listener: UnixListener
        do {
            listener = try UnixListener(path: socketPath)
        } catch {
            removeDirectory(directory)
            throw error
        }
        var arguments = ["--understudy-socket", socketPath]
        if let schema { arguments += ["--schema", String(schema)] }
        let process: ChildProcess
        do {
            process = try ChildProcess(binary, arguments: arguments, stderr: directory + "/stderr")
        } catch {
            removeDirectory(directory)
            throw error
        }
        let fd: Int32
        do {
            fd = try listener.accept(timeout: .seconds(30))
        } catch {
            let log = readFile(directory + "/stderr")
            removeDirectory(directory)
            throw HarnessError("\(error); worker stderr: \(log)")
        }
        let worker = TestWorker(process: process, directory: directory, fd: fd)
        guard case .hello(let hello) = try worker.receive(1)[0] else {
            throw HarnessError("the worker's first frame is not a hello")
        }
        worker.hello = hello
        return worker
    }

    private init(process: ChildProcess, directory: String, fd: Int32) {
        self.process = process
        self.directory = directory
        self.fd = fd
    }

    deinit {
        if fd >= 0 { close(fd) }
        // `process` is released after this: killed and reaped if still running.
        removeDirectory(directory)
    }

    /// What the worker wrote to standard error so far.
    var stderr: String { readFile(directory + "/stderr") }

    /// Queues one message.
    func enqueue(_ message: WireMessage) {
        var w = ByteWriter()
        FrameCodec.encode(message, into: &w)
        outbox.append(contentsOf: w.bytes)
    }

    /// Queues raw bytes (for bad frames).
    func enqueueRaw(_ bytes: [UInt8]) { outbox.append(contentsOf: bytes) }

    /// Sends everything queued (reading whatever arrives meanwhile).
    func flush(timeout: Duration = .seconds(60)) throws {
        try pump(want: 0, deadline: .now + timeout)
    }

    /// Sends everything queued and returns the next `count` messages.
    func receive(_ count: Int, timeout: Duration = .seconds(60)) throws -> [WireMessage] {
        try pump(want: count, deadline: .now + timeout)
        let out = Array(inbox.prefix(count))
        inbox.removeFirst(count)
        return out
    }

    /// Sends one message and returns the one reply.
    func request(_ message: WireMessage) throws -> WireMessage {
        enqueue(message)
        return try receive(1)[0]
    }

    /// Sends everything queued, then returns every message until the worker closes the socket.
    func receiveUntilClosed(timeout: Duration = .seconds(30)) throws -> [WireMessage] {
        try pump(want: Int.max, deadline: .now + timeout)
        defer { inbox.removeAll() }
        return inbox
    }

    /// Closes this side of the connection.
    func closeSocket() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Shuts down the write side only: the worker reads end-of-stream but can still reply.
    func shutdownWrite() throws {
        try flush()
        shutdown(fd, Int32(SHUT_WR))
    }

    private func pump(want: Int, deadline: ContinuousClock.Instant) throws {
        while true {
            while true {
                let message: WireMessage?
                do {
                    message = try decoder.next()
                } catch {
                    throw HarnessError("the worker sent a bad frame: \(error)")
                }
                guard let message else { break }
                inbox.append(message)
            }
            let pending = outbox.count - outboxOffset
            if pending == 0 && inbox.count >= want { return }
            if sawEOF {
                if want == Int.max { return }
                throw HarnessError(
                    "the worker closed the socket after \(inbox.count) of \(want) replies "
                        + "(\(process.wait(timeout: .seconds(1))?.description ?? "still running")); stderr: \(stderr)")
            }
            let left = deadline - .now
            guard left > .zero else {
                throw HarnessError("timed out with \(inbox.count) of \(want) replies and \(pending) bytes unsent")
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN) | (pending > 0 ? Int16(POLLOUT) : 0), revents: 0)
            let ms = Int32(min(1000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            let ready = poll(&pfd, 1, ms)
            if ready < 0 {
                if errno == EINTR { continue }
                throw HarnessError("poll: \(errnoText())")
            }
            if ready == 0 { continue }
            if pending > 0 && pfd.revents & Int16(POLLOUT) != 0 {
                let n = outbox.withUnsafeBytes { raw in
                    send(fd, raw.baseAddress! + outboxOffset, pending, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    outboxOffset += n
                    if outboxOffset == outbox.count {
                        outbox.removeAll(keepingCapacity: true)
                        outboxOffset = 0
                    }
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    if errno == EPIPE || errno == ECONNRESET {
                        // The worker went away; drop what it will never read and collect what it sent.
                        outbox.removeAll()
                        outboxOffset = 0
                    } else {
                        throw HarnessError("send: \(errnoText())")
                    }
                }
            }
            if pfd.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                let n = readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    readBuffer.withUnsafeBytes { decoder.append(buffer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                } else if n == 0 || (errno == ECONNRESET) {
                    sawEOF = true
                    outbox.removeAll()
                    outboxOffset = 0
                } else if errno != EAGAIN && errno != EINTR {
                    throw HarnessError("recv: \(errnoText())")
                }
            }
        }
    }
}
