#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// The exclusive hold a journal has on its directory: a POSIX record lock on the directory's `LOCK` file
/// against other processes, plus a process-wide registry against a second journal in this process.
///
/// Why record locks (`fcntl(F_SETLK)`) and not `flock`: an `flock` belongs to the open file description,
/// and every child this process forks shares that description until it `exec`s (O_CLOEXEC closes it only
/// then). A supervisor or test that spawns workers while another journal closes could leave the lock held
/// by a half-started child, and a reopen of the directory moments later failed with "locked by" our own
/// pid. Record locks belong to the process, are never inherited by children, and are released by the
/// kernel when the process dies (SIGKILL included). They do not conflict within one process, which is
/// what the registry is for; and because closing *any* descriptor of the file drops the process's record
/// locks, only the holder ever opens a directory's `LOCK` file (the registry is checked first).
struct DirectoryLock: Sendable {
    /// A directory by identity, so two spellings of one path are one directory.
    private struct Identity: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64
    }

    private static let held = Mutex<Set<Identity>>([])

    private let identity: Identity
    private let fd: Int32

    static func acquire(_ directory: String) throws(JournalError) -> DirectoryLock {
        var info = stat()
        guard stat(directory, &info) == 0 else { throw JournalError.io("stat", path: directory, errno: errno) }
        let identity = Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        let inserted = Self.held.withLock { $0.insert(identity).inserted }
        guard inserted else { throw JournalError.locked(directory, pid: getpid()) }
        do throws(JournalError) {
            let fd = try Self.lockFile(directory)
            return DirectoryLock(identity: identity, fd: fd)
        } catch {
            Self.held.withLock { _ = $0.remove(identity) }
            throw error
        }
    }

    /// Releases the hold. The descriptor is closed before the registry entry goes, so another journal in
    /// this process can never open the file while ours is still open (its close would drop the new lock).
    func release() {
        FileSystem.close(self.fd)
        Self.held.withLock { _ = $0.remove(self.identity) }
    }

    private static func lockFile(_ directory: String) throws(JournalError) -> Int32 {
        let path = FileSystem.join(directory, "LOCK")
        let fd: Int32
        do throws(JournalError) {
            fd = try FileSystem.open(path, O_RDWR | O_CREAT)
        } catch {
            if let code = error.errorNumber, [EACCES, EPERM, EROFS].contains(code) {
                throw JournalError.directoryNotWritable(directory, errno: code)
            }
            throw error
        }
        var request = Self.wholeFileWriteLock()
        while fcntl(fd, F_SETLK, &request) != 0 {
            let code = errno
            if code == EINTR { continue }
            defer { FileSystem.close(fd) }
            if code == EAGAIN || code == EACCES {
                throw JournalError.locked(directory, pid: Self.holder(fd, path: path))
            }
            throw JournalError.io("fcntl(F_SETLK)", path: path, errno: code)
        }
        do throws(JournalError) {
            try FileSystem.truncate(fd, path: path, to: 0)
            let text = Array("\(getpid())\n".utf8)
            try text.withBytes { (bytes) throws(JournalError) in
                guard pwrite(fd, bytes.baseAddress, bytes.count, 0) == bytes.count else {
                    let code = errno
                    if [EACCES, EPERM, EROFS].contains(code) {
                        throw JournalError.directoryNotWritable(directory, errno: code)
                    }
                    throw JournalError.io("write", path: path, errno: code)
                }
            }
        } catch {
            FileSystem.close(fd)
            throw error
        }
        return fd
    }

    /// The process holding the lock: the kernel's answer, else the pid its holder wrote into the file.
    private static func holder(_ fd: Int32, path: String) -> Int32? {
        var query = Self.wholeFileWriteLock()
        if fcntl(fd, F_GETLK, &query) == 0, query.l_type != Int16(F_UNLCK), query.l_pid > 0 {
            return query.l_pid
        }
        let contents = (try? FileSystem.read(fd, path: path, offset: 0, count: 32)) ?? []
        let text = String(decoding: contents, as: UTF8.self)
        return Int32(text.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "")
    }

    private static func wholeFileWriteLock() -> flock {
        var request = flock()
        request.l_type = Int16(F_WRLCK)
        request.l_whence = Int16(SEEK_SET)
        request.l_start = 0
        request.l_len = 0
        return request
    }
}
