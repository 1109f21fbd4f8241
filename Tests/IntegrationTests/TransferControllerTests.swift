import Testing
import UnderstudySupervisor
import UnderstudyWire

/// Every transition and abort path of the swap state machine, without sockets.
@Suite("TransferController")
struct TransferControllerTests {
    typealias C = TransferController

    static func digest(_ seq: UInt64, _ buckets: [UInt64]) -> DigestReport {
        DigestReport(sequence: seq, buckets: buckets, entryCount: UInt64(buckets.count))
    }

    static func key(_ k: String, map: String = "strings") -> MapKey { MapKey(map: map, key: Array(k.utf8)) }
    static func entry(_ k: String, _ h: UInt64) -> KeyHash { KeyHash(key: key(k), valueHash: h) }

    /// Drives a controller to `catchingUp` at sequence 42.
    static func caughtUpController(sameSchema: Bool = true, residualLimit: Int = 10) -> C {
        var c = C(sameSchema: sameSchema, residualLimit: residualLimit)
        #expect(c.handle(.start) == [.pauseIntake])
        #expect(c.state == .pausing)
        #expect(c.handle(.intakePaused) == [.waitForDrain])
        #expect(c.state == .draining)
        #expect(c.handle(.drained(sequence: 42)) == [.waitForTarget(sequence: 42)])
        #expect(c.state == .catchingUp)
        #expect(c.pausedAt == 42)
        return c
    }

    /// The outcome of a lone `.finish` action.
    static func finished(_ actions: [C.Action]) -> SwapOutcome? {
        guard actions.count == 1, case .finish(let outcome) = actions[0] else { return nil }
        return outcome
    }

    static func isAbort(_ actions: [C.Action], containing text: String) -> Bool {
        guard actions.count == 1, case .abort(let why) = actions[0] else { return false }
        return why.contains(text)
    }

    @Test("Happy path, same schema: pause, drain, catch up, digests equal, flip, resume, finish")
    func happySameSchema() {
        var c = Self.caughtUpController()
        #expect(c.handle(.caughtUp(sequence: 42)) == [.requestDigests])
        #expect(c.state == .verifying)
        #expect(c.handle(.digests(primary: Self.digest(42, [1, 2, 3]), target: Self.digest(42, [1, 2, 3]))) == [.flipRoles])
        #expect(c.state == .flipping)
        #expect(c.handle(.flipped) == [.resumeIntake])
        #expect(c.state == .resuming)
        let outcome = Self.finished(c.handle(.resumed))
        #expect(outcome?.succeeded == true)
        #expect(outcome?.abortReason == nil)
        #expect(outcome?.residualKeys == 0)
        #expect(outcome?.digestsCompared == true)
        #expect(c.state == .finished)
        #expect(c.isDone)
    }

    @Test("Across schemas the digests are skipped: caught up → flip")
    func crossSchema() {
        var c = Self.caughtUpController(sameSchema: false)
        #expect(c.handle(.caughtUp(sequence: 42)) == [.flipRoles])
        #expect(c.state == .flipping)
        #expect(c.handle(.flipped) == [.resumeIntake])
        let outcome = Self.finished(c.handle(.resumed))
        #expect(outcome?.succeeded == true)
        #expect(outcome?.abortReason == nil)
        #expect(outcome?.residualKeys == 0)
        #expect(outcome?.digestsCompared == false)
    }

    @Test("A caught-up report below the pause sequence is not enough")
    func caughtUpTooEarly() {
        var c = Self.caughtUpController()
        #expect(c.handle(.caughtUp(sequence: 41)) == [])
        #expect(c.state == .catchingUp)
        #expect(c.handle(.caughtUp(sequence: 43)) == [.requestDigests])
    }

    @Test("Digests differ → drill down → patch → re-verify equal → flip, residual counted")
    func patchThenReverify() {
        var c = Self.caughtUpController()
        _ = c.handle(.caughtUp(sequence: 42))
        #expect(c.handle(.digests(primary: Self.digest(42, [1, 2, 3, 4]), target: Self.digest(42, [1, 9, 3, 8])))
                == [.requestDrillDown(buckets: [1, 3])])
        #expect(c.state == .drillingDown)
        let primary = [Self.entry("a", 1), Self.entry("b", 2), Self.entry("c", 3)]
        let target = [Self.entry("a", 1), Self.entry("b", 7), Self.entry("d", 4)]
        // b differs, c is missing on the target, d exists only on the target.
        #expect(c.handle(.drilledDown(primary: primary, target: target)) == [.patch(keys: [Self.key("b"), Self.key("c"), Self.key("d")])])
        #expect(c.state == .patching)
        #expect(c.handle(.patched(count: 3)) == [.requestDigests])
        #expect(c.state == .reverifying)
        #expect(c.patchedKeys == 3)
        #expect(c.handle(.digests(primary: Self.digest(42, [1, 2, 3, 4]), target: Self.digest(42, [1, 2, 3, 4]))) == [.flipRoles])
        _ = c.handle(.flipped)
        let outcome = Self.finished(c.handle(.resumed))
        #expect(outcome?.succeeded == true)
        #expect(outcome?.abortReason == nil)
        #expect(outcome?.residualKeys == 3)
        #expect(outcome?.digestsCompared == true)
    }

    @Test("Still mismatched after patching → abort")
    func reverifyMismatch() {
        var c = Self.caughtUpController()
        _ = c.handle(.caughtUp(sequence: 42))
        _ = c.handle(.digests(primary: Self.digest(42, [1, 2]), target: Self.digest(42, [1, 5])))
        _ = c.handle(.drilledDown(primary: [Self.entry("a", 1)], target: [Self.entry("a", 2)]))
        _ = c.handle(.patched(count: 1))
        let actions = c.handle(.digests(primary: Self.digest(42, [1, 2]), target: Self.digest(42, [1, 6])))
        #expect(Self.isAbort(actions, containing: "still differ after patching 1 keys"), "\(actions)")
        #expect(c.isDone)
        if case .aborted = c.state {} else { Issue.record("state \(c.state)") }
    }

    @Test("More differing keys than the residual limit → abort (the target diverged)")
    func residualOverLimit() {
        var c = Self.caughtUpController(residualLimit: 2)
        _ = c.handle(.caughtUp(sequence: 42))
        _ = c.handle(.digests(primary: Self.digest(42, [1]), target: Self.digest(42, [2])))
        let actions = c.handle(.drilledDown(
            primary: [Self.entry("a", 1), Self.entry("b", 1), Self.entry("c", 1)],
            target: [Self.entry("a", 2), Self.entry("b", 2), Self.entry("c", 2)]))
        #expect(Self.isAbort(actions, containing: "3 keys differ, more than the residual limit of 2"), "\(actions)")
        #expect(c.isDone)
    }

    @Test("Exactly the residual limit is patched")
    func residualAtLimit() {
        var c = Self.caughtUpController(residualLimit: 2)
        _ = c.handle(.caughtUp(sequence: 42))
        _ = c.handle(.digests(primary: Self.digest(42, [1]), target: Self.digest(42, [2])))
        let actions = c.handle(.drilledDown(primary: [Self.entry("a", 1), Self.entry("b", 1)], target: []))
        #expect(actions == [.patch(keys: [Self.key("a"), Self.key("b")])])
    }

    @Test("Digests differ but the drill-down finds no differing key → abort")
    func emptyDifferingSet() {
        var c = Self.caughtUpController()
        _ = c.handle(.caughtUp(sequence: 42))
        _ = c.handle(.digests(primary: Self.digest(42, [1]), target: Self.digest(42, [2])))
        let same = [Self.entry("a", 1)]
        let actions = c.handle(.drilledDown(primary: same, target: same))
        #expect(Self.isAbort(actions, containing: "no differing key"), "\(actions)")
    }

    @Test("Digests with different bucket counts mismatch in every bucket")
    func bucketCountMismatch() {
        var c = Self.caughtUpController()
        _ = c.handle(.caughtUp(sequence: 42))
        #expect(c.handle(.digests(primary: Self.digest(42, [1, 2]), target: Self.digest(42, [1, 2, 3])))
                == [.requestDrillDown(buckets: [0, 1, 2])])
    }

    @Test("Digests taken at different sequences → abort", arguments: [false, true])
    func digestsAtDifferentSequences(afterPatch: Bool) {
        var c = Self.caughtUpController()
        _ = c.handle(.caughtUp(sequence: 42))
        if afterPatch {
            _ = c.handle(.digests(primary: Self.digest(42, [1]), target: Self.digest(42, [2])))
            _ = c.handle(.drilledDown(primary: [Self.entry("a", 1)], target: []))
            _ = c.handle(.patched(count: 1))
            #expect(c.state == .reverifying)
        }
        let actions = c.handle(.digests(primary: Self.digest(42, [1]), target: Self.digest(43, [1])))
        #expect(Self.isAbort(actions, containing: "different sequence numbers (42 vs 43)"), "\(actions)")
    }

    /// Drives a controller to each state before the flip.
    static func controller(in state: C.State) -> C {
        var c = C(sameSchema: true, residualLimit: 10)
        let script: [C.Event] = [
            .start, .intakePaused, .drained(sequence: 7), .caughtUp(sequence: 7),
            .digests(primary: digest(7, [1]), target: digest(7, [2])),
            .drilledDown(primary: [entry("a", 1)], target: []),
            .patched(count: 1),
            .digests(primary: digest(7, [1]), target: digest(7, [1])),
            .flipped, .resumed,
        ]
        for event in script where c.state != state { _ = c.handle(event) }
        #expect(c.state == state)
        return c
    }

    static let preFlipStates: [C.State] = [.pausing, .draining, .catchingUp, .verifying, .drillingDown, .patching, .reverifying]

    @Test("The pause budget running out before the flip aborts", arguments: preFlipStates)
    func budgetBeforeFlip(_ state: C.State) {
        var c = Self.controller(in: state)
        let actions = c.handle(.pauseBudgetExceeded)
        #expect(Self.isAbort(actions, containing: "pause budget was exceeded"), "\(actions)")
        #expect(c.isDone)
        #expect(c.handle(.flipped) == [])
    }

    @Test("The pause budget running out after the flip is ignored", arguments: [C.State.flipping, .resuming])
    func budgetAfterFlip(_ state: C.State) {
        var c = Self.controller(in: state)
        #expect(c.handle(.pauseBudgetExceeded) == [])
        #expect(c.state == state)
        if state == .flipping { #expect(c.handle(.flipped) == [.resumeIntake]) }
        #expect(c.handle(.resumed).count == 1)
        #expect(c.state == .finished)
    }

    @Test("The target failing before resume aborts", arguments: preFlipStates + [.flipping])
    func targetFailed(_ state: C.State) {
        var c = Self.controller(in: state)
        let actions = c.handle(.targetFailed("killed by signal 9"))
        #expect(Self.isAbort(actions, containing: "the target failed: killed by signal 9"), "\(actions)")
    }

    @Test("The primary failing before resume aborts", arguments: preFlipStates + [.flipping])
    func primaryFailed(_ state: C.State) {
        var c = Self.controller(in: state)
        let actions = c.handle(.primaryFailed("exited with status 1"))
        #expect(Self.isAbort(actions, containing: "the primary failed: exited with status 1"), "\(actions)")
    }

    @Test("Failures while resuming are ignored: the roles already flipped")
    func failuresWhileResuming() {
        var c = Self.controller(in: .resuming)
        #expect(c.handle(.targetFailed("x")) == [])
        #expect(c.handle(.primaryFailed("x")) == [])
        #expect(c.state == .resuming)
    }

    @Test("Events after the swap finished or aborted are ignored")
    func eventsAfterDone() {
        var finished = Self.controller(in: .finished)
        var aborted = Self.controller(in: .draining)
        _ = aborted.handle(.targetFailed("gone"))
        for var c in [finished, aborted] {
            let state = c.state
            for e: C.Event in [.start, .intakePaused, .drained(sequence: 1), .caughtUp(sequence: 9), .flipped, .resumed,
                               .pauseBudgetExceeded, .targetFailed("x"), .primaryFailed("y"), .patched(count: 1)] {
                #expect(c.handle(e) == [])
            }
            #expect(c.state == state)
        }
        finished = C(sameSchema: true, residualLimit: 1)
        #expect(!finished.isDone)
    }

    @Test("Events out of order are ignored")
    func outOfOrder() {
        var c = C(sameSchema: true, residualLimit: 10)
        #expect(c.handle(.intakePaused) == [])
        #expect(c.handle(.flipped) == [])
        #expect(c.state == .idle)
        _ = c.handle(.start)
        #expect(c.handle(.start) == [])
        #expect(c.handle(.drained(sequence: 3)) == [])
        #expect(c.state == .pausing)
    }

    @Test("differingKeys: present on one side only, or different hashes; sorted by map then key")
    func differingKeys() {
        let p = [KeyHash(key: Self.key("z", map: "b"), valueHash: 1), Self.entry("a", 1), Self.entry("same", 5)]
        let t = [Self.entry("same", 5), KeyHash(key: Self.key("y", map: "a"), valueHash: 2), Self.entry("a", 2)]
        #expect(C.differingKeys(primary: p, target: t) == [Self.key("y", map: "a"), Self.key("z", map: "b"), Self.key("a")])
    }
}
