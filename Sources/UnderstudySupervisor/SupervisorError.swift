/// Errors the supervisor reports to its user: what happened, to what, and what to do.
public struct SupervisorError: Error, CustomStringConvertible, Sendable {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Base: String {
            case binaryNotFound, workerExited, handshakeFailed, protocolMismatch, serviceMismatch, timeout
            case workerFailed, journal, busy, notFound, invalidRequest, swapAborted, rejected, bindFailed
        }
        let base: Base
        public static let binaryNotFound = Code(base: .binaryNotFound)
        public static let workerExited = Code(base: .workerExited)
        public static let handshakeFailed = Code(base: .handshakeFailed)
        public static let protocolMismatch = Code(base: .protocolMismatch)
        public static let serviceMismatch = Code(base: .serviceMismatch)
        public static let timeout = Code(base: .timeout)
        public static let workerFailed = Code(base: .workerFailed)
        public static let journal = Code(base: .journal)
        public static let busy = Code(base: .busy)
        public static let notFound = Code(base: .notFound)
        public static let invalidRequest = Code(base: .invalidRequest)
        public static let swapAborted = Code(base: .swapAborted)
        public static let rejected = Code(base: .rejected)
        public static let bindFailed = Code(base: .bindFailed)
        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// A complete, human sentence.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
