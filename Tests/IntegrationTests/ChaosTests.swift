import Foundation
import Testing

extension EndToEnd {
    @Suite("Chaos")
    struct ChaosTests {
        /// The repository's root (scripts/ lives there).
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path

        static var python: String? {
            for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
                let p = "\(dir)/python3"
                if FileManager.default.isExecutableFile(atPath: p) { return p }
            }
            return nil
        }

        @Test("scripts/chaos.sh 20: random SIGKILLs of primary, shadow, candidate and supervisor under INCR load with --fsync always — nothing lost, nothing doubled, every round recovers",
              .enabled(if: python != nil, "python3 is not installed (scripts/chaos.py needs it)"))
        func chaos() async throws {
            let result = try await runCommand(
                "/bin/bash", [Self.root + "/scripts/chaos.sh", "20", "--bin-dir", Binaries.directory], timeout: 1500)
            let summary = result.stdout.split(separator: "\n").first { $0.hasPrefix("chaos: 20 rounds") }.map(String.init) ?? ""
            #expect(result.status == 0, "chaos.sh failed:\n\(result.stdout.suffix(4000))\n\(result.stderr.suffix(2000))")
            #expect(summary.contains("lost 0, doubled 0, unrecovered 0, surviving workers 0"), "\(summary)")
        }
    }
}
