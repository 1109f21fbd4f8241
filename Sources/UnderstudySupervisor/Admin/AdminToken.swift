import Foundation

/// The admin API's bearer token: generated at first start into the data directory with mode 0600.
public enum AdminToken {
    /// The token file's name inside the data directory.
    public static let fileName = "admin.token"

    /// Reads the token, creating it (32 random bytes, hex) when absent.
    public static func loadOrCreate(dataDirectory: String) throws -> String {
        let path = dataDirectory + "/" + fileName
        if let existing = try? String(contentsOfFile: path, encoding: .utf8) {
            let t = existing.trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty { return t }
        }
        var rng = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else {
            throw SupervisorError(.journal, "cannot write the admin token \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let bytes = Array((token + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        return token
    }

    /// Reads the token for a CLI: `UNDERSTUDY_TOKEN` wins, else the file in the data directory.
    public static func read(dataDirectory: String?) -> String? {
        if let env = ProcessInfo.processInfo.environment["UNDERSTUDY_TOKEN"], !env.isEmpty { return env }
        guard let dataDirectory else { return nil }
        return (try? String(contentsOfFile: dataDirectory + "/" + fileName, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
