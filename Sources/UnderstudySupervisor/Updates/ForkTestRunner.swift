import Foundation
import Logging
import NIOCore
import NIOPosix
import UnderstudyFrontend
import UnderstudyWire

/// Runs a user's test command against a temporary loopback RESP listener that serves a fork of the
/// candidate's state, so tests never touch the state that will be swapped in.
///
/// The command runs under `/bin/sh -c` with `UNDERSTUDY_TEST_HOST`, `UNDERSTUDY_TEST_PORT` and
/// `UNDERSTUDY_TEST_ADDR` in its environment; exit status 0 passes.
struct ForkTestRunner {
    let candidate: WorkerInstance
    let threadPool: NIOThreadPool
    let logger: Logger

    struct Result {
        var status: Int32
        var outputTail: String
    }

    func run(command: String, timeout: TimeAmount = .seconds(120)) -> EventLoopFuture<Result> {
        let loop = candidate.loop
        let forkID = UInt32.random(in: 1...UInt32.max)
        let candidate = self.candidate
        // The test clients' channels live on the candidate's loop (the bootstrap's only one), where it is bound.
        let bound = NIOLoopBound(candidate, eventLoop: loop)
        let threadPool = self.threadPool
        return candidate.request(.forkCreate(forkID: forkID)).assumeIsolated().flatMap { _ in
            ServerBootstrap(group: loop)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPCommandDecoder()))
                        try channel.pipeline.syncOperations.addHandler(ForkConnectionHandler(candidate: bound.value, forkID: forkID))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
        }.flatMap { listener in
            let port = listener.localAddress?.port ?? 0
            return threadPool.runIfActive(eventLoop: loop) { () -> Result in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/sh")
                process.arguments = ["-c", command]
                var env = ProcessInfo.processInfo.environment
                env["UNDERSTUDY_TEST_HOST"] = "127.0.0.1"
                env["UNDERSTUDY_TEST_PORT"] = "\(port)"
                env["UNDERSTUDY_TEST_ADDR"] = "127.0.0.1:\(port)"
                process.environment = env
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                process.standardInput = FileHandle.nullDevice
                try process.run()
                let deadline = Date().addingTimeInterval(Double(timeout.nanoseconds) / 1e9)
                var output = Data()
                let reader = pipe.fileHandleForReading
                while true {
                    let chunk = reader.availableData
                    if chunk.isEmpty { break }
                    output.append(chunk)
                    if output.count > 1 << 20 { output = output.suffix(1 << 16) }
                    if Date() > deadline {
                        process.terminate()
                        break
                    }
                }
                process.waitUntilExit()
                let tail = String(decoding: output.suffix(2000), as: UTF8.self)
                return Result(status: process.terminationStatus, outputTail: tail)
            }.assumeIsolated().always { _ in
                listener.close(promise: nil)
                _ = candidate.request(.forkDrop(forkID: forkID))
            }.nonisolated()
        }.nonisolated()
    }
}

/// Serves one test client against a fork: every command becomes a `forkApply`.
// Not Sendable: used only on its channel's event loop, the core loop.
final class ForkConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = RESPInput
    typealias OutboundOut = ByteBuffer
    let candidate: WorkerInstance
    let forkID: UInt32
    private var sequence: UInt64 = 1 << 62
    private var chain: EventLoopFuture<Void>?

    init(candidate: WorkerInstance, forkID: UInt32) {
        self.candidate = candidate
        self.forkID = forkID
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        switch unwrapInboundIn(data) {
        case .protocolError(let message):
            channel.writeAndFlush(ByteBuffer(bytes: RESPValue.errorBytes("ERR Protocol error: \(message)")), promise: nil)
            channel.close(promise: nil)
        case .command(let args):
            if String(decoding: args[0], as: UTF8.self).uppercased() == "QUIT" {
                channel.writeAndFlush(ByteBuffer(bytes: RESPValue.ok), promise: nil)
                channel.close(promise: nil)
                return
            }
            sequence += 1
            let request = ApplyRequest(
                sequence: sequence, time: Int64(Date().timeIntervalSince1970 * 1000), seed: UInt64.random(in: 0...UInt64.max),
                tag: InputTag.resp, payload: CommandCodec.encode(args))
            let reply = candidate.request(.forkApply(forkID: forkID, request: request))
            reply.whenComplete { result in
                let bytes: [UInt8]
                switch result {
                case .success(.forkResult(_, let response)): bytes = response
                case .success: bytes = RESPValue.errorBytes("ERR unexpected reply from the candidate")
                case .failure(let e): bytes = RESPValue.errorBytes("ERR candidate: \(e)")
                }
                channel.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
            }
        }
    }
}
