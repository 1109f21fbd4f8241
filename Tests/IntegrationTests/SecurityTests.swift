import Foundation
import Synchronization
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// `openssl` on PATH, if installed.
private let openSSL: String? = {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let p = "\(dir)/openssl"
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}()

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl into `directory`.
private func makeCertificates(in directory: String) async throws {
    let script = """
        set -e
        cd "\(directory)"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=understudy-test-ca -keyout ca.key -out ca.crt
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt
        openssl req -newkey rsa:2048 -nodes -subj /CN=understudy-test-client -keyout client.key -out client.csr
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt
        """
    let result = try await runCommand("/bin/sh", ["-c", script], timeout: 60)
    guard result.status == 0 else { throw HarnessError("openssl failed: \(result)") }
}

/// Every file under `directory`, read as bytes.
private func filesContaining(_ secret: String, under directory: String) -> [String] {
    var hits: [String] = []
    let needle = Array(secret.utf8)
    guard let walker = FileManager.default.enumerator(atPath: directory) else { return hits }
    for case let relative as String in walker {
        let path = directory + "/" + relative
        guard let data = FileManager.default.contents(atPath: path) else { continue }
        if Array(data).firstRange(of: needle) != nil { hits.append(relative) }
    }
    return hits
}

/// A field of the ready line (`tls=`, `listen=`).
private func readyField(_ name: String, of s: SupervisorProcess) -> ListenAddress? {
    guard let line = s.stdout.split(separator: "\n").first(where: { $0.hasPrefix("understudy ready:") }) else { return nil }
    for part in line.split(separator: " ") where part.hasPrefix(name + "=") {
        return ListenAddress(parsing: String(part.dropFirst(name.count + 1)))
    }
    return nil
}

extension EndToEnd {
    @Suite("Who may talk to a service: AUTH, ACL users, protected mode, TLS, the admin token")
    struct SecurityTests {
        static let aclFile = """
            user reader on >reader-pw-7f3a ~* &* +@all -@write
            user cache on >cache-pw-91c2 ~cached:* &* -@all +get +set +acl|whoami
            """

        @Test("redis-cli: no credentials, wrong ones, a read-only user writing, a key outside the patterns; nothing secret anywhere",
              .enabled(if: Binaries.redisCLI != nil, "redis-cli is not installed (apt-get install redis-tools)"))
        func authenticationWithRedisCLI() async throws {
            let dir = try TempDirectory("auth")
            defer { dir.remove() }
            let password = "pw-\(UUID().uuidString.prefix(12))"
            let wrong = "wrong-\(UUID().uuidString.prefix(12))"
            let aclPath = dir.path + "/users.acl"
            try Self.aclFile.write(toFile: aclPath, atomically: true, encoding: .utf8)
            let data = dir.path + "/data"
            let s = try await SupervisorProcess.start(
                dataDirectory: data, arguments: ["--requirepass", password, "--aclfile", aclPath, "--log-level", "info"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            let cli = Binaries.redisCLI!
            let port = ["-h", "127.0.0.1", "-p", "\(s.port)", "--no-auth-warning"]

            let none = try await runCommand(cli, port + ["SET", "k", "v"])
            #expect(none.output.contains("NOAUTH Authentication required."), "\(none)")
            let bad = try await runCommand(cli, port + ["-a", wrong, "GET", "k"])
            #expect(bad.output.contains("WRONGPASS invalid username-password pair or user is disabled."), "\(bad)")
            let badUser = try await runCommand(cli, port + ["--user", "reader", "--pass", wrong, "GET", "k"])
            #expect(badUser.output.contains("WRONGPASS"), "\(badUser)")
            let set = try await runCommand(cli, port + ["-a", password, "SET", "k", "v"])
            #expect(set.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "OK", "\(set)")
            _ = try await runCommand(cli, port + ["-a", password, "SET", "cached:1", "c"])

            let readerWrites = try await runCommand(cli, port + ["--user", "reader", "--pass", "reader-pw-7f3a", "SET", "k", "w"])
            #expect(readerWrites.output.contains("NOPERM this user has no permissions to run the 'set' command"), "\(readerWrites)")
            let readerReads = try await runCommand(cli, port + ["--user", "reader", "--pass", "reader-pw-7f3a", "GET", "k"])
            #expect(readerReads.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "v", "\(readerReads)")
            let whoami = try await runCommand(cli, port + ["--user", "reader", "--pass", "reader-pw-7f3a", "ACL", "WHOAMI"])
            #expect(whoami.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "reader", "\(whoami)")
            let outside = try await runCommand(cli, port + ["--user", "cache", "--pass", "cache-pw-91c2", "GET", "k"])
            #expect(outside.output.contains("NOPERM this user has no permissions to access one of the keys used as arguments"),
                    "\(outside)")
            let inside = try await runCommand(cli, port + ["--user", "cache", "--pass", "cache-pw-91c2", "GET", "cached:1"])
            #expect(inside.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "c", "\(inside)")
            let list = try await runCommand(cli, port + ["-a", password, "ACL", "LIST"])
            #expect(list.stdout.contains("user reader on #"), "\(list)")
            #expect(!list.stdout.contains("reader-pw-7f3a") && !list.stdout.contains(password), "\(list)")

            // HELLO 2 AUTH, and an AUTH inside MULTI (refused, never queued).
            let replies: [RESPValue] = try await io {
                let c = try s.client()
                return [
                    try c.call("HELLO", "2", "AUTH", "default", wrong), try c.call("HELLO", "2", "AUTH", "default", password),
                    try c.call("MULTI"), try c.call("AUTH", password), try c.call("EXEC"), try c.call("GET", "k"),
                ]
            }
            #expect(text(replies[0])?.hasPrefix("WRONGPASS") == true, "\(replies[0])")
            guard case .array(let hello?) = replies[1] else {
                Issue.record("HELLO 2 AUTH: \(replies[1])")
                return
            }
            #expect(hello.contains(.bulk(Array("proto".utf8))))
            #expect(text(replies[3]) == "ERR Command not allowed inside a transaction")
            #expect(text(replies[5]) == "v")

            // Nothing secret in the journal and data directory, the logs, the admin API or the dashboard.
            #expect(try s.admin.post("/snapshot").status == 200)
            for secret in [password, wrong, "reader-pw-7f3a", "cache-pw-91c2"] {
                #expect(filesContaining(secret, under: data).isEmpty, "\(secret) in \(filesContaining(secret, under: data))")
                #expect(!s.stderr.contains(secret) && !s.stdout.contains(secret))
                for path in ["/", "/status", "/discrepancies?limit=1000", "/metrics", "/quarantine", "/swaps", "/deploys"] {
                    let body = try s.admin.get(path).text
                    #expect(!body.contains(secret), "\(secret) in GET \(path)")
                }
            }
            let st = try s.status()
            #expect(st.authenticationRequired == true)
            #expect(await s.stop() == 0)
            #expect(!s.stderr.contains(password))
        }

        @Test("start is refused: beyond loopback without a password, an admin address that only looks like loopback, a token file others can read")
        func refusedStarts() async throws {
            let dir = try TempDirectory("refused")
            defer { dir.remove() }
            func refused(_ arguments: [String], data: String) async throws -> ChildProcess {
                let child = try SupervisorProcess.startChild(service: Binaries.kv1, dataDirectory: data, arguments: arguments)
                let status = await child.waitForExit(timeout: 60)
                if status == nil { child.signal(SIGKILL) }
                #expect(status != nil && status != 0, "\(arguments) started: \(child.stdout)")
                #expect(!child.stdout.contains("understudy ready"))
                return child
            }
            let open = try await refused(["--listen", "0.0.0.0:0"], data: dir.path + "/d1")
            #expect(open.stderr.contains("protected mode") && open.stderr.contains("--requirepass")
                    && open.stderr.contains("--protected-mode no"), "\(open.stderr)")
            let tlsOpen = try await refused(
                ["--tls-port", "0.0.0.0:0", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"], data: dir.path + "/d2")
            #expect(tlsOpen.stderr.contains("protected mode"), "\(tlsOpen.stderr)")
            let fakeLoopback = try await refused(["--admin", "127.evil.example:0"], data: dir.path + "/d3")
            #expect(fakeLoopback.stderr.contains("not a loopback address"), "\(fakeLoopback.stderr)")

            let d4 = dir.path + "/d4"
            try FileManager.default.createDirectory(atPath: d4, withIntermediateDirectories: true)
            try "0123456789abcdef0123456789abcdef\n".write(toFile: d4 + "/admin.token", atomically: true, encoding: .utf8)
            chmod(d4 + "/admin.token", 0o644)
            let readable = try await refused([], data: d4)
            #expect(readable.stderr.contains("chmod 600"), "\(readable.stderr)")

            // --protected-mode no accepts it; a password does too.
            for arguments in [["--listen", "0.0.0.0:0", "--protected-mode", "no"], ["--listen", "0.0.0.0:0", "--requirepass", "x"]] {
                let s = try await SupervisorProcess.start(dataDirectory: dir.path + "/ok-\(UUID().uuidString.prefix(4))", arguments: arguments)
                defer { s.cleanup() }
                #expect(await s.stop() == 0)
            }
        }

        @Test("TLS: redis-cli --tls with the CA file; a client certificate is required with --tls-ca-cert; plain text gets nothing",
              .enabled(if: Binaries.redisCLI != nil && openSSL != nil, "needs redis-cli and openssl"))
        func tls() async throws {
            let dir = try TempDirectory("tls")
            defer { dir.remove() }
            let certs = dir.path + "/certs"
            try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
            try await makeCertificates(in: certs)
            let cli = Binaries.redisCLI!
            let password = "tls-pw-\(UUID().uuidString.prefix(8))"

            // Plain and TLS, client certificates required.
            let s = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/data",
                arguments: ["--requirepass", password, "--tls-port", "0", "--tls-cert", certs + "/server.crt",
                            "--tls-key", certs + "/server.key", "--tls-ca-cert", certs + "/ca.crt"])
            defer { s.cleanup() }
            let tlsAddress = try #require(readyField("tls", of: s), "\(s.stdout)")
            #expect(readyField("listen", of: s)?.port == s.port)
            let tlsArgs = ["--tls", "--cacert", certs + "/ca.crt", "-h", "127.0.0.1", "-p", "\(tlsAddress.port)", "--no-auth-warning"]
            let withCert = ["--cert", certs + "/client.crt", "--key", certs + "/client.key"]
            let set = try await runCommand(cli, tlsArgs + withCert + ["-a", password, "SET", "tls:k", "over tls"])
            #expect(set.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "OK", "\(set)")
            let noAuth = try await runCommand(cli, tlsArgs + withCert + ["GET", "tls:k"])
            #expect(noAuth.output.contains("NOAUTH Authentication required."), "\(noAuth)")
            let noCert = try await runCommand(cli, tlsArgs + ["-a", password, "GET", "tls:k"])
            #expect(!noCert.stdout.contains("over tls"), "without a client certificate: \(noCert)")
            // The same data on the plain port.
            let plain = try await runCommand(cli, ["-p", "\(s.port)", "--no-auth-warning", "-a", password, "GET", "tls:k"])
            #expect(plain.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "over tls", "\(plain)")
            // A plain-text client on the TLS port gets nothing it can use.
            let plainOnTLS: RESPValue? = try? await io {
                let c = try RESPClient(host: "127.0.0.1", port: tlsAddress.port, timeoutSeconds: 5)
                return try c.call("PING")
            }
            #expect(plainOnTLS != .simple("PONG"), "\(String(describing: plainOnTLS))")
            let json = try await understudy(["status", "--json"] + s.cliTarget)
            #expect(json.status == 0, "\(json)")
            #expect(json.stdout.contains("\"tlsListen\":\"127.0.0.1:\(tlsAddress.port)\""), "\(json.stdout.prefix(400))")
            #expect(await s.stop() == 0)

            // TLS only, no client certificates.
            let child = try SupervisorProcess.startChild(
                service: Binaries.kv1, dataDirectory: dir.path + "/data2",
                arguments: ["--listen", "off", "--tls-port", "0", "--tls-cert", certs + "/server.crt", "--tls-key", certs + "/server.key"])
            defer { child.signal(SIGKILL) }
            var ready: String?
            _ = await eventually(timeout: 90) {
                ready = child.stdout.split(separator: "\n").first { $0.hasPrefix("understudy ready:") }.map(String.init)
                return ready != nil || !child.isRunning
            }
            let line = try #require(ready, "\(child.stderr)")
            #expect(line.contains("listen=off"), "\(line)")
            let port = try #require(line.split(separator: " ").first { $0.hasPrefix("tls=") }.flatMap { ListenAddress(parsing: String($0.dropFirst(4))) })
            let ping = try await runCommand(cli, ["--tls", "--cacert", certs + "/ca.crt", "-h", "127.0.0.1", "-p", "\(port.port)", "PING"])
            #expect(ping.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "PONG", "\(ping)")
            child.signal(SIGTERM)
            #expect(await child.waitForExit(timeout: 60) == 0)
        }

        @Test("a swap, a SIGKILL of the primary and a deploy keep authenticated connections authenticated")
        func authenticationSurvivesRoleChanges() async throws {
            let dir = try TempDirectory("authswap")
            defer { dir.remove() }
            let password = "swap-pw-\(UUID().uuidString.prefix(8))"
            let aclPath = dir.path + "/users.acl"
            try Self.aclFile.write(toFile: aclPath, atomically: true, encoding: .utf8)
            let s = try await SupervisorProcess.start(
                dataDirectory: dir.path + "/data",
                arguments: ["--requirepass", password, "--aclfile", aclPath, "--probation-seconds", "1"])
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())

            // One authenticated writer issuing INCRs throughout, and one read-only user.
            let clients = try Connections(port: s.port)
            let writer = clients.writer
            let reader = clients.reader
            #expect(try writer.call("AUTH", password) == .simple("OK"))
            #expect(try reader.call("AUTH", "reader", "reader-pw-7f3a") == .simple("OK"))
            let load = Task {
                try await io { () -> (acknowledged: Int, errors: [String]) in
                    let writer = clients.writer
                    var acknowledged = 0
                    var errors: [String] = []
                    while !clients.stop.load(ordering: .relaxed) {
                        let reply = try writer.call("INCR", "authed:counter")
                        if case .integer = reply { acknowledged += 1 } else { errors.append(reply.display) }
                        // Traffic for the deploy's live comparison, from the same connection.
                        _ = try writer.call("SET", "authed:k\(acknowledged % 50)", "v\(acknowledged)")
                    }
                    return (acknowledged, errors)
                }
            }
            try await Task.sleep(for: .milliseconds(300))

            let swap = try s.admin.post("/swap")
            #expect(swap.status == 200, "\(swap.text)")
            #expect(await s.waitForLiveShadow())
            let primary = try #require(try s.primary())
            #expect(kill(primary.pid, SIGKILL) == 0)
            let failedOver = await eventually(timeout: 60) { (try s.primary()?.pid).map { $0 != primary.pid } ?? false }
            #expect(failedOver)
            #expect(await s.waitForLiveShadow())
            let deploy = try await understudy(["deploy", Binaries.kv2, "--compare-requests", "300"] + s.cliTarget)
            #expect(deploy.status == 0, "\(deploy)")
            try await Task.sleep(for: .milliseconds(300))
            clients.stop.store(true, ordering: .relaxed)
            let result = try await load.value

            #expect(result.errors.isEmpty, "\(result.errors.prefix(5))")
            #expect(result.acknowledged > 0)
            #expect(try writer.call("ACL", "WHOAMI") == .bulk(Array("default".utf8)))
            #expect(try writer.call("GET", "authed:counter") == .bulk(Array("\(result.acknowledged)".utf8)))
            #expect(try reader.call("ACL", "WHOAMI") == .bulk(Array("reader".utf8)))
            #expect(text(try reader.call("SET", "x", "y")) == "NOPERM this user has no permissions to run the 'set' command")
            #expect(try reader.call("GET", "authed:counter") == .bulk(Array("\(result.acknowledged)".utf8)))
            let st = try s.status()
            #expect(st.version == "2.0.0")
            #expect(st.swaps >= 2)
            #expect(await s.stop() == 0)
        }
    }
}

/// Two client connections used from a load thread and the test (one at a time), and the load's stop flag.
private final class Connections: @unchecked Sendable {
    let writer: RESPClient
    let reader: RESPClient
    let stop = Atomic<Bool>(false)

    init(port: Int) throws {
        writer = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
        reader = try RESPClient(host: "127.0.0.1", port: port, timeoutSeconds: 30)
    }
}
