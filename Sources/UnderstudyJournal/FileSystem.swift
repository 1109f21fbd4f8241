#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin POSIX helpers that turn failures into ``JournalError``s naming the path.
enum FileSystem {
    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(JournalError) -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw JournalError.io("open", path: path, errno: errno)
        }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    static func fileSize(_ fd: Int32, path: String) throws(JournalError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw JournalError.io("fstat", path: path, errno: errno) }
        return Int(info.st_size)
    }

    /// Reads `count` bytes at `offset` (fewer only at end of file).
    static func read(_ fd: Int32, path: String, offset: Int, count: Int) throws(JournalError) -> [UInt8] {
        guard count > 0 else { return [] }
        var done = 0
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            while done < count {
                let result = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if result > 0 {
                    done += result
                } else if result == 0 {
                    break
                } else if errno != EINTR {
                    failure = errno
                    break
                }
            }
            initialized = done
        }
        if failure != 0 { throw JournalError.io("read", path: path, errno: failure) }
        return bytes
    }

    static func readWholeFile(_ path: String) throws(JournalError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        let size = try fileSize(fd, path: path)
        return try read(fd, path: path, offset: 0, count: size)
    }

    /// Writes all of `buffer`; a ``DiskSpaceLimit`` may cut the write short with `ENOSPC`.
    static func writeAll(
        _ fd: Int32, path: String, _ buffer: UnsafeRawBufferPointer, limit: DiskSpaceLimit? = nil
    ) throws(JournalError) {
        guard var pointer = buffer.baseAddress else { return }
        var remaining = buffer.count
        while remaining > 0 {
            var count = remaining
            if let limit {
                count = limit.take(remaining)
                if count == 0 { throw JournalError.io("write", path: path, errno: ENOSPC) }
            }
            let result = Glibc.write(fd, pointer, count)
            if result < 0 {
                if errno == EINTR { continue }
                throw JournalError.io("write", path: path, errno: errno)
            }
            pointer += result
            remaining -= result
        }
    }

    static func fsync(_ fd: Int32, path: String) throws(JournalError) {
        while Glibc.fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw JournalError.io("fsync", path: path, errno: errno)
        }
    }

    static func fsyncDirectory(_ path: String) throws(JournalError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func truncate(_ fd: Int32, path: String, to size: Int) throws(JournalError) {
        guard ftruncate(fd, off_t(size)) == 0 else { throw JournalError.io("ftruncate", path: path, errno: errno) }
    }

    static func truncate(path: String, to size: Int) throws(JournalError) {
        let fd = try open(path, O_WRONLY)
        defer { close(fd) }
        try truncate(fd, path: path, to: size)
        try fsync(fd, path: path)
    }

    static func unlink(_ path: String) throws(JournalError) {
        guard Glibc.unlink(path) == 0 || errno == ENOENT else {
            throw JournalError.io("unlink", path: path, errno: errno)
        }
    }

    static func rename(_ from: String, _ to: String) throws(JournalError) {
        guard Glibc.rename(from, to) == 0 else { throw JournalError.io("rename", path: to, errno: errno) }
    }

    static func listDirectory(_ path: String) throws(JournalError) -> [String] {
        guard let directory = opendir(path) else { throw JournalError.io("opendir", path: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// A binary semaphore with an optional timeout, on a pthread mutex and condition variable: the writer thread
/// sleeps on it and appends (or close) wake it.
final class WakeSignal: @unchecked Sendable {
    // Safety: `mutex` and `condition` are allocated once in init, never move, are freed only in deinit, and are
    // used only through pthread calls, which are thread-safe. `signaled` is read and written only while `mutex`
    // is held.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    private var signaled = false
    private var waiting = 0

    init() {
        self.mutex = .allocate(capacity: 1)
        self.condition = .allocate(capacity: 1)
        pthread_mutex_init(self.mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(self.condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    /// Wakes the waiter (or makes its next wait return at once).
    func signal() {
        pthread_mutex_lock(self.mutex)
        // A wake-up already pending, or nobody waiting, needs no syscall: the waiter checks `signaled`.
        if !self.signaled {
            self.signaled = true
            if self.waiting > 0 { pthread_cond_signal(self.condition) }
        }
        pthread_mutex_unlock(self.mutex)
    }

    /// Waits until signaled or until `timeoutNanoseconds` pass (nil: no timeout).
    func wait(timeoutNanoseconds: UInt64?) {
        pthread_mutex_lock(self.mutex)
        self.waiting += 1
        if let timeoutNanoseconds {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let total = UInt64(deadline.tv_nsec) + timeoutNanoseconds
            deadline.tv_sec += Int(total / 1_000_000_000)
            deadline.tv_nsec = Int(total % 1_000_000_000)
            while !self.signaled {
                if pthread_cond_timedwait(self.condition, self.mutex, &deadline) == ETIMEDOUT { break }
            }
        } else {
            while !self.signaled {
                pthread_cond_wait(self.condition, self.mutex)
            }
        }
        self.signaled = false
        self.waiting -= 1
        pthread_mutex_unlock(self.mutex)
    }
}

/// Monotonic clock in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` for a body that throws only ``JournalError`` (the standard one's `rethrows` is untyped).
    func withBytes<Result>(
        _ body: (UnsafeRawBufferPointer) throws(JournalError) -> Result
    ) throws(JournalError) -> Result {
        let outcome: Swift.Result<Result, JournalError> = self.withUnsafeBytes { bytes in
            Swift.Result { () throws(JournalError) -> Result in try body(bytes) }
        }
        return try outcome.get()
    }
}
