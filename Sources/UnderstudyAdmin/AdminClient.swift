import Foundation
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 client for the admin API, used by the CLI and the tests.
public struct AdminClient: Sendable {
    /// The admin address.
    public var address: ListenAddress
    /// The bearer token for state-changing calls.
    public var token: String?
    /// Seconds to wait for a reply.
    public var timeout: Double

    /// Creates a client.
    public init(address: ListenAddress, token: String?, timeout: Double = 300) {
        self.address = address
        self.token = token
        self.timeout = timeout
    }

    /// An HTTP reply.
    public struct Reply: Sendable {
        public var status: Int
        public var body: Data
        public var text: String { String(decoding: body, as: UTF8.self) }
        /// Decodes the body as JSON.
        public func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try JSONDecoder().decode(type, from: body)
        }
    }

    /// `GET path`.
    public func get(_ path: String) throws -> Reply { try send("GET", path, body: nil) }

    /// `POST path` with an optional JSON body.
    public func post(_ path: String, json: Data? = nil) throws -> Reply { try send("POST", path, body: json) }

    /// Sends one request over a fresh connection.
    public func send(_ method: String, _ path: String, body: Data?, authorize: Bool = true) throws -> Reply {
        let fd = try connect()
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\nUser-Agent: understudy-cli\r\n"
        if authorize, let token { head += "Authorization: Bearer \(token)\r\n" }
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        } else if method == "POST" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        var out = Array(head.utf8)
        if let body { out += Array(body) }
        var offset = 0
        while offset < out.count {
            let n = out.withUnsafeBytes { write(fd, $0.baseAddress! + offset, out.count - offset) }
            guard n > 0 else { throw SupervisorError(.invalidRequest, "cannot write to the admin API at \(address)") }
            offset += n
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            response.append(contentsOf: buffer[0..<n])
        }
        return try Self.parse(response, from: address)
    }

    static func parse(_ bytes: [UInt8], from address: ListenAddress) throws -> Reply {
        guard let split = bytes.firstRange(of: [13, 10, 13, 10]) else {
            throw SupervisorError(.invalidRequest, "the admin API at \(address) sent an incomplete reply")
        }
        let head = String(decoding: bytes[..<split.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw SupervisorError(.invalidRequest, "the admin API at \(address) sent a malformed status line")
        }
        var body = Array(bytes[split.upperBound...])
        if lines.contains(where: { $0.lowercased().hasPrefix("transfer-encoding:") && $0.lowercased().contains("chunked") }) {
            var decoded: [UInt8] = []
            var i = 0
            while i < body.count {
                guard let lineEnd = body[i...].firstRange(of: [13, 10]) else { break }
                let sizeText = String(decoding: body[i..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
                let start = lineEnd.upperBound
                guard start + size <= body.count else { break }
                decoded += body[start..<(start + size)]
                i = start + size + 2
            }
            body = decoded
        }
        return Reply(status: status, body: Data(body))
    }

    func connect() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address.host, "\(address.port)", &hints, &result)
        guard rc == 0, let info = result else {
            throw SupervisorError(.invalidRequest, "cannot resolve the admin address \(address)")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw SupervisorError(.invalidRequest, "socket(): \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SupervisorError(
                .invalidRequest,
                "cannot reach the supervisor's admin API at \(address): \(message). Is `understudy run` running, and is --admin right?")
        }
        return fd
    }
}
