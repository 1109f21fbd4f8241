import Foundation
import Testing
import UnderstudyDemo
import UnderstudySupervisor
import UnderstudyWire

@testable import UnderstudySupervisor

extension EndToEnd {
    @Suite("HTTP services behind users")
    struct HTTPAuthTests {
        static func basic(_ user: String, _ password: String) -> (String, String) {
            ("Authorization", "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }

        @Test("HTTP Basic and Bearer credentials: 401 without or with wrong ones, 403 for a read-only user writing; nothing secret journaled")
        func basicAndBearer() async throws {
            let dir = try TempDirectory("http-auth")
            defer { dir.remove() }
            let password = "pw-\(UUID().uuidString.prefix(12))"
            let readerPassword = "rd-\(UUID().uuidString.prefix(12))"
            let aclPath = dir.path + "/users.acl"
            try """
                user default on >\(password) ~* &* +@all
                user reader on >\(readerPassword) ~/accounts* &* +@all -@write
                """.write(toFile: aclPath, atomically: true, encoding: .utf8)
            let data = dir.path + "/data"
            let s = try await SupervisorProcess.start(service: Binaries.ledger1, dataDirectory: data, arguments: ["--aclfile", aclPath])
            defer { s.cleanup() }
            let port = s.port
            let statuses: [Int] = try await io {
                let c = try HTTPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
                let body = Array(#"{"id": "a1", "balance": 100}"#.utf8)
                var out: [Int] = []
                out.append(try c.request("GET", "/health").status)  // no credentials
                out.append(try c.request("POST", "/accounts", headers: [Self.basic("default", "nope")], body: body).status)
                out.append(try c.request("POST", "/accounts", headers: [("Authorization", "Bearer nope")], body: body).status)
                out.append(try c.request("POST", "/accounts", headers: [("Authorization", "Bearer \(password)")], body: body).status)
                out.append(try c.request("GET", "/accounts/a1", headers: [Self.basic("default", password)]).status)
                out.append(try c.request("GET", "/accounts/a1", headers: [Self.basic("reader", readerPassword)]).status)
                out.append(try c.request("POST", "/accounts", headers: [Self.basic("reader", readerPassword)],
                                         body: Array(#"{"id": "a2", "balance": 1}"#.utf8)).status)
                out.append(try c.request("GET", "/health", headers: [Self.basic("reader", readerPassword)]).status)  // outside ~/accounts*
                return out
            }
            #expect(statuses == [401, 401, 401, 201, 200, 200, 403, 403])
            let challenge: String? = try await io {
                try HTTPClient(host: "127.0.0.1", port: port).request("GET", "/health").headers["www-authenticate"]
            }
            #expect(challenge?.hasPrefix("Basic") == true)
            // The refused write changed nothing; the allowed one did.
            let a2: Int = try await io {
                try HTTPClient(host: "127.0.0.1", port: port).request("GET", "/accounts/a2", headers: [Self.basic("default", password)]).status
            }
            #expect(a2 == 404)
            #expect(await s.stop() == 0)
            // Nothing secret in the data directory (journal, snapshots, logs beside it).
            for file in FileManager.default.enumerator(atPath: data)?.compactMap({ $0 as? String }) ?? [] {
                let bytes = FileManager.default.contents(atPath: data + "/" + file) ?? Data()
                let text = String(decoding: bytes, as: UTF8.self)
                #expect(!text.contains(password) && !text.contains(readerPassword), "a password is in \(file)")
                let base64 = Data("reader:\(readerPassword)".utf8).base64EncodedString()
                #expect(!text.contains(base64), "credentials are in \(file)")
            }
            #expect(!s.stderr.contains(password) && !s.stderr.contains(readerPassword))
        }
    }
}
