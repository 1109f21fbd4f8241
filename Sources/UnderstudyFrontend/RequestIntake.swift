import NIOCore
import UnderstudyWire

// The one interface between the front-ends (RESP, HTTP) and the request path: a front-end parses and checks a
// client's request, hands its bytes to ``RequestIntake/submit(tag:payload:onPending:sink:)`` under its protocol's
// input tag, and writes the reply it is given back, in request order. It knows nothing of sequencing, the journal
// or the workers; the request path knows nothing of sockets or protocols (a front-end registers how the
// supervisor's own replies look in its protocol).

/// What a front-end asks of the request path. Everything here is called on ``loop`` (the core event loop, where
/// client channels live too), so a submit is a plain call: no locks, no hops.
package protocol RequestIntake: AnyObject {
    /// The core event loop: client channels, the request path and every sink run on it.
    var loop: any EventLoop { get }
    /// Backpressure on client reads while a standby falls behind (``IntakeThrottleHandler`` consults it).
    var intakeThrottle: IntakeThrottle { get }
    /// This supervisor follows another's journal (a standby supervisor): it journals nothing itself.
    var followsJournal: Bool { get }
    /// The greeting of the service the primary runs (nil while there is none): its declared commands, the commands
    /// that may block, and its HTTP routes. It may change with a deploy, so front-ends ask when they need it.
    var serviceHello: Hello? { get }

    /// Sequences, journals and applies one client input (or holds it while intake is paused), and calls `sink` with
    /// the reply once it may be released.
    ///
    /// - Parameters:
    ///   - tag: The input's protocol tag (``InputTag``).
    ///   - payload: The input's bytes, as journaled and given to the service.
    ///   - onPending: Told the input's sequence number if the service holds its reply back (a blocked command).
    ///   - sink: Where the reply goes (nil: nobody waits for it).
    func submit(tag: UInt8, payload: [UInt8], onPending: PendingSink?, sink: ReplySink?)
    /// The client waiting for this held-back reply went away: nobody gets it.
    func forgetPending(_ sequence: UInt64)
    /// Whether the service declared the command `name` (upper case) as one that may block.
    func mayBlock(_ name: [UInt8]) -> Bool
    /// Flushes `client` once at the end of this event-loop turn (after the replies released in it).
    func clientNeedsFlush(_ client: any Flushable)
    /// Makes the supervisor's own replies to inputs of `tag` look like `formatter`'s (RESP unless registered).
    func registerFailureFormatter(tag: UInt8, _ formatter: @escaping FailureFormatter)
}

extension RequestIntake {
    /// Submits an input whose reply is never held back by the service.
    package func submit(tag: UInt8, payload: [UInt8], sink: ReplySink?) {
        submit(tag: tag, payload: payload, onPending: nil, sink: sink)
    }
}

/// A protocol's front-end: sets up each client channel the supervisor accepts (plain or after TLS).
package protocol ClientFrontend: AnyObject {
    /// Adds the front-end's handlers to a new client channel (after whatever is already there, such as TLS).
    func initialize(_ channel: any Channel) throws
    /// The supervisor stops: connections close once their outstanding replies are written.
    func shutdown()
}

/// Where a request's reply goes once it may be released (called on the core event loop).
package typealias ReplySink = ([UInt8]) -> Void

/// Told a request's sequence number when the service holds its reply back (a blocked command), so that a client
/// that goes away can give up waiting (called on the core event loop).
package typealias PendingSink = (UInt64) -> Void

/// Why the supervisor itself answers a request (the service never saw it, or it was quarantined).
package enum PipelineFailure: Sendable, Equatable {
    /// The supervisor is stopping.
    case shuttingDown
    /// Intake is paused and the hold queue is full.
    case busy
    /// The journal could not take the input (the message says why); nothing was applied.
    case journal(String)
    /// The input made an instance trap, exit or pass the deadline; it is never applied again.
    case quarantined(sequence: UInt64, reason: String)
    /// The primary role was given up.
    case unavailable(String)
    /// This supervisor is a standby (or was just taken over): another supervisor holds the journal.
    case readOnly

    /// The message, protocol-neutral.
    package var message: String {
        switch self {
        case .shuttingDown: return "the server is shutting down"
        case .busy: return "intake is paused (swap or failover in progress) and the hold queue is full; retry"
        case .journal(let why): return "journal write failed: \(why); the request was not applied"
        case .quarantined(let seq, let reason): return "request quarantined: \(reason) (sequence \(seq))"
        case .unavailable(let why): return "service unavailable: the primary was given up after repeated failures to start (\(why))"
        case .readOnly: return "You can't write against a standby supervisor"
        }
    }

    /// The reply a Redis-protocol client gets.
    package var respBytes: [UInt8] {
        switch self {
        case .busy: return RESPValue.errorBytes("BUSY " + message)
        case .readOnly: return RESPValue.errorBytes("READONLY " + message)
        default: return RESPValue.errorBytes("ERR " + message)
        }
    }
}

/// Formats the supervisor's own replies in a front-end's protocol, by input tag (RESP unless a front-end
/// registered another formatter for its tag).
package typealias FailureFormatter = (PipelineFailure) -> [UInt8]

/// Something that wants to be flushed once per event-loop turn (a client connection).
package protocol Flushable: AnyObject {
    func flushNow()
}

