import Ledger
import Testing
import UnderstudyKit
import UnderstudyWire

/// Drives a ledger version in-process through the SDK's engine (as its worker would).
struct LedgerDriver<S: UnderstudyService> {
    var engine: ServiceEngine<S>
    var sequence: UInt64 = 0

    init(_ service: S) { engine = ServiceEngine(service: service) }

    @discardableResult
    mutating func send(_ method: String, _ target: String, _ json: JSONValue? = nil, key: String? = nil) -> HTTPResponse {
        sequence += 1
        let headers = key.map { [HTTPHeader("idempotency-key", $0)] } ?? []
        let request = json.map { HTTPRequest(method: method, target: target, headers: headers, json: $0) }
            ?? HTTPRequest(method: method, target: target, headers: headers)
        let result = engine.apply(ApplyRequest(sequence: sequence, time: 1_000, seed: sequence, tag: InputTag.http, payload: request.encoded))
        return (try? HTTPResponse(decoding: result.response)) ?? HTTPResponse(status: 0)
    }

    /// A workload both versions must answer alike.
    mutating func workload() {
        send("POST", "/accounts", ["id": "a", "balance": 1000])
        send("POST", "/accounts", ["id": "b", "balance": 50])
        send("POST", "/transfers", ["from": "a", "to": "b", "amount": 700], key: "k1")
        send("POST", "/transfers", ["from": "b", "to": "a", "amount": 20])
        send("POST", "/transfers", ["from": "a", "to": "b", "amount": 1], key: "k2")
    }

    func snapshot() -> [UInt8] { engine.state.encodeSnapshot(schemaVersion: S.schemaVersion, sequence: sequence) }
}

@Suite("ledger example")
struct LedgerTests {
    @Test("the HTTP contract: create, read, transfer, idempotency, errors")
    func contract() {
        var l = LedgerDriver(LedgerServiceV1())
        #expect(l.send("GET", "/health").status == 200)
        let created = l.send("POST", "/accounts", ["id": "acct1", "balance": 1000])
        #expect(created.status == 201 && created.json == ["id": "acct1", "balance": 1000])
        #expect(l.send("POST", "/accounts", ["id": "acct1", "balance": 1]).status == 409)
        #expect(l.send("POST", "/accounts", ["id": "x", "balance": "lots"]).status == 400)
        #expect(l.send("POST", "/accounts", ["id": "acct2", "balance": 0]).status == 201)
        let t = l.send("POST", "/transfers", ["from": "acct1", "to": "acct2", "amount": 400], key: "key-1")
        #expect(t.status == 201 && t.json?["id"]?.stringValue == "t\(l.sequence)")
        let again = l.send("POST", "/transfers", ["from": "acct1", "to": "acct2", "amount": 400], key: "key-1")
        #expect(again.status == 201 && again.body == t.body)
        #expect(l.send("GET", "/accounts/acct2").json?["balance"] == 400)
        let poor = l.send("POST", "/transfers", ["from": "acct2", "to": "acct1", "amount": 401])
        #expect(poor.status == 422 && poor.json == ["error": "insufficient funds"])
        #expect(l.send("POST", "/transfers", ["from": "acct2", "to": "nobody", "amount": 1]).status == 404)
        #expect(l.send("POST", "/transfers", ["from": "acct2", "to": "acct1", "amount": 0]).status == 400)
        #expect(l.send("GET", "/accounts/nobody").status == 404)
        #expect(l.send("DELETE", "/accounts/acct1").status == 405)
        #expect(l.send("GET", "/accounts/acct1/transfers").status == 404)
    }

    @Test("v2 migrates v1's state, downgrades to exactly it, and lists an account's transfers")
    func migrateAndDowngrade() throws {
        var v1 = LedgerDriver(LedgerServiceV1())
        v1.workload()
        var v2 = LedgerDriver(LedgerServiceV2())
        let migrated = try LedgerServiceV2().migrate(from: try StateSnapshot(bytes: v1.snapshot()))
        let down = try #require(try LedgerServiceV2().downgrade(migrated))
        #expect(down.digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
        // The same workload applied to both versions: v2's downgraded state equals v1's state.
        v2.workload()
        let down2 = try #require(try LedgerServiceV2().downgrade(v2.engine.state))
        #expect(down2.digest(sequence: 0) == v1.engine.state.digest(sequence: 0))
        let history = v2.send("GET", "/accounts/b/transfers")
        #expect(history.status == 200)
        #expect(history.json?["transfers"]?.arrayValue?.map { $0["amount"] } == [700, -20, 1])
        // The migrated history agrees with the live one.
        var m = migrated
        #expect(m.accounts.get(Array("b".utf8))?.history == v2.engine.state.accounts.peek(Array("b".utf8))?.history)
    }

    @Test("the validation suites pass; the broken variants fail for their real reason")
    func brokenModes() throws {
        #expect(LedgerServiceV1().validationSuite.count == 2)
        var wrong = LedgerDriver(LedgerServiceV2(broken: .wrongArithmetic))
        wrong.workload()
        #expect(wrong.send("GET", "/accounts/b").json?["balance"] != 731)
        var good = LedgerDriver(LedgerServiceV2())
        good.workload()
        #expect(good.send("GET", "/accounts/b").json?["balance"] == 731)

        var drift = LedgerDriver(LedgerServiceV2(broken: .drift))
        drift.workload()
        var v1 = LedgerDriver(LedgerServiceV1())
        v1.workload()
        let down = try #require(try LedgerServiceV2().downgrade(drift.engine.state))
        #expect(down.digest(sequence: 0) != v1.engine.state.digest(sequence: 0))
        #expect(drift.send("GET", "/accounts/b").body == good.send("GET", "/accounts/b").body)
    }
}
