import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking RESP2 client over TCP, for the demo's load generator, benchmarks and tests.
public final class RESPClient {
    private let fd: Int32
    private var parser = RESPReplyParser()
    private var buffer = [UInt8](repeating: 0, count: 65536)

    /// Connects to `host:port`.
    public init(host: String, port: Int, timeoutSeconds: Int = 30) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, "\(port)", &hints, &result) == 0, let info = result else {
            throw SupervisorError(.invalidRequest, "cannot resolve \(host)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw SupervisorError(.invalidRequest, "socket() failed") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SupervisorError(.invalidRequest, "cannot connect to \(host):\(port): \(message)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Encodes a command as a RESP array of bulk strings.
    public static func encode(_ args: [String]) -> [UInt8] {
        var out = Array("*\(args.count)\r\n".utf8)
        for a in args {
            let b = Array(a.utf8)
            out += Array("$\(b.count)\r\n".utf8)
            out += b
            out += [13, 10]
        }
        return out
    }

    /// Sends raw bytes.
    public func sendRaw(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SupervisorError(.invalidRequest, "connection lost while sending") }
            offset += n
        }
    }

    /// Reads the next reply (throws when the connection closes first).
    public func readReply() throws -> RESPValue {
        while true {
            if let value = try parser.next() { return value }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SupervisorError(.invalidRequest, n == 0 ? "connection closed by the server" : "read timed out or failed") }
            parser.append(buffer[0..<n])
        }
    }

    /// Sends one command and waits for its reply.
    public func call(_ args: String...) throws -> RESPValue { try call(args) }

    /// Sends one command and waits for its reply.
    public func call(_ args: [String]) throws -> RESPValue {
        try sendRaw(Self.encode(args))
        return try readReply()
    }

    /// Sends many commands at once and reads all their replies, in order.
    public func pipeline(_ commands: [[String]]) throws -> [RESPValue] {
        var out: [UInt8] = []
        for c in commands { out += Self.encode(c) }
        try sendRaw(out)
        var replies: [RESPValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands { replies.append(try readReply()) }
        return replies
    }
}
