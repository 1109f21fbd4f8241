import Foundation
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// A connected, blocking TCP socket with a receive timeout and TCP_NODELAY: what the demo's and the tests'
/// clients (``RESPClient``, ``HTTPClient``) speak their protocols over.
final class BlockingSocket {
    let fd: Int32

    /// Connects to `host:port`; reads time out after `timeoutSeconds`.
    init(host: String, port: Int, timeoutSeconds: Int) throws {
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

    /// Sends every byte (a closed peer is an error, never a SIGPIPE).
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SupervisorError(.invalidRequest, "connection lost while sending") }
            offset += n
        }
    }

    /// Receives what is there (at least one byte) into `scratch`; returns the count. A closed connection, a timeout
    /// and a failure are errors.
    func receive(into scratch: inout [UInt8]) throws -> Int {
        while true {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw SupervisorError(.invalidRequest, "connection closed by the server") }
            if n < 0 { throw SupervisorError(.invalidRequest, "read timed out or failed: \(String(cString: strerror(errno)))") }
            return n
        }
    }
}
