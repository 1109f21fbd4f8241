import UnderstudyKit
import UnderstudyWire

/// The request handling both versions share, over either schema.
public enum LedgerCore {
    /// The service name both versions share (so they may swap).
    public static let name = "ledger"
    /// The request headers journaled with each request.
    public static let requestHeaders = ["idempotency-key"]
    /// The longest account id.
    public static let maximumIDBytes = 256

    /// The routes of a version.
    public static func router<S: LedgerStorage>(_: S.Type, version2: Bool, broken: LedgerBrokenMode?) -> HTTPRouter<S> {
        var r = HTTPRouter<S>()
        r.get("/health") { _, _, _, _ in .json(200, ["status": "ok"]) }
        r.post("/accounts") { request, _, state, _ in createAccount(request, &state) }
        // Version 2 adds the history's length to the account; it is not compared with version 1's replies.
        r.get("/accounts/{id}", comparison: HTTPComparison(ignoredJSONPaths: ["transfers"])) { _, p, state, _ in
            account(p["id"], &state, version2: version2)
        }
        if version2 {
            r.get("/accounts/{id}/transfers") { _, p, state, _ in history(p["id"], &state) }
        }
        r.post("/transfers") { request, _, state, context in
            transfer(request, &state, &context, broken: broken)
        }
        return r
    }

    static func account<S: LedgerStorage>(_ id: String, _ state: inout S, version2: Bool) -> HTTPResponse {
        let key = Array(id.utf8)
        guard let balance = state.balance(of: key) else { return .error(404, "unknown account \(id)") }
        var body: [String: JSONValue] = ["id": .string(id), "balance": .int(balance)]
        if version2, let h = state.history(of: key) { body["transfers"] = .int(Int64(h.count)) }
        return .json(200, .object(body))
    }

    static func history<S: LedgerStorage>(_ id: String, _ state: inout S) -> HTTPResponse {
        guard let history = state.history(of: Array(id.utf8)) else { return .error(404, "unknown account \(id)") }
        let items: [JSONValue] = history.map { ["id": .string($0.transfer), "amount": .int($0.delta)] }
        return .json(200, ["account": .string(id), "transfers": .array(items)])
    }

    static func createAccount<S: LedgerStorage>(_ request: HTTPRequest, _ state: inout S) -> HTTPResponse {
        guard let body = try? JSONValue(parsing: request.body) else { return .error(400, "the body is not JSON") }
        guard let id = body["id"]?.stringValue, !id.isEmpty, id.utf8.count <= maximumIDBytes,
            !id.contains("/"), !id.contains("?")
        else {
            return .error(400, "\"id\" must be a non-empty string of at most \(maximumIDBytes) bytes without / or ?")
        }
        guard let balance = body["balance"]?.intValue, balance >= 0 else {
            return .error(400, "\"balance\" must be a non-negative integer")
        }
        let key = Array(id.utf8)
        if state.balance(of: key) != nil { return .error(409, "account \(id) exists") }
        state.create(key, balance: balance)
        return .json(201, ["id": .string(id), "balance": .int(balance)])
    }

    static func transfer<S: LedgerStorage>(
        _ request: HTTPRequest, _ state: inout S, _ context: inout RequestContext, broken: LedgerBrokenMode?
    ) -> HTTPResponse {
        let idempotencyKey = request.header("idempotency-key").map { Array($0.utf8) }
        if let idempotencyKey, let stored = state.idempotency.get(idempotencyKey) {
            return HTTPResponse(
                status: Int(stored.status), headers: [HTTPHeader("content-type", "application/json"), HTTPHeader("idempotent-replay", "true")],
                body: stored.body)
        }
        let response = performTransfer(request, &state, &context, broken: broken)
        if let idempotencyKey {
            state.idempotency.set(idempotencyKey, StoredResponse(status: UInt16(response.status), body: response.body))
        }
        return response
    }

    static func performTransfer<S: LedgerStorage>(
        _ request: HTTPRequest, _ state: inout S, _ context: inout RequestContext, broken: LedgerBrokenMode?
    ) -> HTTPResponse {
        guard let body = try? JSONValue(parsing: request.body) else { return .error(400, "the body is not JSON") }
        guard let from = body["from"]?.stringValue, let to = body["to"]?.stringValue else {
            return .error(400, "\"from\" and \"to\" must be account ids")
        }
        guard let amount = body["amount"]?.intValue, amount > 0 else {
            return .error(400, "\"amount\" must be a positive integer")
        }
        guard from != to else { return .error(400, "\"from\" and \"to\" must differ") }
        let fromKey = Array(from.utf8)
        let toKey = Array(to.utf8)
        guard let available = state.balance(of: fromKey) else { return .error(404, "unknown account \(from)") }
        guard let toBalance = state.balance(of: toKey) else { return .error(404, "unknown account \(to)") }
        guard available >= amount else { return .error(422, "insufficient funds") }
        guard toBalance <= Int64.max - amount else { return .error(422, "the recipient's balance would overflow") }
        // The id comes from the request's sequence number: every replica, and every version, agrees on it.
        let id = "t\(context.sequence)"
        state.apply(fromKey, delta: -amount, transfer: id)
        let credited = broken == .wrongArithmetic && amount > 500 ? amount + 1 : amount
        state.apply(toKey, delta: credited, transfer: id)
        state.transfers.set(Array(id.utf8), LedgerTransfer(from: from, to: to, amount: amount, sequence: context.sequence))
        if broken == .drift {
            state.transfers.set(Array("drift:\(id)".utf8), LedgerTransfer(from: from, to: to, amount: amount, sequence: context.sequence))
        }
        return .json(201, ["id": .string(id), "from": .string(from), "to": .string(to), "amount": .int(amount)])
    }

    /// The validation suite both versions run (accounts prefixed "__validation:").
    public static func validationSuite(version2: Bool) -> [ValidationCase] {
        let a = "__validation:a"
        let b = "__validation:b"
        func post(_ target: String, _ json: JSONValue, key: String? = nil) -> HTTPRequest {
            HTTPRequest(method: "POST", target: target, headers: key.map { [HTTPHeader("idempotency-key", $0)] } ?? [], json: json)
        }
        func get(_ target: String) -> HTTPRequest { HTTPRequest(method: "GET", target: target) }
        func balance(_ expected: Int64) -> @Sendable (HTTPResponse) -> String? {
            { r in
                let got = r.json?["balance"]?.intValue
                return got == expected ? nil : "expected balance \(expected), got \(got.map(String.init) ?? "none")"
            }
        }
        var cases = [
            ValidationCase(name: "health", steps: [ValidationStep(get("/health"), expectStatus: 200)]),
            ValidationCase(name: "accounts and transfers", steps: [
                ValidationStep(post("/accounts", ["id": .string(a), "balance": 1000]), expectStatus: 201),
                ValidationStep(post("/accounts", ["id": .string(b), "balance": 0]), expectStatus: 201),
                ValidationStep(post("/accounts", ["id": .string(b), "balance": 5]), expectStatus: 409),
                ValidationStep(post("/transfers", ["from": .string(a), "to": .string(b), "amount": 600], key: "__validation:k1"), expectStatus: 201),
                ValidationStep(get("/accounts/\(a)"), expectStatus: 200, check: balance(400)),
                ValidationStep(get("/accounts/\(b)"), expectStatus: 200, check: balance(600)),
                ValidationStep(post("/transfers", ["from": .string(a), "to": .string(b), "amount": 600]), expectStatus: 422,
                               json: ["error": "insufficient funds"]),
                ValidationStep(post("/transfers", ["from": .string(a), "to": .string(b), "amount": 600], key: "__validation:k1"), expectStatus: 201),
                ValidationStep(get("/accounts/\(b)"), expectStatus: 200, check: balance(600)),
                ValidationStep(post("/transfers", ["from": .string(a), "to": "__validation:nobody", "amount": 1]), expectStatus: 404),
                ValidationStep(post("/transfers", ["from": .string(a), "to": .string(b), "amount": -1]), expectStatus: 400),
                ValidationStep(HTTPRequest(method: "POST", target: "/transfers", body: Array("{".utf8)), expectStatus: 400),
                ValidationStep(get("/accounts/__validation:nobody"), expectStatus: 404),
            ]),
        ]
        if version2 {
            cases.append(ValidationCase(name: "history", steps: [
                ValidationStep(post("/accounts", ["id": .string(a), "balance": 10]), expectStatus: 201),
                ValidationStep(post("/accounts", ["id": .string(b), "balance": 0]), expectStatus: 201),
                ValidationStep(post("/transfers", ["from": .string(a), "to": .string(b), "amount": 3]), expectStatus: 201),
                ValidationStep(get("/accounts/\(b)/transfers"), expectStatus: 200) { r in
                    r.json?["transfers"]?.arrayValue?.first?["amount"]?.intValue == 3 ? nil : "the history does not show the transfer"
                },
            ]))
        }
        return cases
    }
}
