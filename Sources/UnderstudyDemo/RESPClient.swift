import Foundation
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking RESP2 client over TCP, for the demo's load generator, benchmarks and tests.
public final class RESPClient {
    private let socket: BlockingSocket
    private var parser = RESPReplyParser()
    private var buffer = [UInt8](repeating: 0, count: 65536)

    /// Connects to `host:port`.
    public init(host: String, port: Int, timeoutSeconds: Int = 30) throws {
        socket = try BlockingSocket(host: host, port: port, timeoutSeconds: timeoutSeconds)
    }

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
        try socket.send(bytes)
    }

    /// Reads the next reply (throws when the connection closes first).
    public func readReply() throws -> RESPValue {
        while true {
            if let value = try parser.next() { return value }
            let n = try socket.receive(into: &buffer)
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
