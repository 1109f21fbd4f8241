import UnderstudyKit
import UnderstudyWire

/// A schema 1 account: its balance.
public struct AccountV1: StateValue, Equatable {
    /// The balance, in the smallest unit.
    public var balance: Int64
    public init(balance: Int64) { self.balance = balance }
    public func encode(to writer: inout ByteWriter) { writer.write(balance) }
    public init(decoding reader: inout ByteReader) throws { balance = try reader.readInt64() }
}

/// One line of a schema 2 account's history: a transfer and the amount it moved (negative when it left).
public struct HistoryEntry: Sendable, Equatable {
    /// The transfer's id.
    public var transfer: String
    /// The change to this account's balance.
    public var delta: Int64
}

/// A schema 2 account: its balance and the history of the transfers that moved it.
public struct AccountV2: StateValue, Equatable {
    /// The balance.
    public var balance: Int64
    /// The transfers, oldest first.
    public var history: [HistoryEntry]
    public init(balance: Int64, history: [HistoryEntry]) {
        self.balance = balance
        self.history = history
    }
    public func encode(to writer: inout ByteWriter) {
        writer.write(balance)
        writer.writeVarint(UInt64(history.count))
        for h in history {
            writer.writeString(h.transfer)
            writer.write(h.delta)
        }
    }
    public init(decoding reader: inout ByteReader) throws {
        balance = try reader.readInt64()
        let n = try reader.readCount(limit: reader.remaining / 9)
        var history: [HistoryEntry] = []
        history.reserveCapacity(n)
        for _ in 0..<n { history.append(HistoryEntry(transfer: try reader.readString(), delta: try reader.readInt64())) }
        self.history = history
    }
}

/// A transfer as both schemas keep it.
public struct LedgerTransfer: StateValue, Equatable {
    public var from: String
    public var to: String
    public var amount: Int64
    /// The sequence number of the request that made it (orders the history when migrating).
    public var sequence: UInt64
    public init(from: String, to: String, amount: Int64, sequence: UInt64) {
        self.from = from
        self.to = to
        self.amount = amount
        self.sequence = sequence
    }
    public func encode(to writer: inout ByteWriter) {
        writer.writeString(from)
        writer.writeString(to)
        writer.write(amount)
        writer.write(sequence)
    }
    public init(decoding reader: inout ByteReader) throws {
        from = try reader.readString()
        to = try reader.readString()
        amount = try reader.readInt64()
        sequence = try reader.read(UInt64.self)
    }
}

/// The first response to a request with an `Idempotency-Key`, replayed for the same key.
public struct StoredResponse: StateValue, Equatable {
    public var status: UInt16
    public var body: [UInt8]
    public init(status: UInt16, body: [UInt8]) {
        self.status = status
        self.body = body
    }
    public func encode(to writer: inout ByteWriter) {
        writer.write(status)
        writer.writeBytes(body)
    }
    public init(decoding reader: inout ByteReader) throws {
        status = try reader.read(UInt16.self)
        body = try reader.readBytes()
    }
}

/// What the request handlers need from either schema.
public protocol LedgerStorage: TrackedState {
    /// The transfers by id.
    var transfers: TrackedMap<LedgerTransfer> { get set }
    /// Stored first responses by idempotency key.
    var idempotency: TrackedMap<StoredResponse> { get set }
    /// The balance of an account (nil when unknown).
    mutating func balance(of id: [UInt8]) -> Int64?
    /// Creates an account.
    mutating func create(_ id: [UInt8], balance: Int64)
    /// Changes a balance because of a transfer.
    mutating func apply(_ id: [UInt8], delta: Int64, transfer: String)
    /// An account's history, oldest first (schema 2 only; nil for an unknown account or schema 1).
    mutating func history(of id: [UInt8]) -> [HistoryEntry]?
}

/// Schema 1: balances, transfers, idempotency records.
public struct LedgerStateV1: LedgerStorage {
    public var accounts = TrackedMap<AccountV1>(name: "accounts")
    public var transfers = TrackedMap<LedgerTransfer>(name: "transfers")
    public var idempotency = TrackedMap<StoredResponse>(name: "idempotency")
    public init() {}
    public func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(accounts)
        v.visit(transfers)
        v.visit(idempotency)
    }
    public mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&accounts)
        v.visit(&transfers)
        v.visit(&idempotency)
    }
    public mutating func balance(of id: [UInt8]) -> Int64? { accounts.get(id)?.balance }
    public mutating func create(_ id: [UInt8], balance: Int64) { accounts.set(id, AccountV1(balance: balance)) }
    public mutating func apply(_ id: [UInt8], delta: Int64, transfer: String) {
        accounts.update(id) { a in a?.balance += delta }
    }
    public mutating func history(of id: [UInt8]) -> [HistoryEntry]? { nil }
}

/// Schema 2: accounts carry their history (a different value type under the same map name).
public struct LedgerStateV2: LedgerStorage {
    public var accounts = TrackedMap<AccountV2>(name: "accounts")
    public var transfers = TrackedMap<LedgerTransfer>(name: "transfers")
    public var idempotency = TrackedMap<StoredResponse>(name: "idempotency")
    public init() {}
    public func visitMaps(_ v: inout some TrackedMapVisitor) {
        v.visit(accounts)
        v.visit(transfers)
        v.visit(idempotency)
    }
    public mutating func visitMaps(mutating v: inout some TrackedMapMutatingVisitor) {
        v.visit(&accounts)
        v.visit(&transfers)
        v.visit(&idempotency)
    }
    public mutating func balance(of id: [UInt8]) -> Int64? { accounts.get(id)?.balance }
    public mutating func create(_ id: [UInt8], balance: Int64) { accounts.set(id, AccountV2(balance: balance, history: [])) }
    public mutating func apply(_ id: [UInt8], delta: Int64, transfer: String) {
        accounts.update(id) { a in
            a?.balance += delta
            a?.history.append(HistoryEntry(transfer: transfer, delta: delta))
        }
    }
    public mutating func history(of id: [UInt8]) -> [HistoryEntry]? { accounts.get(id)?.history }
}
