#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Which input a worker is executing, in memory its supervisor can read even after the worker died.
///
/// The supervisor creates a small file (on a memory file system where there is one) and names it in the
/// environment variable ``environmentVariable``. The worker maps it shared and, around every input it applies,
/// stores two words: the sequence number it *started* and the one it *finished*. A crash, a trap or a hang
/// leaves `started > finished`, naming the input exactly — even though the worker sends its results in
/// batches, so that the last results the supervisor received say nothing about what ran last.
///
/// Layout: two little-endian `UInt64` at offsets 0 (started) and 8 (finished).
public struct WorkerProgress: ~Copyable {
    /// The environment variable that names the progress file.
    public static let environmentVariable = "UNDERSTUDY_PROGRESS_FILE"
    /// The file's size in bytes.
    public static let size = 16

    private let words: UnsafeMutablePointer<UInt64>?

    /// Maps the file named by the environment (no-op progress when there is none or it cannot be mapped).
    public init() {
        self.init(path: getenv(Self.environmentVariable).map { String(cString: $0) })
    }

    /// Maps the file at `path` (no-op progress when it cannot be mapped).
    public init(path: String?) {
        guard let path else {
            words = nil
            return
        }
        let fd = open(path, O_RDWR)
        guard fd >= 0 else {
            words = nil
            return
        }
        defer { close(fd) }
        guard ftruncate(fd, off_t(Self.size)) == 0,
            let base = mmap(nil, Self.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), base != MAP_FAILED
        else {
            words = nil
            return
        }
        words = base.bindMemory(to: UInt64.self, capacity: 2)
    }

    /// Records that the input `sequence` is about to be applied.
    @inline(__always)
    public func started(_ sequence: UInt64) {
        // Aligned 8-byte stores are single-copy atomic on every platform Swift runs on; the reader is another
        // process that reads the file only after this one stopped or stalled, so no ordering beyond that is needed.
        words?[0] = sequence.littleEndian
    }

    /// Records that the input `sequence` has been applied.
    @inline(__always)
    public func finished(_ sequence: UInt64) {
        words?[1] = sequence.littleEndian
    }

    deinit {
        if let words { munmap(UnsafeMutableRawPointer(words), Self.size) }
    }

    /// Reads a progress file: the input executing when it was read (started and not finished), if any.
    public static func executing(path: String) -> UInt64? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var words: (UInt64, UInt64) = (0, 0)
        let n = withUnsafeMutableBytes(of: &words) { pread(fd, $0.baseAddress, size, 0) }
        guard n == size else { return nil }
        let started = UInt64(littleEndian: words.0)
        let finished = UInt64(littleEndian: words.1)
        return started > finished ? started : nil
    }
}
