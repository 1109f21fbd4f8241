import Foundation
import UnderstudySupervisor
import UnderstudyWire

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking HTTP/1.1 client over one keep-alive TCP connection, for the demo's load generator and tests.
///
/// It speaks just what they need: requests with a Content-Length body, responses with Content-Length (or none);
/// any error leaves the connection unusable (make a new client).
public final class HTTPClient {
    /// A response as received.
    public struct Response: Sendable {
        /// The status code.
        public var status: Int
        /// The headers (lower-case names).
        public var headers: [String: String]
        /// The body.
        public var body: [UInt8]
        /// The body parsed as JSON, if it is.
        public var json: JSONValue? { try? JSONValue(parsing: body) }
        /// The body as text.
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    private let socket: BlockingSocket
    private var buffer: [UInt8] = []
    private var scratch = [UInt8](repeating: 0, count: 65536)
    /// The server said `connection: close`.
    public private(set) var closed = false

    /// Connects to `host:port`.
    public init(host: String, port: Int, timeoutSeconds: Int = 30) throws {
        socket = try BlockingSocket(host: host, port: port, timeoutSeconds: timeoutSeconds)
    }

    /// The bytes of a request.
    public static func encode(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nhost: localhost\r\n"
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" || method == "PUT" { text += "content-length: \(body.count)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }

    /// Sends raw bytes.
    public func sendRaw(_ bytes: [UInt8]) throws {
        try socket.send(bytes)
    }

    private func fill() throws {
        let n = try socket.receive(into: &scratch)
        buffer.append(contentsOf: scratch[0..<n])
    }

    /// Reads one response.
    public func readResponse() throws -> Response {
        var headEnd: Int?
        while headEnd == nil {
            if buffer.count >= 4 {
                for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
                    headEnd = i
                    break
                }
            }
            if headEnd == nil { try fill() }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw SupervisorError(.invalidRequest, "malformed status line: \(head.prefix(80))")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headEnd! + 4
        while buffer.count < bodyStart + length { try fill() }
        let body = Array(buffer[bodyStart..<bodyStart + length])
        buffer.removeFirst(bodyStart + length)
        if headers["connection"]?.lowercased() == "close" { closed = true }
        return Response(status: status, headers: headers, body: body)
    }

    /// Sends a request and reads its response.
    public func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> Response {
        try sendRaw(Self.encode(method, target, headers: headers, body: body))
        return try readResponse()
    }

    /// Sends a request with a JSON body.
    public func request(_ method: String, _ target: String, headers: [(String, String)] = [], json: JSONValue) throws -> Response {
        try request(method, target, headers: [("content-type", "application/json")] + headers, body: json.encoded)
    }
}
