import UnderstudyKit
import UnderstudyWire

/// Version 1 of the ledger (schema 1: balances).
public struct LedgerServiceV1: UnderstudyHTTPService {
    public static let name = LedgerCore.name
    public static let version = "1.0.0"
    public static let schemaVersion: UInt32 = 1
    static let router = LedgerCore.router(LedgerStateV1.self, version2: false, broken: nil)
    public static var http: HTTPServiceDeclaration {
        HTTPServiceDeclaration(requestHeaders: LedgerCore.requestHeaders, routes: router.declarations)
    }

    public init() {}

    public func makeInitialState() -> LedgerStateV1 { LedgerStateV1() }

    public func handle(_ request: HTTPRequest, state: inout LedgerStateV1, context: inout RequestContext) -> HTTPResponse {
        Self.router.handle(request, state: &state, context: &context)
    }

    public var validationSuite: [ValidationCase] { LedgerCore.validationSuite(version2: false) }
}

/// Version 2 of the ledger (schema 2: accounts keep their history); migrates from schema 1, downgrades to it, and
/// adds `GET /accounts/{id}/transfers`.
public struct LedgerServiceV2: UnderstudyHTTPService {
    public static let name = LedgerCore.name
    public static let version = "2.0.0"
    public static let schemaVersion: UInt32 = 2
    public static var minimumMigratableSchema: UInt32 { 1 }
    public static var supportsDowngrade: Bool { true }
    public static var http: HTTPServiceDeclaration {
        HTTPServiceDeclaration(
            requestHeaders: LedgerCore.requestHeaders,
            routes: LedgerCore.router(LedgerStateV2.self, version2: true, broken: nil).declarations)
    }

    let broken: LedgerBrokenMode?
    let router: HTTPRouter<LedgerStateV2>

    /// Creates the service, deliberately broken in `broken` mode (see ``LedgerBrokenMode``).
    public init(broken: LedgerBrokenMode? = nil) {
        self.broken = broken
        self.router = LedgerCore.router(LedgerStateV2.self, version2: true, broken: broken)
    }

    public func makeInitialState() -> LedgerStateV2 { LedgerStateV2() }

    public func handle(_ request: HTTPRequest, state: inout LedgerStateV2, context: inout RequestContext) -> HTTPResponse {
        router.handle(request, state: &state, context: &context)
    }

    /// Schema 1 → 2: each account gets the history of the transfers in the state, in the order they were made.
    public func migrate(from snapshot: StateSnapshot) throws -> LedgerStateV2 {
        if broken == .crashInMigrate { fatalError("ledger: deliberately broken: crash in migrate") }
        guard snapshot.schemaVersion == 1 else {
            throw MigrationError("ledger 2.0.0 migrates from schema 1 only, not \(snapshot.schemaVersion)")
        }
        var state = LedgerStateV2()
        var balances: [[UInt8]: Int64] = [:]
        try snapshot.forEachEntry(of: "accounts") { key, bytes in
            balances[key] = try AccountV1(canonicalBytes: bytes).balance
        }
        var transfers: [([UInt8], LedgerTransfer)] = []
        try snapshot.forEachEntry(of: "transfers") { key, bytes in
            let t = try LedgerTransfer(canonicalBytes: bytes)
            transfers.append((key, t))
            state.transfers.set(key, t)
        }
        try snapshot.forEachEntry(of: "idempotency") { key, bytes in
            state.idempotency.set(key, try StoredResponse(canonicalBytes: bytes))
        }
        var histories: [[UInt8]: [HistoryEntry]] = [:]
        for (key, t) in transfers.sorted(by: { $0.1.sequence < $1.1.sequence }) {
            let id = String(decoding: key, as: UTF8.self)
            histories[Array(t.from.utf8), default: []].append(HistoryEntry(transfer: id, delta: -t.amount))
            histories[Array(t.to.utf8), default: []].append(HistoryEntry(transfer: id, delta: t.amount))
        }
        for (key, balance) in balances {
            state.accounts.set(key, AccountV2(balance: balance, history: histories[key] ?? []))
        }
        _ = state.drainTouchedKeys()
        return state
    }

    /// Schema 2 → 1: balances stay, histories are dropped; transfers and idempotency records are kept as they are.
    public func downgrade(_ state: LedgerStateV2) throws -> (any TrackedState)? {
        var old = LedgerStateV1()
        state.accounts.forEach { key, a in old.accounts.set(key, AccountV1(balance: a.balance)) }
        state.transfers.forEach { key, t in old.transfers.set(key, t) }
        state.idempotency.forEach { key, r in old.idempotency.set(key, r) }
        _ = old.drainTouchedKeys()
        return old
    }

    public var validationSuite: [ValidationCase] { LedgerCore.validationSuite(version2: true) }
}
