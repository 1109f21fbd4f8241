import Foundation
import Testing
import UnderstudyAdmin
import UnderstudyDemo
import UnderstudyFrontend
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

extension EndToEnd {
    @Suite("Operator surface: admin API and CLI")
    struct OperatorTests {
        @Test("Every endpoint but the dashboard page needs the token; GET endpoints have their shapes; the CLI prints status")
        func adminAPI() async throws {
            let dir = try TempDirectory("admin")
            defer { dir.remove() }
            let data = dir.path + "/data"
            let s = try await SupervisorProcess.start(dataDirectory: data)
            defer { s.cleanup() }
            #expect(await s.waitForLiveShadow())
            _ = try s.client().call("SET", "admin:k", "v")

            // The token file is private.
            var st = stat()
            #expect(stat(data + "/" + AdminToken.fileName, &st) == 0)
            #expect(st.st_mode & 0o777 == 0o600)
            let token = try #require(AdminToken.read(dataDirectory: data))
            #expect(token.count >= 32)

            // Without a token and with a wrong one: 401, and nothing happens.
            let before = try s.status()
            let deployBody = try JSONEncoder().encode(DeployRequest(binary: Binaries.kv2))
            for client in [AdminClient(address: s.ready.admin, token: nil), AdminClient(address: s.ready.admin, token: (token.first == "0" ? "1" : "0") + token.dropFirst())] {
                for (path, body) in [("/swap", nil), ("/rollback", nil), ("/deploy", deployBody)] as [(String, Data?)] {
                    let reply = try client.post(path, json: body)
                    #expect(reply.status == 401, "\(path) with token \(client.token ?? "none"): \(reply.status) \(reply.text)")
                }
            }
            let after = try s.status()
            #expect(after.swaps == 0)
            #expect(after.instances.map(\.id) == before.instances.map(\.id))
            #expect(after.instances.map(\.role) == before.instances.map(\.role))
            #expect(try s.swaps().isEmpty)
            #expect(try s.admin.get("/deploys").decode([DeployReport].self).isEmpty)
            // The CLI with a wrong token (UNDERSTUDY_TOKEN wins over the file) fails too.
            let wrongCLI = try await runCommand(Binaries.understudy, ["swap"] + s.cliTarget, environment: ["UNDERSTUDY_TOKEN": "nope"])
            #expect(wrongCLI.status != 0)
            #expect(wrongCLI.stderr.contains("401"), "\(wrongCLI)")
            #expect(try s.swaps().isEmpty)

            // Reads need the token too (401 without it, or with a wrong one); only the dashboard's page does not.
            for client in [AdminClient(address: s.ready.admin, token: nil), AdminClient(address: s.ready.admin, token: "0" + token.dropFirst(2))] {
                for path in ["/status", "/discrepancies", "/swaps", "/predictions", "/deploys", "/deploys/1", "/quarantine",
                             "/health", "/metrics", "/nonexistent"] {
                    let reply = try client.get(path)
                    #expect(reply.status == 401, "GET \(path) with token \(client.token ?? "none"): \(reply.status) \(reply.text)")
                    #expect(!reply.text.contains("kv"), "GET \(path) without the token showed: \(reply.text)")
                }
            }
            let page = try AdminClient(address: s.ready.admin, token: nil).get("/")
            #expect(page.status == 200)
            #expect(page.text.contains("Authorization"), "the dashboard's script sends the token")
            #expect(page.text.contains("sessionStorage"))
            #expect(!page.text.contains(token))

            // The shapes of the read-only endpoints.
            let reader = s.admin
            let status = try reader.get("/status")
            #expect(status.status == 200)
            let decoded = try status.decode(SupervisorStatus.self)
            #expect(decoded.service == "kv")
            #expect(decoded.version == "1.0.0")
            #expect(decoded.dataDirectory == data)
            #expect(decoded.instances.contains { $0.role == "primary" && $0.pid > 0 })
            #expect(try reader.get("/discrepancies").decode(DiscrepancyList.self).total >= 0)
            #expect(try reader.get("/swaps").decode([SwapRecord].self).isEmpty)
            let predictions = try reader.get("/predictions")
            #expect(predictions.status == 200)
            _ = try predictions.decode(PredictionSnapshot.self)
            #expect(try reader.get("/deploys").decode([DeployReport].self).isEmpty)
            let metrics = try reader.get("/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains("understudy_requests_total"), "\(metrics.text.prefix(2000))")
            let dashboard = try reader.get("/")
            #expect(dashboard.status == 200)
            #expect(dashboard.text.lowercased().contains("<html"))
            #expect(try reader.get("/deploys/99").status == 404)

            // understudy status --json prints the same status; plain status lists the instances.
            let json = try await understudy(["status", "--json"] + s.cliTarget)
            #expect(json.status == 0, "\(json)")
            let fromCLI = try JSONDecoder().decode(SupervisorStatus.self, from: Data(json.stdout.utf8))
            #expect(fromCLI.instances.map(\.id) == decoded.instances.map(\.id))
            let plain = try await understudy(["status"] + s.cliTarget)
            #expect(plain.status == 0, "\(plain)")
            #expect(plain.stdout.contains("instances:"), "\(plain)")
            for i in decoded.instances {
                #expect(plain.stdout.contains("#\(i.id) \(i.role)"), "\(plain)")
                #expect(plain.stdout.contains("pid \(i.pid)"), "\(plain)")
            }

            // With the token, the same call works (and is recorded).
            let swap = try s.admin.post("/swap")
            #expect(swap.status == 200, "\(swap.text)")
            #expect(try s.swaps().count == 1)
            #expect(await s.stop() == 0)
        }

        @Test("Prefetch hints from the prediction engine reach the primary's prefetch hook and name the next keys")
        func prefetchHints() async throws {
            let dir = try TempDirectory("prefetch")
            defer { dir.remove() }
            let s = try await SupervisorProcess.start(service: Binaries.testService, dataDirectory: dir.path + "/data")
            defer { s.cleanup() }
            let client = try s.client()
            // A program-like loop over 50 keys, paced so the advisor sees the stream as it comes: after the
            // first round the next key is predictable. A guess among 5 of 50 keys would be right 10 % of the time.
            let keys = 50
            for round in 0..<16 {
                for k in 0..<keys {
                    #expect(try client.call("INCR", "loop:\(k)") == .integer(Int64(round + 1)))
                    try await Task.sleep(for: .milliseconds(4))
                }
            }
            let reader = s.admin
            var snapshot = try reader.get("/predictions").decode(PredictionSnapshot.self)
            _ = await eventually(timeout: 30) {
                snapshot = try reader.get("/predictions").decode(PredictionSnapshot.self)
                return snapshot.observed >= 16 * keys
            }
            #expect(snapshot.observed + snapshot.dropped >= 16 * keys)
            #expect(snapshot.prefetchHintsSent > 0)
            let hitRate = try #require(snapshot.prefetchHitRate)
            print("prefetch: \(snapshot.prefetchHintsSent) hint sets, hit rate \(hitRate) over \(snapshot.observed) observations")
            #expect(hitRate > 0.3, "prefetch hit rate \(hitRate) over \(snapshot.observed) observations")
            // The report counts the interned keys (at most the 50 loop keys and a few others: far from the bound).
            let json = try reader.get("/predictions").text
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let report = try #require(object?["report"] as? [String: Any], "\(json.prefix(2000))")
            let interned = try #require(report["internedKeys"] as? Int, "\(json.prefix(2000))")
            #expect(interned > 0 && interned <= 2 * keys, "\(interned) keys interned")
            #expect(report["keyGenerations"] as? Int == 0, "\(json.prefix(2000))")
            // The primary's service received them through the SDK's prefetch hook.
            guard case .integer(let received) = try client.call("PREFETCHED") else {
                Issue.record("PREFETCHED did not answer an integer")
                return
            }
            #expect(received > 0)
            // Hints are advice only: the state is exactly what the requests made it.
            #expect(try client.call("GET", "loop:0") == .integer(16))
        }

        @Test("The CLI says clearly when no supervisor is listening")
        func noSupervisor() async throws {
            let dir = try TempDirectory("nosup")
            defer { dir.remove() }
            let result = try await understudy(["status", "--admin", "127.0.0.1:1", "--data", dir.path])
            #expect(result.status != 0)
            #expect(result.output.contains("cannot reach"), "\(result)")
        }
    }
}
