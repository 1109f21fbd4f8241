import NIOCore

/// Restarts for deaths that no input explains (a worker that dies at start-up, in restore or in migrate):
/// exponential back-off and an Erlang-style intensity limit — at most ``maxRestarts`` in ``window``, then the
/// role is given up and reported, never a loop that burns the machine.
public struct RestartPolicy: Sendable, Equatable {
    /// The most restarts of one role within ``window``; one more gives the role up.
    public var maxRestarts: Int
    /// The sliding window the restarts are counted in.
    public var window: TimeAmount
    /// The delay before the first restart; it doubles with each restart still inside the window.
    public var initialBackoff: TimeAmount
    /// The longest delay.
    public var maximumBackoff: TimeAmount

    /// Creates a policy: by default 5 restarts in 60 s, back-off from 100 ms doubling up to 10 s.
    public init(
        maxRestarts: Int = 5, window: TimeAmount = .seconds(60), initialBackoff: TimeAmount = .milliseconds(100),
        maximumBackoff: TimeAmount = .seconds(10)
    ) {
        self.maxRestarts = maxRestarts
        self.window = window
        self.initialBackoff = initialBackoff
        self.maximumBackoff = maximumBackoff
    }
}

/// The restart history of one role, judged by a ``RestartPolicy``.
struct RestartIntensity: Sendable {
    enum Decision: Equatable, Sendable {
        /// Restart after this delay.
        case restart(after: TimeAmount)
        /// Too many restarts in the window: the role is given up.
        case giveUp(restarts: Int)
    }

    let policy: RestartPolicy
    /// When each restart inside the window was granted.
    private(set) var recent: [NIODeadline] = []
    /// Set once the role was given up (it stays given up until ``reset()``).
    private(set) var givenUp = false

    init(policy: RestartPolicy) { self.policy = policy }

    /// Records a death no input explains and says what to do.
    mutating func died(at now: NIODeadline) -> Decision {
        recent.removeAll { now - $0 > policy.window }
        guard !givenUp, recent.count < policy.maxRestarts else {
            givenUp = true
            return .giveUp(restarts: recent.count)
        }
        var delay = policy.initialBackoff
        for _ in 0..<recent.count {
            delay = delay + delay
            if delay >= policy.maximumBackoff { break }
        }
        recent.append(now)
        return .restart(after: min(delay, policy.maximumBackoff))
    }

    /// Forgets the history (an operator asked for the role again).
    mutating func reset() {
        recent = []
        givenUp = false
    }
}
