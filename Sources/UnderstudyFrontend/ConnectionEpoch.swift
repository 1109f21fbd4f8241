import UnderstudyWire

/// Marks in the journal where this supervisor process's client connections begin, and remembers the service's
/// last declared command table for them.
///
/// Connection ids restart with every supervisor process, while the state a service keeps for connections
/// (their WATCHes) lives on in snapshots and the journal. Before the first connection-scoped input of a process,
/// an ``InputTag/connectionsReset`` input tells the service that no connection of an earlier process exists any
/// more, so a reused id never inherits an old connection's state, and what the old ones left is dropped. A
/// process whose clients never WATCH journals nothing.
///
/// Confined to the core event loop, like the connection handlers that share it.
package final class ConnectionEpoch {
    private var begun = false
    /// The command table of the last primary a connection asked about (kept for the moments without a primary).
    var lastCommands: CommandTable?

    /// Creates the marker of one supervisor process (or of one test's connection).
    package init() {}

    /// Journals the reset once, before this process's first connection-scoped input.
    /// - Parameter pipeline: The pipeline the connection-scoped input is about to go through.
    package func begin(_ pipeline: any RequestIntake) {
        // A standby supervisor journals nothing; its reset comes when it takes over.
        guard !begun, !pipeline.followsJournal else { return }
        begun = true
        pipeline.submit(tag: InputTag.connectionsReset, payload: [], sink: nil)
    }
}
