import Testing
import UnderstudyWire

@Suite("HTTP on the wire")
struct HTTPWireTests {
    @Test("JSON encodes with sorted keys and no whitespace, and parses back")
    func jsonRoundTrip() throws {
        let v: JSONValue = ["b": 1, "a": ["x", true, nil, -3], "c": ["z": .double(1.5), "y": "q\"\n"]]
        #expect(v.text == #"{"a":["x",true,null,-3],"b":1,"c":{"y":"q\"\n","z":1.5}}"#)
        #expect(try JSONValue(parsing: Array(" \(v.text) ".utf8)) == v)
        #expect(try JSONValue(parsing: Array(#"{"u":"\u00e9\ud83d\ude00"}"#.utf8))["u"]?.stringValue == "é😀")
        #expect(try JSONValue(parsing: Array("9223372036854775807".utf8)) == .int(.max))
        #expect(try JSONValue(parsing: Array("1e3".utf8)) == .double(1000))
    }

    @Test("malformed JSON is an error, never a crash", arguments: ["{", "[1,]", "01", "\"\\x\"", "tru", "{\"a\" 1}", "1 2", "", String(repeating: "[", count: 600)])
    func jsonMalformed(_ text: String) {
        #expect(throws: DecodingError.self) { try JSONValue(parsing: Array(text.utf8)) }
    }

    @Test("JSON paths: ignored members and order-insensitive arrays")
    func jsonPaths() {
        let a: JSONValue = ["id": "x", "items": [["n": 1, "t": 5], ["n": 2, "t": 6]], "extra": 1]
        let b: JSONValue = ["id": "x", "items": [["n": 2, "t": 7], ["n": 1, "t": 8]]]
        let strip = { (v: JSONValue) in v.removing(path: JSONValue.path("extra")).removing(path: JSONValue.path("items.*.t")) }
        #expect(strip(a) != strip(b))
        #expect(strip(a).sortingArrays(at: JSONValue.path("items")) == strip(b).sortingArrays(at: JSONValue.path("items")))
    }

    @Test("requests and responses round-trip; trailing bytes are refused")
    func messages() throws {
        let r = HTTPRequest(method: "POST", target: "/t?x=1", headers: [HTTPHeader("idempotency-key", "k")], body: Array("{}".utf8))
        #expect(try HTTPRequest(decoding: r.encoded) == r)
        #expect(r.path == "/t" && r.query == "x=1" && r.header("Idempotency-Key") == "k")
        let s = HTTPResponse.json(201, ["id": "t1"])
        #expect(try HTTPResponse(decoding: s.encoded) == s)
        #expect(throws: DecodingError.self) { try HTTPResponse(decoding: s.encoded + [0]) }
        #expect(throws: DecodingError.self) { try HTTPRequest(decoding: Array("+OK\r\n".utf8)) }
    }

    @Test("path patterns capture parameters")
    func patterns() {
        let p = HTTPPathPattern("/accounts/{id}/transfers")
        #expect(p.match("/accounts/a1/transfers") == ["id": "a1"])
        #expect(p.match("/accounts/a1") == nil)
        #expect(p.match("/accounts/a1/transfers/x") == nil)
        #expect(HTTPPathPattern("/health").match("/health/") == [:])
    }

    @Test("a hello declaring HTTP round-trips; a RESP hello's bytes are unchanged by the new field")
    func hello() throws {
        let declaration = HTTPServiceDeclaration(
            requestHeaders: ["Idempotency-Key"],
            routes: [HTTPRouteDeclaration(method: "get", pattern: "/a/{id}", comparison: HTTPComparison(ignoredJSONPaths: ["x"], unorderedJSONPaths: [""]))])
        let h = Hello(service: "s", version: "1", schemaVersion: 1, minimumMigratableSchema: 1, canDowngrade: false, pid: 9,
                      comparisonRules: ["A": .ignore], http: declaration)
        var out = ByteWriter()
        FrameCodec.encode(.hello(h), into: &out)
        var decoder = FrameDecoder()
        decoder.append(out.bytes)
        #expect(try decoder.next() == .hello(h))
        #expect(declaration.requestHeaders == ["idempotency-key"])
        #expect(declaration.routes[0].commandClass == "GET /a/{id}")

        var plain = h
        plain.http = nil
        var withHTTP = ByteWriter()
        var without = ByteWriter()
        FrameCodec.encode(.hello(h), into: &withHTTP)
        FrameCodec.encode(.hello(plain), into: &without)
        // The RESP greeting is a prefix of the HTTP one (apart from the length header): the field is appended.
        #expect(Array(withHTTP.bytes.dropFirst(4).prefix(without.bytes.count - 4)) == Array(without.bytes.dropFirst(4)))
    }
}
