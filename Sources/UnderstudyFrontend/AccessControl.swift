import Foundation

/// Who may talk to a service and what each user may do: Redis's ACL model (users, passwords, command and
/// category rules, key patterns), independent of any wire protocol.
///
/// A front-end authenticates a connection with ``authenticate(user:password:)`` (RESP `AUTH`, `HELLO … AUTH`;
/// an HTTP front-end's Basic or Bearer credentials) and asks the user it got ``ACLUser/check(_:)`` before a
/// command is journaled. Passwords are kept only as SHA-256 hashes.
public struct AccessControl: Sendable {
    /// The users by name; always contains `default`.
    public private(set) var users: [String: ACLUser]

    /// The user a new connection starts as: `default` while it needs no password, else nobody.
    public var initialUser: ACLUser? { authenticationRequired ? nil : users["default"] }

    /// True when a connection must authenticate before its first command (the default user has a password or
    /// is off).
    public var authenticationRequired: Bool {
        guard let d = users["default"] else { return true }
        return !(d.enabled && d.noPassword)
    }

    /// No authentication: the default user may run everything on every key (Redis without `requirepass`).
    public static let open = AccessControl(users: ["default": .unrestricted(name: "default")])

    private init(users: [String: ACLUser]) { self.users = users }

    /// Builds the users from `--requirepass` and an ACL file's text.
    ///
    /// - Parameters:
    ///   - requirePass: The default user's password (`--requirepass`), or nil.
    ///   - aclFile: The text of an ACL file (`user NAME rules…` per line), or nil.
    ///   - aclFilePath: The file's path, for messages.
    /// - Throws: ``AccessControlError`` naming the line and the rule that is wrong (never a password).
    public init(requirePass: String?, aclFile: String?, aclFilePath: String = "the ACL file") throws {
        var users: [String: ACLUser] = [:]
        if let aclFile {
            for (index, rawLine) in aclFile.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = rawLine.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
                if line.isEmpty || line.hasPrefix("#") { continue }
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                guard words.count >= 2, words[0] == "user" else {
                    throw AccessControlError(
                        "\(aclFilePath):\(index + 1): a line must be 'user NAME RULES…' (Redis's ACL file format)")
                }
                let name = words[1]
                guard users[name] == nil else {
                    throw AccessControlError("\(aclFilePath):\(index + 1): user '\(name)' is defined twice")
                }
                var user = ACLUser(name: name)
                do {
                    for rule in words.dropFirst(2) { try user.apply(rule: rule) }
                } catch let error as AccessControlError {
                    throw AccessControlError("\(aclFilePath):\(index + 1): \(error.message)")
                }
                users[name] = user
            }
        }
        if let requirePass {
            if let d = users["default"], !d.noPassword || !d.passwordHashes.isEmpty {
                throw AccessControlError(
                    "--requirepass and a password for 'default' in \(aclFilePath) disagree; give the password in one place")
            }
            var d = users["default"] ?? .unrestricted(name: "default")
            d.noPassword = false
            d.passwordHashes = [ACLUser.hash(Array(requirePass.utf8))]
            users["default"] = d
        } else if users["default"] == nil {
            // An ACL file that does not mention `default` asks for authentication: its default user is off
            // (Redis would leave it open with `nopass`; a file of users is taken to mean "only these users").
            var d = ACLUser(name: "default")
            if aclFile == nil { d = .unrestricted(name: "default") }
            users["default"] = d
        }
        self.users = users
    }

    /// Reads and parses an ACL file.
    public static func load(requirePass: String?, aclFilePath: String?) throws -> AccessControl {
        guard let aclFilePath else { return try AccessControl(requirePass: requirePass, aclFile: nil) }
        let text: String
        do {
            text = try String(contentsOfFile: aclFilePath, encoding: .utf8)
        } catch {
            throw AccessControlError("cannot read the ACL file \(aclFilePath): \(error.localizedDescription)")
        }
        return try AccessControl(requirePass: requirePass, aclFile: text, aclFilePath: aclFilePath)
    }

    /// The user a name and password authenticate, or nil (unknown user, wrong password, or user off).
    ///
    /// Every password hash the user has is compared in constant time.
    public func authenticate(user name: String, password: [UInt8]) -> ACLUser? {
        guard let user = users[name], user.enabled else { return nil }
        if user.noPassword { return user }
        let hash = Array(ACLUser.hash(password).utf8)
        var matched = false
        for candidate in user.passwordHashes {
            let c = Array(candidate.utf8)
            guard c.count == hash.count else { continue }
            var diff: UInt8 = 0
            for i in 0..<c.count { diff |= c[i] ^ hash[i] }
            if diff == 0 { matched = true }
        }
        return matched ? user : nil
    }

    /// `ACL LIST`: one line per user, sorted by name, with password hashes (never passwords).
    public var list: [String] { users.keys.sorted().map { users[$0]!.description } }
}

/// A bad `--requirepass`/`--aclfile` combination or ACL file line. The message names the line and the rule,
/// never a password.
public struct AccessControlError: Error, CustomStringConvertible, Sendable {
    /// A complete sentence.
    public var message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Why a command is refused.
public enum AccessDenial: Sendable, Equatable {
    /// The user may not run the command (the name is the one Redis reports, e.g. `set` or `acl|list`).
    case command(String)
    /// The user may not touch one of the command's keys.
    case key

    /// Redis's error line for this denial, without the leading `-` and the CRLF.
    public var redisMessage: String {
        switch self {
        case .command(let name): "NOPERM this user has no permissions to run the '\(name)' command"
        case .key: "NOPERM this user has no permissions to access one of the keys used as arguments"
        }
    }
}

/// One user: on or off, password hashes, command rules, key patterns.
public struct ACLUser: Sendable, Equatable, CustomStringConvertible {
    /// One `+…`/`-…` rule, applied in order: the last rule that matches a command decides.
    public struct CommandRule: Sendable, Equatable {
        /// True for `+`, false for `-`.
        public var allow: Bool
        /// A category (`@read`) or a command (`get`, `config|get`), lower-case.
        public var target: String
    }

    /// A key pattern with the access it grants (`~p`: both, `%R~p`: read, `%W~p`: write).
    public struct KeyPattern: Sendable, Equatable {
        public var pattern: [UInt8]
        public var read: Bool
        public var write: Bool
    }

    /// The user's name.
    public var name: String
    /// `on`/`off`.
    public var enabled = false
    /// `nopass`: any password authenticates.
    public var noPassword = false
    /// SHA-256 of each accepted password, lower-case hex.
    public var passwordHashes: [String] = []
    /// Command rules in order.
    public var commandRules: [CommandRule] = []
    /// Key patterns.
    public var keyPatterns: [KeyPattern] = []
    /// Channel patterns (kept and listed; this front-end has no pub/sub).
    public var channelPatterns: [String] = []

    /// Creates a user with Redis's defaults for a new user: off, no passwords, no commands, no keys.
    public init(name: String) { self.name = name }

    /// A user that may do everything without a password (`on nopass ~* &* +@all`).
    public static func unrestricted(name: String) -> ACLUser {
        var u = ACLUser(name: name)
        u.enabled = true
        u.noPassword = true
        u.commandRules = [CommandRule(allow: true, target: "@all")]
        u.keyPatterns = [KeyPattern(pattern: Array("*".utf8), read: true, write: true)]
        u.channelPatterns = ["*"]
        return u
    }

    /// True when every command on every key is allowed: a front-end can skip the per-command check.
    public var allowsEverything: Bool {
        guard keyPatterns.contains(where: { $0.pattern == [UInt8(ascii: "*")] && $0.read && $0.write }) else { return false }
        guard let lastAll = commandRules.lastIndex(where: { $0.target == "@all" }) else { return false }
        return commandRules[lastAll].allow && !commandRules[(lastAll + 1)...].contains { !$0.allow }
    }

    /// The SHA-256 of a password as lower-case hex (what `#…` rules and `ACL LIST` show).
    public static func hash(_ password: [UInt8]) -> String {
        SHA256.digest(password).map { String(format: "%02x", $0) }.joined()
    }

    /// Applies one rule of Redis's ACL syntax.
    mutating func apply(rule: String) throws {
        let lower = rule.lowercased()
        switch lower {
        case "on": enabled = true
        case "off": enabled = false
        case "nopass":
            noPassword = true
            passwordHashes = []
        case "resetpass":
            noPassword = false
            passwordHashes = []
        case "allkeys": keyPatterns = [KeyPattern(pattern: Array("*".utf8), read: true, write: true)]
        case "resetkeys": keyPatterns = []
        case "allchannels": channelPatterns = ["*"]
        case "resetchannels": channelPatterns = []
        case "allcommands": commandRules.append(CommandRule(allow: true, target: "@all"))
        case "nocommands": commandRules.append(CommandRule(allow: false, target: "@all"))
        case "reset": self = ACLUser(name: name)
        default:
            guard let first = rule.first else { return }
            let rest = String(rule.dropFirst())
            switch first {
            case ">":
                let hash = Self.hash(Array(rest.utf8))
                if !passwordHashes.contains(hash) { passwordHashes.append(hash) }
                noPassword = false
            case "<":
                let hash = Self.hash(Array(rest.utf8))
                passwordHashes.removeAll { $0 == hash }
            case "#":
                let hex = rest.lowercased()
                guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit }) else {
                    throw AccessControlError("a '#' rule must be followed by 64 hex digits (a SHA-256 hash)")
                }
                if !passwordHashes.contains(hex) { passwordHashes.append(hex) }
                noPassword = false
            case "!":
                let hex = rest.lowercased()
                passwordHashes.removeAll { $0 == hex }
            case "~":
                keyPatterns.append(KeyPattern(pattern: Array(rest.utf8), read: true, write: true))
            case "%":
                guard let tilde = rest.firstIndex(of: "~") else {
                    throw AccessControlError("a '%' rule must look like %R~pattern, %W~pattern or %RW~pattern")
                }
                let flags = rest[..<tilde].uppercased()
                guard !flags.isEmpty, flags.allSatisfy({ $0 == "R" || $0 == "W" }) else {
                    throw AccessControlError("a '%' rule must look like %R~pattern, %W~pattern or %RW~pattern")
                }
                keyPatterns.append(KeyPattern(
                    pattern: Array(rest[rest.index(after: tilde)...].utf8), read: flags.contains("R"),
                    write: flags.contains("W")))
            case "&":
                channelPatterns.append(rest)
            case "+", "-":
                let target = rest.lowercased()
                guard !target.isEmpty else { throw AccessControlError("'\(rule)' names no command or category") }
                if target.hasPrefix("@") {
                    guard RedisCommandTable.categories.contains(String(target.dropFirst())) else {
                        throw AccessControlError("unknown command category '\(target)'")
                    }
                }
                commandRules.append(CommandRule(allow: first == "+", target: target))
            default:
                throw AccessControlError(
                    "unknown rule '\(rule.prefix(40))' (expected on, off, >password, #hash, nopass, ~pattern, &pattern, +command, -command, +@category, -@category)")
            }
        }
    }

    /// Whether the user may run `arguments` (a command and its arguments, as sent); nil when it may.
    public func check(_ arguments: [[UInt8]]) -> AccessDenial? {
        guard let first = arguments.first else { return nil }
        let command = String(decoding: first, as: UTF8.self).lowercased()
        let sub = arguments.count > 1 && RedisCommandTable.hasSubcommands.contains(command)
            ? String(decoding: arguments[1], as: UTF8.self).lowercased() : nil
        let spec = sub.flatMap { RedisCommandTable.commands["\(command)|\($0)"] } ?? RedisCommandTable.commands[command]
        if !mayRun(command: command, subcommand: sub, categories: spec?.categories ?? []) {
            return .command(sub.map { "\(command)|\($0)" } ?? command)
        }
        let keys = Self.keys(of: arguments, spec: spec)
        if keys.isEmpty { return nil }
        let needsWrite = spec?.categories.contains("write") ?? true
        let needsRead = spec?.categories.contains("read") ?? true
        for key in keys {
            let allowed = keyPatterns.contains { p in
                (!needsRead || p.read) && (!needsWrite || p.write) && GlobPattern.matches(p.pattern, key)
            }
            if !allowed { return .key }
        }
        return nil
    }

    /// Whether this user may make an HTTP request: `GET`, `HEAD` and `OPTIONS` are in the `@read` category and
    /// every other method in `@write` (so `+@all -@write` is a read-only user); a rule may also name the method
    /// (`+get`, `-delete`). The request path is the key that `~pattern` (`%R~`, `%W~`) must match.
    public func checkHTTP(method: String, path: [UInt8]) -> AccessDenial? {
        if allowsEverything { return nil }
        let reads = method == "GET" || method == "HEAD" || method == "OPTIONS"
        guard mayRun(command: method.lowercased(), subcommand: nil, categories: [reads ? "read" : "write"]) else {
            return .command(method)
        }
        let allowed = keyPatterns.contains { p in (reads ? p.read : p.write) && GlobPattern.matches(p.pattern, path) }
        return allowed ? nil : .key
    }

    /// Applies the command rules in order: the last one that matches decides; none matching denies.
    func mayRun(command: String, subcommand: String?, categories: Set<String>) -> Bool {
        var allowed = false
        for rule in commandRules {
            let matches: Bool
            if rule.target == "@all" {
                matches = true
            } else if rule.target.hasPrefix("@") {
                matches = categories.contains(String(rule.target.dropFirst()))
            } else if let bar = rule.target.firstIndex(of: "|") {
                matches = subcommand != nil && rule.target[..<bar] == command
                    && rule.target[rule.target.index(after: bar)...] == subcommand!
            } else {
                matches = rule.target == command
            }
            if matches { allowed = rule.allow }
        }
        return allowed
    }

    /// The key arguments of a command, from the table; a command the table does not know is taken to name a
    /// key in its first argument (so a key-restricted user cannot reach keys through it).
    static func keys(of arguments: [[UInt8]], spec: RedisCommandTable.Spec?) -> [[UInt8]] {
        guard let spec else { return arguments.count > 1 ? [arguments[1]] : [] }
        guard spec.firstKey > 0, arguments.count > spec.firstKey else { return [] }
        if spec.firstKey == -2 { return [] }
        var first = spec.firstKey
        var last: Int
        if spec.lastKey == -100 {
            // The key count is the argument before the keys (LMPOP numkeys key…).
            guard let n = Int(String(decoding: arguments[first - 1], as: UTF8.self)), n >= 0 else { return [] }
            last = min(arguments.count - 1, first + n - 1)
        } else {
            last = spec.lastKey < 0 ? arguments.count + spec.lastKey : spec.lastKey
        }
        last = min(last, arguments.count - 1)
        var keys: [[UInt8]] = []
        while first <= last {
            keys.append(arguments[first])
            first += spec.step
        }
        return keys
    }

    /// The user as `ACL LIST` shows it: `user NAME on|off [nopass] #hash… ~pattern… &pattern… rules…`.
    public var description: String {
        var parts = ["user", name, enabled ? "on" : "off"]
        if noPassword { parts.append("nopass") }
        parts += passwordHashes.map { "#" + $0 }
        if keyPatterns.isEmpty { parts.append("resetkeys") }
        for p in keyPatterns {
            let text = String(decoding: p.pattern, as: UTF8.self)
            parts.append(p.read && p.write ? "~" + text : (p.read ? "%R~" : "%W~") + text)
        }
        parts += channelPatterns.isEmpty ? ["resetchannels"] : channelPatterns.map { "&" + $0 }
        let rules = commandRules.map { ($0.allow ? "+" : "-") + $0.target }
        parts += rules.isEmpty ? ["-@all"] : rules
        return parts.joined(separator: " ")
    }
}

/// Redis's glob matching (`*`, `?`, `[…]`, `\`), as `KEYS` and ACL key patterns use it.
enum GlobPattern {
    static func matches(_ pattern: [UInt8], _ string: [UInt8]) -> Bool {
        matches(pattern[...], string[...])
    }

    private static func matches(_ pattern: ArraySlice<UInt8>, _ string: ArraySlice<UInt8>) -> Bool {
        var p = pattern.startIndex
        var s = string.startIndex
        while p < pattern.endIndex {
            switch pattern[p] {
            case UInt8(ascii: "*"):
                while p + 1 < pattern.endIndex && pattern[p + 1] == UInt8(ascii: "*") { p += 1 }
                if p + 1 == pattern.endIndex { return true }
                var i = s
                while i <= string.endIndex {
                    if matches(pattern[(p + 1)...], string[i...]) { return true }
                    i += 1
                }
                return false
            case UInt8(ascii: "?"):
                guard s < string.endIndex else { return false }
                s += 1
            case UInt8(ascii: "["):
                guard s < string.endIndex else { return false }
                var i = p + 1
                let negate = i < pattern.endIndex && pattern[i] == UInt8(ascii: "^")
                if negate { i += 1 }
                var matched = false
                while i < pattern.endIndex && pattern[i] != UInt8(ascii: "]") {
                    if pattern[i] == UInt8(ascii: "\\") && i + 1 < pattern.endIndex {
                        i += 1
                        if pattern[i] == string[s] { matched = true }
                    } else if i + 2 < pattern.endIndex && pattern[i + 1] == UInt8(ascii: "-") && pattern[i + 2] != UInt8(ascii: "]") {
                        let lo = min(pattern[i], pattern[i + 2]), hi = max(pattern[i], pattern[i + 2])
                        if string[s] >= lo && string[s] <= hi { matched = true }
                        i += 2
                    } else if pattern[i] == string[s] {
                        matched = true
                    }
                    i += 1
                }
                if negate { matched.toggle() }
                guard matched else { return false }
                p = i < pattern.endIndex ? i : pattern.endIndex - 1
                s += 1
            case UInt8(ascii: "\\") where p + 1 < pattern.endIndex:
                p += 1
                guard s < string.endIndex, pattern[p] == string[s] else { return false }
                s += 1
            default:
                guard s < string.endIndex, pattern[p] == string[s] else { return false }
                s += 1
            }
            p += 1
        }
        return s == string.endIndex
    }
}
