import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A parsed RESP2 reply.
indirect enum RESPValue: Equatable, Comparable, CustomStringConvertible {
    case simple([UInt8]), error([UInt8]), integer(Int64), bulk([UInt8]?), array([RESPValue]?)

    /// Orders by the RESP bytes (binary safe: bytes that are not UTF-8 stay distinct).
    static func < (a: RESPValue, b: RESPValue) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    /// The RESP2 encoding.
    var bytes: [UInt8] {
        func line(_ type: Character, _ text: [UInt8]) -> [UInt8] { Array(String(type).utf8) + text + [13, 10] }
        switch self {
        case .simple(let s): return line("+", s)
        case .error(let s): return line("-", s)
        case .integer(let n): return line(":", Array(String(n).utf8))
        case .bulk(nil): return line("$", Array("-1".utf8))
        case .bulk(let b?): return line("$", Array(String(b.count).utf8)) + b + [13, 10]
        case .array(nil): return line("*", Array("-1".utf8))
        case .array(let items?): return line("*", Array(String(items.count).utf8)) + items.flatMap(\.bytes)
        }
    }

    var description: String {
        switch self {
        case .simple(let s): "+" + String(decoding: s, as: UTF8.self).debugDescription
        case .error(let s): "-" + String(decoding: s, as: UTF8.self).debugDescription
        case .integer(let n): ":\(n)"
        case .bulk(nil): "(nil)"
        case .bulk(let b?): String(decoding: b, as: UTF8.self).debugDescription + "#\(b.count)"
        case .array(nil): "*nil"
        case .array(let a?): "[" + a.map(\.description).joined(separator: ", ") + "]"
        }
    }

    /// Parses one reply from `bytes` at `i`; nil when incomplete.
    static func parse(_ bytes: [UInt8], _ i: inout Int) -> RESPValue? {
        func line(_ i: inout Int) -> [UInt8]? {
            var j = i
            while j + 1 < bytes.count {
                if bytes[j] == 13 && bytes[j + 1] == 10 {
                    let l = Array(bytes[i..<j])
                    i = j + 2
                    return l
                }
                j += 1
            }
            return nil
        }
        guard i < bytes.count else { return nil }
        let start = i
        let t = bytes[i]
        i += 1
        guard let l = line(&i) else { i = start; return nil }
        switch t {
        case UInt8(ascii: "+"): return .simple(l)
        case UInt8(ascii: "-"): return .error(l)
        case UInt8(ascii: ":"): return .integer(Int64(String(decoding: l, as: UTF8.self))!)
        case UInt8(ascii: "$"):
            let n = Int(String(decoding: l, as: UTF8.self))!
            if n < 0 { return .bulk(nil) }
            guard i + n + 2 <= bytes.count else { i = start; return nil }
            let b = Array(bytes[i..<(i + n)])
            i += n + 2
            return .bulk(b)
        case UInt8(ascii: "*"):
            let n = Int(String(decoding: l, as: UTF8.self))!
            if n < 0 { return .array(nil) }
            var items: [RESPValue] = []
            for _ in 0..<n {
                guard let v = parse(bytes, &i) else { i = start; return nil }
                items.append(v)
            }
            return .array(items)
        default:
            fatalError("bad RESP type byte \(t)")
        }
    }

    static func parseAll(_ bytes: [UInt8]) -> RESPValue {
        var i = 0
        return parse(bytes, &i)!
    }
}

/// A tiny blocking RESP client over TCP, pipelining batches.
final class RESPClient {
    let fd: Int32
    var buffer: [UInt8] = []
    var offset = 0

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            close(fd)
            throw HarnessError("connect to 127.0.0.1:\(port) failed: errno \(errno)")
        }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    static func encode(_ args: [[UInt8]], into out: inout [UInt8]) {
        out.append(contentsOf: "*\(args.count)\r\n".utf8)
        for a in args {
            out.append(contentsOf: "$\(a.count)\r\n".utf8)
            out.append(contentsOf: a)
            out.append(contentsOf: [13, 10])
        }
    }

    /// Sends commands without reading replies.
    func send(_ commands: [[[UInt8]]]) throws {
        var out: [UInt8] = []
        for c in commands { Self.encode(c, into: &out) }
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { throw HarnessError("write failed") }
            sent += n
        }
    }

    /// Sends commands and returns each reply's raw bytes.
    func pipeline(_ commands: [[[UInt8]]]) throws -> [[UInt8]] {
        try send(commands)
        var replies: [[UInt8]] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while replies.count < commands.count {
            var i = offset
            if RESPValue.parse(buffer, &i) != nil {
                replies.append(Array(buffer[offset..<i]))
                offset = i
                continue
            }
            buffer.removeFirst(offset)
            offset = 0
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { throw HarnessError("read failed (\(n), errno \(errno)) after \(replies.count) of \(commands.count) replies; buffer tail \(String(decoding: buffer.suffix(200), as: UTF8.self).debugDescription)") }
            buffer.append(contentsOf: chunk[0..<n])
        }
        return replies
    }

    func call(_ args: String...) throws -> [UInt8] {
        try pipeline([args.map { Array($0.utf8) }])[0]
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A redis-server child process on a free port.
final class RedisServer {
    static var executable: String? {
        for p in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: p) {
            return p
        }
        return nil
    }

    /// True when a redis-server executable is installed (the condition of the tests that need one).
    static var isAvailable: Bool { executable != nil }

    let process = Process()
    let port: UInt16
    /// The server's working directory (CONFIG SET appendonly yes writes there), removed by ``stop()``.
    let directory: String
    var stopped = false

    static func freePort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: addr.sin_port)
    }

    init(executable: String) throws {
        port = Self.freePort()
        directory = NSTemporaryDirectory() + "kv-redis-\(getpid())-\(port)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: executable)
        // One database, as this service has (SELECT 1 and COPY ... DB 1 fail on both).
        process.arguments = ["--port", String(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
                             "--databases", "1", "--dir", directory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func connect() throws -> RESPClient {
        for _ in 0..<100 {
            if let c = try? RESPClient(port: port) { return c }
            usleep(20_000)
        }
        throw HarnessError("redis-server on port \(port) did not come up")
    }

    func stop() {
        let pid = process.processIdentifier
        if pid > 0 && !stopped {
            stopped = true
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    deinit { stop() }
}
