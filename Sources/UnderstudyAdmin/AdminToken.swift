import Foundation
import UnderstudySupervisor

#if canImport(Glibc)
import Glibc
#endif

/// The admin API's bearer token: generated at first start into the data directory with mode 0600.
public enum AdminToken {
    /// The token file's name inside the data directory.
    public static let fileName = "admin.token"

    /// Reads the token, creating it (32 random bytes, hex) when absent.
    ///
    /// An existing file is used only when it belongs to this user and nobody else may read it (no group or
    /// other permission bits); a token that cannot be written completely is an error.
    /// - Throws: ``SupervisorError`` saying which file and what to do.
    public static func loadOrCreate(dataDirectory: String) throws -> String {
        let path = dataDirectory + "/" + fileName
        let existing = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if existing >= 0 {
            defer { close(existing) }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let type = attributes[.type] as? FileAttributeType,
                  let mode = (attributes[.posixPermissions] as? NSNumber)?.uint32Value,
                  let owner = (attributes[.ownerAccountID] as? NSNumber)?.uint32Value
            else {
                throw SupervisorError(.rejected, "cannot inspect the admin token \(path)")
            }
            let file = (isRegularFile: type == .typeRegular, mode: mode, owner: owner)
            guard file.isRegularFile else {
                throw SupervisorError(.rejected, "the admin token \(path) is not a regular file; remove it and start again")
            }
            guard file.owner == geteuid() else {
                throw SupervisorError(.rejected, """
                    the admin token \(path) belongs to user \(file.owner), not to this user (\(geteuid())); \
                    remove it (a new one is made at start) or run as its owner
                    """)
            }
            guard file.mode & 0o077 == 0 else {
                throw SupervisorError(.rejected, """
                    the admin token \(path) can be read by other users (mode \(String(file.mode, radix: 8))); \
                    run `chmod 600 \(path)` (or remove it: a new one is made at start)
                    """)
            }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(existing, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else {
                    throw SupervisorError(.rejected, "cannot read the admin token \(path): \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                bytes += buffer[0..<n]
            }
            let t = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !t.isEmpty { return t }
            // An empty file: replaced below.
        } else if errno != ENOENT {
            throw SupervisorError(.rejected, "cannot open the admin token \(path): \(String(cString: strerror(errno)))")
        }
        var rng = SystemRandomNumberGenerator()
        let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        // A new file beside the old one, renamed over it: the token is never in a file others may read.
        let temporary = path + ".new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw SupervisorError(.journal, "cannot write the admin token \(temporary): \(String(cString: strerror(errno)))")
        }
        func fail(_ what: String) -> SupervisorError {
            let message = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            return SupervisorError(.journal, "cannot write the admin token \(path): \(what): \(message)")
        }
        guard fchmod(fd, 0o600) == 0 else { throw fail("fchmod") }
        let bytes = Array((token + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw fail("write") }
            offset += n
        }
        guard fsync(fd) == 0 else { throw fail("fsync") }
        guard close(fd) == 0 else {
            unlink(temporary)
            throw SupervisorError(.journal, "cannot write the admin token \(path): close: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            throw SupervisorError(.journal, "cannot write the admin token \(path): rename: \(message)")
        }
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
