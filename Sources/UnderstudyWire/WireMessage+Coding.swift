extension ByteWriter {
    mutating func write(_ k: MapKey) {
        writeString(k.map)
        writeBytes(k.key)
    }
    mutating func write(_ r: ApplyRequest) {
        FrameCodec.encodeApplyBody(r, into: &self)
    }
    mutating func writeList(_ keys: [[UInt8]]) {
        writeVarint(UInt64(keys.count))
        for k in keys { writeBytes(k) }
    }
}

extension ByteReader {
    mutating func readMapKey() throws(DecodingError) -> MapKey {
        MapKey(map: try readString(), key: try readBytes())
    }
    mutating func readApplyRequest() throws(DecodingError) -> ApplyRequest {
        try withUnsafeReader { (r: inout UnsafeByteReader) throws(DecodingError) in try r.readApplyRequest() }
    }
    mutating func readList() throws(DecodingError) -> [[UInt8]] {
        try withUnsafeReader { (r: inout UnsafeByteReader) throws(DecodingError) in try r.readList() }
    }
    mutating func readArray<T>(_ element: (inout ByteReader) throws(DecodingError) -> T) throws(DecodingError) -> [T] {
        let n = try readCount(limit: remaining)
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try element(&self)) }
        return out
    }
}

extension WireMessage {
    /// The frame type byte of this message.
    public var frameType: UInt8 {
        switch self {
        case .hello: return 1
        case .helloAck: return 2
        case .apply: return FrameCodec.applyFrameType
        case .applied: return FrameCodec.appliedFrameType
        case .snapshotRequest: return 5
        case .snapshotChunk: return 6
        case .restored: return 7
        case .digestRequest: return 8
        case .downgradeDigestRequest: return 9
        case .digest: return 10
        case .drillDown: return 11
        case .drillDownResult: return 12
        case .fetch: return 13
        case .fetchResult: return 14
        case .patch: return 15
        case .patched: return 16
        case .prefetch: return 17
        case .ping: return 18
        case .pong: return 19
        case .shutdown: return 20
        case .error: return 21
        case .forkCreate: return 22
        case .forkApply: return 23
        case .forkResult: return 24
        case .forkDrop: return 25
        case .forkAck: return 26
        case .validate: return 27
        case .validationReport: return 28
        }
    }

    func encodeBody(into w: inout ByteWriter) {
        switch self {
        case .hello(let h):
            w.writeString(h.service)
            w.writeString(h.version)
            w.write(h.schemaVersion)
            w.write(h.minimumMigratableSchema)
            w.write(h.canDowngrade)
            w.write(h.protocolVersion)
            w.write(h.pid)
            let rules = h.comparisonRules.sorted { $0.key < $1.key }
            w.writeVarint(UInt64(rules.count))
            for (command, rule) in rules {
                w.writeString(command)
                w.write(rule.rawValue)
            }
            // Optional sections, each a kind byte and its body, in kind order.
            if let http = h.http {
                w.write(UInt8(1))  // the client protocol: HTTP/1.1
                http.encode(to: &w)
            }
            if let commands = h.commands {
                w.write(UInt8(2))  // the command table
                commands.encode(to: &w)
            }
            if !h.blockingCommands.isEmpty {
                w.write(UInt8(3))  // the commands that may hold their reply back
                w.writeVarint(UInt64(h.blockingCommands.count))
                for c in h.blockingCommands { w.writeString(c) }
            }
        case .helloAck(let id):
            w.write(id)
        case .apply(let r):
            w.write(r)
        case .applied(let r):
            FrameCodec.encodeAppliedBody(r, into: &w)
        case .snapshotRequest(let id):
            w.write(id)
        case .snapshotChunk(let c):
            w.write(c.streamID)
            w.write(c.sequence)
            w.write(c.schemaVersion)
            w.writeBytes(c.data)
            w.write(c.isFinal)
            w.write(c.checksum)
        case .restored(let seq, let count):
            w.write(seq)
            w.write(count)
        case .digestRequest, .downgradeDigestRequest, .shutdown, .validate:
            break
        case .digest(let d):
            w.write(d.sequence)
            w.write(d.entryCount)
            w.writeVarint(UInt64(d.buckets.count))
            for b in d.buckets { w.write(b) }
        case .drillDown(let buckets):
            w.writeVarint(UInt64(buckets.count))
            for b in buckets { w.write(b) }
        case .drillDownResult(let seq, let entries):
            w.write(seq)
            w.writeVarint(UInt64(entries.count))
            for e in entries {
                w.write(e.key)
                w.write(e.valueHash)
            }
        case .fetch(let keys):
            w.writeVarint(UInt64(keys.count))
            for k in keys { w.write(k) }
        case .fetchResult(let entries), .patch(let entries):
            w.writeVarint(UInt64(entries.count))
            for e in entries {
                w.write(e.key)
                if let v = e.value {
                    w.write(true)
                    w.writeBytes(v)
                } else {
                    w.write(false)
                }
            }
        case .patched(let count):
            w.write(count)
        case .prefetch(let keys):
            w.writeList(keys)
        case .ping(let nonce):
            w.write(nonce)
        case .pong(let nonce, let seq):
            w.write(nonce)
            w.write(seq)
        case .error(let code, let message):
            w.write(code.rawValue)
            w.writeString(message)
        case .forkCreate(let id), .forkDrop(let id), .forkAck(let id):
            w.write(id)
        case .forkApply(let id, let r):
            w.write(id)
            w.write(r)
        case .forkResult(let id, let response):
            w.write(id)
            w.writeBytes(response)
        case .validationReport(let report):
            w.write(report.casesRun)
            w.writeVarint(UInt64(report.failures.count))
            for f in report.failures {
                w.writeString(f.name)
                w.writeString(f.message)
            }
        }
    }

    static func decodeBody(type: UInt8, reader r: inout ByteReader) throws(FrameError) -> WireMessage {
        do {
            return try decodeKnownBody(type: type, reader: &r)
        } catch let e as DecodingError {
            throw .malformed(type: type, reason: e.context)
        } catch let e as FrameError {
            throw e
        } catch {
            throw .malformed(type: type, reason: "\(error)")
        }
    }

    private static func readEntries(_ r: inout ByteReader) throws(DecodingError) -> [KeyValue] {
        try r.readArray { (r: inout ByteReader) throws(DecodingError) -> KeyValue in
            let key = try r.readMapKey()
            let present = try r.readBool()
            return KeyValue(key: key, value: present ? try r.readBytes() : nil)
        }
    }

    private static func decodeKnownBody(type: UInt8, reader r: inout ByteReader) throws -> WireMessage {
        switch type {
        case 1:
            let service = try r.readString()
            let version = try r.readString()
            let schema = try r.read(UInt32.self)
            let minimum = try r.read(UInt32.self)
            let canDowngrade = try r.readBool()
            let protocolVersion = try r.read(UInt16.self)
            let pid = try r.read(UInt32.self)
            let n = try r.readCount(limit: r.remaining)
            var rules: [String: ComparisonRule] = [:]
            for _ in 0..<n {
                let command = try r.readString()
                let raw = try r.readByte()
                guard let rule = ComparisonRule(rawValue: raw) else {
                    throw DecodingError("unknown comparison rule \(raw)")
                }
                rules[command] = rule
            }
            var http: HTTPServiceDeclaration?
            var commands: CommandTable?
            var blocking: [String] = []
            var lastKind: UInt8 = 0
            while !r.isAtEnd {
                let kind = try r.readByte()
                guard kind > lastKind else { throw DecodingError("greeting section \(kind) out of order") }
                lastKind = kind
                switch kind {
                case 1: http = try HTTPServiceDeclaration(decoding: &r)
                case 2: commands = try CommandTable(decoding: &r)
                case 3:
                    let n = try r.readCount(limit: r.remaining)
                    for _ in 0..<n { blocking.append(try r.readString()) }
                default: throw DecodingError("unknown greeting section \(kind)")
                }
            }
            return .hello(
                Hello(
                    service: service, version: version, schemaVersion: schema, minimumMigratableSchema: minimum,
                    canDowngrade: canDowngrade, protocolVersion: protocolVersion, pid: pid, comparisonRules: rules,
                    http: http, commands: commands, blockingCommands: blocking))
        case 2: return .helloAck(instanceID: try r.read(UInt32.self))
        case 3: return .apply(try r.readApplyRequest())
        case 4:
            let result = try r.withUnsafeReader { (r: inout UnsafeByteReader) throws(DecodingError) in
                try r.readAppliedBody()
            }
            return .applied(result)
        case 5: return .snapshotRequest(streamID: try r.read(UInt32.self))
        case 6:
            return .snapshotChunk(
                SnapshotChunk(
                    streamID: try r.read(UInt32.self), sequence: try r.read(UInt64.self),
                    schemaVersion: try r.read(UInt32.self), data: try r.readBytes(), isFinal: try r.readBool(),
                    checksum: try r.read(UInt64.self)))
        case 7: return .restored(sequence: try r.read(UInt64.self), entryCount: try r.read(UInt64.self))
        case 8: return .digestRequest
        case 9: return .downgradeDigestRequest
        case 10:
            let seq = try r.read(UInt64.self)
            let count = try r.read(UInt64.self)
            let buckets = try r.readArray { (r: inout ByteReader) throws(DecodingError) in try r.read(UInt64.self) }
            return .digest(DigestReport(sequence: seq, buckets: buckets, entryCount: count))
        case 11:
            return .drillDown(buckets: try r.readArray { (r: inout ByteReader) throws(DecodingError) in try r.read(UInt32.self) })
        case 12:
            let seq = try r.read(UInt64.self)
            let entries = try r.readArray { (r: inout ByteReader) throws(DecodingError) in
                KeyHash(key: try r.readMapKey(), valueHash: try r.read(UInt64.self))
            }
            return .drillDownResult(sequence: seq, entries: entries)
        case 13: return .fetch(keys: try r.readArray { (r: inout ByteReader) throws(DecodingError) in try r.readMapKey() })
        case 14: return .fetchResult(entries: try readEntries(&r))
        case 15: return .patch(entries: try readEntries(&r))
        case 16: return .patched(count: try r.read(UInt32.self))
        case 17: return .prefetch(keys: try r.readList())
        case 18: return .ping(nonce: try r.read(UInt64.self))
        case 19: return .pong(nonce: try r.read(UInt64.self), sequence: try r.read(UInt64.self))
        case 20: return .shutdown
        case 21:
            let raw = try r.read(UInt16.self)
            let message = try r.readString()
            return .error(code: WireErrorCode(rawValue: raw) ?? .unexpectedMessage, message: message)
        case 22: return .forkCreate(forkID: try r.read(UInt32.self))
        case 23: return .forkApply(forkID: try r.read(UInt32.self), request: try r.readApplyRequest())
        case 24: return .forkResult(forkID: try r.read(UInt32.self), response: try r.readBytes())
        case 25: return .forkDrop(forkID: try r.read(UInt32.self))
        case 26: return .forkAck(forkID: try r.read(UInt32.self))
        case 27: return .validate
        case 28:
            let run = try r.read(UInt32.self)
            let failures = try r.readArray { (r: inout ByteReader) throws(DecodingError) in
                ValidationReport.Failure(name: try r.readString(), message: try r.readString())
            }
            return .validationReport(ValidationReport(casesRun: run, failures: failures))
        default:
            throw FrameError.unknownFrameType(type)
        }
    }
}
