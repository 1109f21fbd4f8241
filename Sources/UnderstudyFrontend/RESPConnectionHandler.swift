import NIOCore
import UnderstudyWire

/// One client connection: answers connection-scoped commands itself, sends the rest through the
/// pipeline, and writes replies strictly in request order.
///
/// Runs on the core event loop, like the pipeline, so submitting a request is a plain call.
// Not Sendable: it lives on its channel's event loop, the core loop, and the compiler keeps it there (its
// deferred steps go through `assumeIsolated()`, which checks the loop).
final class RESPConnectionHandler: ChannelInboundHandler, Flushable, ThrottledConnection {
    typealias InboundIn = RESPInput
    typealias OutboundOut = ByteBuffer

    /// Where commands go to be journaled and applied: the request path.
    let pipeline: any RequestIntake
    let clientID: Int64
    /// The largest journaled input: a command or a whole MULTI/EXEC transaction (``RESPLimits/maximumInputBytes``).
    let maximumInputBytes: Int
    private var context: ChannelHandlerContext?
    private var slots = CircularBuffer<[UInt8]?>()
    private var slotBase = 0
    private var wroteSinceFlush = false
    private var closeAfterReplies = false
    private var inMulti = false
    private var multiQueue: [[[UInt8]]] = []
    /// The encoded size of the commands in `multiQueue` (``CommandCodec/encodedSize(_:)`` of each).
    private var multiQueueBytes = 0
    private var multiFailed = false
    /// The connection has journaled a WATCH that no EXEC, DISCARD or UNWATCH has cleared yet: the service holds
    /// watches for it, so its EXEC, DISCARD, UNWATCH and disconnect are journaled too.
    private var watching = false
    /// The primary's declared commands (nil: not declared): what MULTI queues, and whether WATCH is offered.
    private let commandTable: () -> CommandTable?
    /// Where this supervisor process's connections begin in the journal (shared by all its connections).
    private let connections: ConnectionEpoch
    private var name: [UInt8]?
    /// Who may connect and what each user may do.
    let access: AccessControl
    /// The connection's user; nil until it authenticates (when authentication is required). It lives here, in
    /// the connection, so swaps, failovers and deploys — which never touch client connections — keep it.
    private var user: ACLUser?
    /// The user may run every command on every key: data commands skip the permission check (the hot path).
    private var unrestricted: Bool
    /// The slot of an unanswered command that may block (``Hello/blockingCommands``): until it is answered nothing
    /// more from this connection is submitted, as Redis runs nothing more from a blocked client.
    private var awaitingSlot: Int?
    /// That command's sequence number, once the service said it blocked.
    private var pendingSequence: UInt64?
    /// The service holds a blocked request of this connection, so its disconnect is journaled.
    private var holdsBlocked = false
    /// Inputs that arrived behind a blocking command, in order.
    private var heldInputs = CircularBuffer<RESPInput>()
    /// Reads are off because too many inputs are held.
    private var readsPaused = false
    private var drainScheduled = false
    /// The client went away.
    private var closed = false
    /// Past this many held inputs the connection stops reading until they are submitted.
    static let maximumHeldInputs = 1024

    /// Creates the handler of one connection.
    ///
    /// - Parameters:
    ///   - pipeline: Where commands go to be journaled and applied.
    ///   - clientID: The connection's id (`CLIENT ID`).
    ///   - maximumInputBytes: The largest journaled input (default ``UnderstudyLimits/maxInputBytes``); a larger
    ///     command or MULTI queue is refused before it reaches the pipeline.
    ///   - access: The users (default: none required, everything allowed).
    ///   - connections: Where this supervisor process's connections begin in the journal, shared by all of them
    ///     (default: one of the handler's own).
    ///   - commandTable: The service's declared commands (default: the primary's, asked each time it is needed,
    ///     since a swap may change the primary).
    init(
        pipeline: any RequestIntake, clientID: Int64, maximumInputBytes: Int = UnderstudyLimits.maxInputBytes,
        access: AccessControl = .open, connections: ConnectionEpoch? = nil,
        commandTable: (() -> CommandTable?)? = nil
    ) {
        self.pipeline = pipeline
        self.clientID = clientID
        self.maximumInputBytes = maximumInputBytes
        self.access = access
        self.connections = connections ?? ConnectionEpoch()
        self.commandTable = commandTable ?? { pipeline.serviceHello?.commands }
        self.user = access.initialUser
        self.unrestricted = access.initialUser?.allowsEverything ?? false
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        deliver(unwrapInboundIn(data))
    }

    /// Handles one decoded input (called directly by the decoder on the hot path).
    func deliver(_ input: RESPInput) {
        guard !closeAfterReplies else { return }
        if awaitingSlot != nil || !heldInputs.isEmpty {
            heldInputs.append(input)
            if heldInputs.count >= Self.maximumHeldInputs && !readsPaused, let context {
                readsPaused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
            return
        }
        process(input)
    }

    private func process(_ input: RESPInput) {
        switch input {
        case .protocolError(let message):
            reply(RESPValue.errorBytes("ERR Protocol error: \(message)"))
            closeAfterReplies = true
        case .command(let args):
            handle(args)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        if let seq = pendingSequence {
            // Blocked: nothing more from this client runs (as in Redis), and its reply is nobody's.
            giveUpBlocked(seq)
        }
        // Behind a command that may still be answered at once, what the client sent runs first (as Redis would
        // have run it; see drainHeld), and the close is journaled after it.
        if awaitingSlot == nil { journalClose() }
        context.fireChannelInactive()
    }

    /// The client of a blocked command went away: its held inputs are dropped and its reply is nobody's; the
    /// service forgets the request when the close is journaled.
    private func giveUpBlocked(_ seq: UInt64) {
        pendingSequence = nil
        awaitingSlot = nil
        heldInputs.removeAll()
        pipeline.forgetPending(seq)
    }

    /// Journals the connection's close when the service holds something for it (watches, a blocked request), so
    /// it forgets them (bounded state); nobody reads the reply.
    private func journalClose() {
        guard watching || holdsBlocked else { return }
        watching = false
        holdsBlocked = false
        connections.begin(pipeline)
        pipeline.submit(tag: InputTag.connectionClosed, payload: ConnectionInput.encode(connection: clientID), sink: nil)
    }

    private static func upper(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).uppercased()
    }

    /// Whether a command name may be one the connection answers itself (QUIT, MULTI, DISCARD, EXEC, WATCH,
    /// UNWATCH, SELECT, CLIENT, AUTH, HELLO, ACL), judged from its length and first letter without building a
    /// string.
    private static func mayBeConnectionCommand(_ name: [UInt8]) -> Bool {
        guard let first = name.first else { return true }
        switch (name.count, first | 0x20) {
        case (4, UInt8(ascii: "q")), (5, UInt8(ascii: "m")), (7, UInt8(ascii: "d")), (4, UInt8(ascii: "e")),
            (5, UInt8(ascii: "w")), (7, UInt8(ascii: "u")), (6, UInt8(ascii: "s")), (6, UInt8(ascii: "c")),
            (4, UInt8(ascii: "a")), (5, UInt8(ascii: "h")), (3, UInt8(ascii: "a")):
            return true
        default:
            return false
        }
    }

    private func handle(_ args: [[UInt8]]) {
        // The hot path: data commands of a user who may run everything go straight to the pipeline.
        if unrestricted && !inMulti && !Self.mayBeConnectionCommand(args[0]) {
            if pipeline.mayBlock(args[0]) {
                remoteBlocking(args)
            } else {
                remote(tag: InputTag.resp, payload: CommandCodec.encode(args))
            }
            return
        }
        let command = Self.upper(args[0])
        // Checked before anything is queued or journaled.
        if !unrestricted, let refusal = refusal(command, args) {
            reply(refusal)
            if inMulti { multiFailed = true }
            return
        }
        switch command {
        case "AUTH", "HELLO", "ACL":
            if inMulti {
                // Credentials are never queued (nor journaled).
                multiFailed = true
                reply(RESPValue.errorBytes("ERR Command not allowed inside a transaction"))
            } else if command == "AUTH" {
                auth(args)
            } else if command == "HELLO" {
                hello(args)
            } else {
                acl(args)
            }
            return
        case "QUIT":
            reply(RESPValue.ok)
            closeAfterReplies = true
            return
        case "MULTI":
            if inMulti {
                reply(RESPValue.errorBytes("ERR MULTI calls can not be nested"))
            } else {
                inMulti = true
                multiQueue = []
                multiQueueBytes = 0
                multiFailed = false
                reply(RESPValue.ok)
            }
            return
        case "DISCARD":
            if inMulti {
                inMulti = false
                multiQueue = []
                multiQueueBytes = 0
                // DISCARD forgets the watches too (the service answers the UNWATCH with the same +OK).
                if watching { unwatch(answering: nil) } else { reply(RESPValue.ok) }
            } else {
                reply(RESPValue.errorBytes("ERR DISCARD without MULTI"))
            }
            return
        case "EXEC":
            guard inMulti else {
                reply(RESPValue.errorBytes("ERR EXEC without MULTI"))
                return
            }
            inMulti = false
            let queued = multiQueue
            multiQueue = []
            multiQueueBytes = 0
            if multiFailed {
                let abort = RESPValue.errorBytes("EXECABORT Transaction discarded because of previous errors.")
                if watching { unwatch(answering: abort) } else { reply(abort) }
            } else if watching {
                // The service decides from its journaled watches: the replies, or a null array.
                watching = false
                connections.begin(pipeline)
                remote(
                    tag: InputTag.connectionTransaction,
                    payload: ConnectionInput.encode(connection: clientID, body: CommandCodec.encodeTransaction(queued)))
            } else if queued.isEmpty {
                reply(Array("*0\r\n".utf8))
            } else {
                remote(tag: InputTag.respTransaction, payload: CommandCodec.encodeTransaction(queued))
            }
            return
        case "WATCH":
            if inMulti {
                reply(RESPValue.errorBytes("ERR WATCH inside MULTI is not allowed"))
            } else if serviceCommands()?.supportsWatch != true {
                reply(RESPValue.errorBytes("ERR WATCH is not supported by this server"))
            } else if args.count < 2 {
                reply(CommandTable.arityError("watch"))
            } else {
                watching = true
                connections.begin(pipeline)
                remote(tag: InputTag.connectionCommand,
                       payload: ConnectionInput.encode(connection: clientID, body: CommandCodec.encode(args)))
            }
            return
        case "UNWATCH":
            if serviceCommands()?.supportsWatch != true {
                reply(RESPValue.errorBytes("ERR UNWATCH is not supported by this server"))
                return
            }
            // Inside MULTI it is queued like any command (and answers +OK in EXEC's reply).
            if !inMulti {
                if args.count != 1 {
                    reply(CommandTable.arityError("unwatch"))
                } else if watching {
                    unwatch(answering: nil)
                } else {
                    reply(RESPValue.ok)
                }
                return
            }
        case "SELECT" where !inMulti:
            guard args.count == 2 else {
                reply(RESPValue.errorBytes("ERR wrong number of arguments for 'select' command"))
                return
            }
            guard let index = Int(String(decoding: args[1], as: UTF8.self)) else {
                reply(RESPValue.errorBytes("ERR value is not an integer or out of range"))
                return
            }
            reply(index == 0 ? RESPValue.ok : RESPValue.errorBytes("ERR DB index is out of range"))
            return
        case "CLIENT" where !inMulti && args.count >= 2:
            let sub = Self.upper(args[1])
            switch sub {
            case "SETNAME" where args.count == 3:
                if args[2].contains(where: { $0 <= 32 || $0 >= 127 }) {
                    reply(RESPValue.errorBytes("ERR Client names cannot contain spaces, newlines or special characters."))
                } else {
                    name = args[2].isEmpty ? nil : args[2]
                    reply(RESPValue.ok)
                }
                return
            case "GETNAME" where args.count == 2:
                reply(RESPValue.bulk(name).encoded)
                return
            case "ID" where args.count == 2:
                reply(RESPValue.integer(clientID).encoded)
                return
            case "SETINFO", "NO-EVICT", "NO-TOUCH":
                reply(RESPValue.ok)
                return
            default:
                break
            }
        default:
            break
        }
        if inMulti {
            queue(args)
            return
        }
        if pipeline.mayBlock(args[0]) {
            remoteBlocking(args)
            return
        }
        remote(tag: InputTag.resp, payload: CommandCodec.encode(args))
    }

    // MARK: authentication

    static let noAuth = RESPValue.errorBytes("NOAUTH Authentication required.")
    static let wrongPass = RESPValue.errorBytes("WRONGPASS invalid username-password pair or user is disabled.")

    /// Why the connection's user may not run a command now (Redis's error line), or nil when it may.
    private func refusal(_ command: String, _ args: [[UInt8]]) -> [UInt8]? {
        // The commands Redis lets anyone run (no-auth).
        if command == "AUTH" || command == "HELLO" || command == "QUIT" { return nil }
        guard let user else { return Self.noAuth }
        if let denial = user.check(args) { return RESPValue.errorBytes(denial.redisMessage) }
        return nil
    }

    private func authenticated(as found: ACLUser) {
        user = found
        unrestricted = found.allowsEverything
    }

    /// `AUTH password` (the default user) or `AUTH username password`. A failure keeps the current user.
    private func auth(_ args: [[UInt8]]) {
        guard args.count == 2 || args.count == 3 else {
            reply(RESPValue.errorBytes("ERR wrong number of arguments for 'auth' command"))
            return
        }
        if args.count == 2 && access.users["default"]?.noPassword == true {
            reply(RESPValue.errorBytes(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"))
            return
        }
        let name = args.count == 3 ? String(decoding: args[1], as: UTF8.self) : "default"
        guard let found = access.authenticate(user: name, password: args[args.count - 1]) else {
            reply(Self.wrongPass)
            return
        }
        authenticated(as: found)
        reply(RESPValue.ok)
    }

    /// `HELLO [2 [AUTH user pass] [SETNAME name]]`: authenticates here; the service answers `HELLO [2]` (so the
    /// credentials never reach the journal).
    private func hello(_ args: [[UInt8]]) {
        var forwarded: [[UInt8]] = [args[0]]
        if args.count >= 2 {
            guard let version = Int(String(decoding: args[1], as: UTF8.self)) else {
                reply(RESPValue.errorBytes("ERR Protocol version is not an integer or out of range"))
                return
            }
            // RESP2 only: HELLO 3 is answered as by a server without RESP3.
            guard version == 2 else {
                reply(RESPValue.errorBytes("NOPROTO unsupported protocol version"))
                return
            }
            forwarded.append(args[1])
        }
        var credentials: (user: [UInt8], password: [UInt8])?
        var newName: [UInt8]?
        var j = 2
        while j < args.count {
            let more = args.count - 1 - j
            let option = Self.upper(args[j])
            if option == "AUTH" && more >= 2 {
                credentials = (args[j + 1], args[j + 2])
                j += 3
            } else if option == "SETNAME" && more >= 1 {
                newName = args[j + 1]
                j += 2
            } else {
                reply(RESPValue.errorBytes("ERR Syntax error in HELLO option '\(String(decoding: args[j], as: UTF8.self))'"))
                return
            }
        }
        if let credentials {
            guard let found = access.authenticate(user: String(decoding: credentials.user, as: UTF8.self), password: credentials.password)
            else {
                reply(Self.wrongPass)
                return
            }
            authenticated(as: found)
        }
        guard user != nil else {
            reply(RESPValue.errorBytes(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"))
            return
        }
        if let newName {
            if newName.contains(where: { $0 <= 32 || $0 >= 127 }) {
                reply(RESPValue.errorBytes("ERR Client names cannot contain spaces, newlines or special characters."))
                return
            }
            name = newName.isEmpty ? nil : newName
        }
        remote(tag: InputTag.resp, payload: CommandCodec.encode(forwarded))
    }

    /// `ACL WHOAMI`, `ACL LIST` (password hashes, never passwords), `ACL USERS`.
    private func acl(_ args: [[UInt8]]) {
        guard args.count >= 2 else {
            reply(RESPValue.errorBytes("ERR wrong number of arguments for 'acl' command"))
            return
        }
        let sub = String(decoding: args[1], as: UTF8.self).lowercased()
        switch sub {
        case "whoami", "list", "users":
            guard args.count == 2 else {
                reply(RESPValue.errorBytes("ERR wrong number of arguments for 'acl|\(sub)' command"))
                return
            }
            switch sub {
            case "whoami": reply(RESPValue.bulk(Array((user?.name ?? "default").utf8)).encoded)
            case "list": reply(RESPValue.array(access.list.map { .bulk(Array($0.utf8)) }).encoded)
            default: reply(RESPValue.array(access.users.keys.sorted().map { .bulk(Array($0.utf8)) }).encoded)
            }
        default:
            reply(RESPValue.errorBytes("ERR unknown subcommand '\(String(decoding: args[1].prefix(128), as: UTF8.self))'. Try ACL HELP."))
        }
    }

    /// The primary's command table; while there is no primary (a restart after a death with no standby), the last
    /// one seen by any connection of this process, so WATCH is not refused in the meantime.
    private func serviceCommands() -> CommandTable? {
        if let table = commandTable() {
            connections.lastCommands = table
            return table
        }
        return connections.lastCommands
    }

    /// Journals the end of the connection's watches (UNWATCH, and DISCARD or an aborted EXEC, which end them as
    /// well). The service answers +OK; `answer`, when given, is sent instead.
    private func unwatch(answering answer: [UInt8]?) {
        watching = false
        connections.begin(pipeline)
        remote(tag: InputTag.connectionCommand,
               payload: ConnectionInput.encode(connection: clientID, body: CommandCodec.encode([Array("UNWATCH".utf8)])),
               answering: answer)
    }

    /// Queues a command inside MULTI. A command the service's table refuses (unknown, wrong number of arguments)
    /// gets Redis's error and marks the transaction failed, so EXEC answers EXECABORT; so does a transaction that
    /// would exceed the largest journaled input, whose queue is dropped.
    private func queue(_ args: [[UInt8]]) {
        if let table = serviceCommands(), let refusal = table.refusal(args) {
            multiQueue = []
            multiQueueBytes = 0
            multiFailed = true
            reply(refusal)
            return
        }
        if !multiFailed {
            let bytes = multiQueueBytes + CommandCodec.encodedSize(args)
            let size = CommandCodec.encodedTransactionSize(commandCount: multiQueue.count + 1, commandBytes: bytes)
                + (watching ? ConnectionInput.headerSize : 0)
            guard size <= maximumInputBytes else {
                multiQueue = []
                multiQueueBytes = 0
                multiFailed = true
                reply(RESPValue.errorBytes("ERR MULTI queue exceeds \(maximumInputBytes) bytes; transaction discarded"))
                return
            }
            multiQueue.append(args)
            multiQueueBytes = bytes
        }
        // After a failure nothing more is kept: EXEC will only abort.
        reply(Self.queued)
    }

    private static let queued: [UInt8] = Array("+QUEUED\r\n".utf8)

    private func reply(_ bytes: [UInt8]) {
        slots.append(bytes)
        writeReady()
    }

    /// Sends a command that may block as a connection-scoped input (the service then knows whose request it holds);
    /// nothing more from this connection is submitted until it is answered.
    private func remoteBlocking(_ args: [[UInt8]]) {
        connections.begin(pipeline)
        remote(
            tag: InputTag.connectionCommand, payload: ConnectionInput.encode(connection: clientID, body: CommandCodec.encode(args)),
            mayBlock: true)
    }

    /// Sends an input through the pipeline; its reply (or `answer`, when given) takes the next reply slot.
    private func remote(tag: UInt8, payload: [UInt8], answering answer: [UInt8]? = nil, mayBlock: Bool = false) {
        // The decoder and the MULTI queue already keep inputs within the limit; this keeps the journal's promise
        // whatever decoder limits the handler was paired with.
        guard payload.count <= maximumInputBytes else {
            reply(RESPValue.errorBytes(
                "ERR input of \(payload.count) bytes exceeds the maximum of \(maximumInputBytes) bytes; not executed"))
            return
        }
        let slot = slotBase + slots.count
        slots.append(nil)
        // A strong reference: the pipeline drops the sink once it has answered, and a closed connection's
        // handler only lives until its outstanding requests are answered (no weak-reference cost per request).
        if mayBlock {
            awaitingSlot = slot
            pipeline.submit(tag: tag, payload: payload, onPending: { seq in self.blocked(seq) }) { bytes in
                self.complete(slot, answer ?? bytes)
            }
        } else {
            pipeline.submit(tag: tag, payload: payload) { bytes in
                self.complete(slot, answer ?? bytes)
            }
        }
    }

    /// The service held the awaited command's reply back (it blocked).
    private func blocked(_ seq: UInt64) {
        holdsBlocked = true
        if closed {
            giveUpBlocked(seq)
            // In a later turn: this runs inside the pipeline's release of a reply, which must not see new inputs.
            pipeline.loop.assumeIsolated().execute { self.journalClose() }
        } else {
            pendingSequence = seq
        }
    }

    private func complete(_ slot: Int, _ bytes: [UInt8]) {
        if slot == awaitingSlot {
            // Answered (at once, by a write that woke it, or on its timeout): the service holds nothing of it.
            awaitingSlot = nil
            pendingSequence = nil
            holdsBlocked = false
            if !heldInputs.isEmpty || closed { scheduleDrain() }
        }
        let offset = slot - slotBase
        guard offset >= 0 && offset < slots.count else { return }
        slots[slots.index(slots.startIndex, offsetBy: offset)] = bytes
        if offset == 0 {
            writeReady()
            pipeline.clientNeedsFlush(self)
        }
    }

    /// Submits what arrived behind an answered blocking command, in a later turn (this runs inside the pipeline's
    /// release of a reply, which must not see new inputs appear); a client that has gone journals its close after.
    private func scheduleDrain() {
        guard !drainScheduled else { return }
        drainScheduled = true
        pipeline.loop.assumeIsolated().execute { self.drainHeld() }
    }

    private func drainHeld() {
        drainScheduled = false
        while awaitingSlot == nil, !closeAfterReplies, let next = heldInputs.popFirst() {
            process(next)
        }
        if closeAfterReplies { heldInputs.removeAll() }
        if closed && awaitingSlot == nil { journalClose() }
        if readsPaused && heldInputs.isEmpty, let context {
            readsPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
        flushNow()
    }

    /// Replies ready to go, written in one go at the next flush.
    private var outbound = ByteBuffer()

    private func writeReady() {
        while let first = slots.first, let bytes = first {
            slots.removeFirst()
            slotBase += 1
            outbound.writeBytes(bytes)
            wroteSinceFlush = true
        }
    }

    var unansweredRequests: Int { slots.count }

    func flushNow() {
        guard let context else { return }
        if wroteSinceFlush {
            wroteSinceFlush = false
            context.writeAndFlush(wrapOutboundOut(outbound), promise: nil)
            outbound = context.channel.allocator.buffer(capacity: 1024)
            if slots.isEmpty { pipeline.intakeThrottle.answered(self) }
        }
        if closeAfterReplies && slots.isEmpty {
            context.close(promise: nil)
        }
    }
}
