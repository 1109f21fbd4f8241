import Foundation
import NIOCore
import Testing
@testable import UnderstudyFrontend

@testable import UnderstudySupervisor

private func args(_ words: String...) -> [[UInt8]] { words.map { Array($0.utf8) } }

@Suite("Access control: ACL files, permissions, loopback addresses")
struct AccessControlTests {
    static let file = """
        # users of the test service
        user default off
        user admin on >s3cret ~* &* +@all
        user reader on >readpw ~* &* +@all -@write
        user cache on >cachepw ~cached:* -@all +get +set +acl|whoami
        user ro on >ropw %R~* %W~tmp:* +@all
        user off off >offpw ~* +@all
        user twice on >one >two allkeys allcommands
        """

    @Test("SHA-256 of known inputs (the hashes ACL LIST shows)")
    func sha256() {
        #expect(ACLUser.hash(Array("foobar".utf8)) == "c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2")
        #expect(ACLUser.hash([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(ACLUser.hash(Array(repeating: UInt8(ascii: "a"), count: 1000)) ==
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    @Test("an ACL file parses into users with hashes, patterns and rules")
    func parse() throws {
        let acl = try AccessControl(requirePass: nil, aclFile: Self.file)
        #expect(acl.authenticationRequired)
        #expect(acl.initialUser == nil)
        #expect(acl.users.keys.sorted() == ["admin", "cache", "default", "off", "reader", "ro", "twice"])
        let admin = try #require(acl.users["admin"])
        #expect(admin.enabled)
        #expect(admin.passwordHashes == [ACLUser.hash(Array("s3cret".utf8))])
        #expect(admin.allowsEverything)
        #expect(try #require(acl.users["reader"]).allowsEverything == false)
        #expect(try #require(acl.users["twice"]).allowsEverything)
        // ACL LIST shows hashes, never passwords.
        let listed = acl.list.joined(separator: "\n")
        for password in ["s3cret", "readpw", "cachepw", "ropw", "offpw"] { #expect(!listed.contains(password)) }
        #expect(listed.contains("user admin on #\(ACLUser.hash(Array("s3cret".utf8))) ~* &* +@all"))
        #expect(listed.contains("user cache on #\(ACLUser.hash(Array("cachepw".utf8))) ~cached:* resetchannels -@all +get +set +acl|whoami"))
        #expect(listed.contains("user default off resetkeys resetchannels -@all"))
    }

    @Test("authentication: right password, wrong password, unknown user, user off")
    func authenticate() throws {
        let acl = try AccessControl(requirePass: nil, aclFile: Self.file)
        #expect(acl.authenticate(user: "admin", password: Array("s3cret".utf8))?.name == "admin")
        #expect(acl.authenticate(user: "admin", password: Array("s3cre".utf8)) == nil)
        #expect(acl.authenticate(user: "admin", password: Array("s3cret ".utf8)) == nil)
        #expect(acl.authenticate(user: "nobody", password: Array("s3cret".utf8)) == nil)
        #expect(acl.authenticate(user: "off", password: Array("offpw".utf8)) == nil)
        #expect(acl.authenticate(user: "default", password: []) == nil)
        #expect(acl.authenticate(user: "twice", password: Array("one".utf8)) != nil)
        #expect(acl.authenticate(user: "twice", password: Array("two".utf8)) != nil)
    }

    @Test("--requirepass: the default user needs the password and may do everything")
    func requirePass() throws {
        let acl = try AccessControl(requirePass: "pw", aclFile: nil)
        #expect(acl.authenticationRequired)
        let d = try #require(acl.authenticate(user: "default", password: Array("pw".utf8)))
        #expect(d.allowsEverything)
        #expect(acl.authenticate(user: "default", password: Array("PW".utf8)) == nil)
        let open = AccessControl.open
        #expect(!open.authenticationRequired)
        #expect(open.initialUser?.allowsEverything == true)
        // No password for default here and one on the command line: both at once is refused.
        #expect(throws: AccessControlError.self) {
            _ = try AccessControl(requirePass: "pw", aclFile: "user default on >other ~* +@all")
        }
        // An ACL file without a default user asks for authentication.
        #expect(try AccessControl(requirePass: nil, aclFile: "user a on >x ~* +@all").authenticationRequired)
    }

    @Test("command and category rules: the last matching rule decides")
    func commandRules() throws {
        let acl = try AccessControl(requirePass: nil, aclFile: Self.file)
        let reader = try #require(acl.users["reader"])
        #expect(reader.check(args("GET", "k")) == nil)
        #expect(reader.check(args("mget", "a", "b")) == nil)
        #expect(reader.check(args("SET", "k", "v")) == .command("set"))
        #expect(reader.check(args("del", "k")) == .command("del"))
        #expect(reader.check(args("PING")) == nil)
        let cache = try #require(acl.users["cache"])
        #expect(cache.check(args("GET", "cached:1")) == nil)
        #expect(cache.check(args("set", "cached:1", "v")) == nil)
        #expect(cache.check(args("GET", "other")) == .key)
        #expect(cache.check(args("INCR", "cached:1")) == .command("incr"))
        #expect(cache.check(args("ACL", "WHOAMI")) == nil)
        #expect(cache.check(args("ACL", "LIST")) == .command("acl|list"))
        #expect(AccessDenial.command("set").redisMessage == "NOPERM this user has no permissions to run the 'set' command")
        #expect(AccessDenial.key.redisMessage ==
            "NOPERM this user has no permissions to access one of the keys used as arguments")
        // Unknown commands: only +@all allows them, and a key-restricted user is checked on the first argument.
        #expect(cache.check(args("FROBNICATE", "cached:x")) == .command("frobnicate"))
        let admin = try #require(acl.users["admin"])
        #expect(admin.check(args("FROBNICATE", "x")) == nil)
    }

    @Test("key patterns: every key of MSET, RENAME, LMPOP; %R and %W")
    func keyPatterns() throws {
        let acl = try AccessControl(requirePass: nil, aclFile: Self.file + "\nuser k on >k ~a:* +@all")
        let k = try #require(acl.users["k"])
        #expect(k.check(args("MSET", "a:1", "v", "a:2", "v")) == nil)
        #expect(k.check(args("MSET", "a:1", "v", "b:2", "v")) == .key)
        #expect(k.check(args("MSET", "a:1", "b:not-a-key", "a:2", "v")) == nil)
        #expect(k.check(args("RENAME", "a:1", "b:1")) == .key)
        #expect(k.check(args("LMPOP", "2", "a:1", "b:1", "LEFT")) == .key)
        #expect(k.check(args("LMPOP", "1", "a:1", "LEFT")) == nil)
        #expect(k.check(args("DEL", "a:1", "a:2", "c")) == .key)
        #expect(k.check(args("KEYS", "*")) == nil)
        let ro = try #require(acl.users["ro"])
        #expect(ro.check(args("GET", "anything")) == nil)
        #expect(ro.check(args("SET", "anything", "v")) == .key)
        #expect(ro.check(args("SET", "tmp:1", "v")) == nil)
        #expect(ro.check(args("GET", "tmp:1")) == nil)
    }

    @Test("Redis glob patterns", arguments: [
        ("*", "", true), ("a*", "abc", true), ("a*c", "abxc", true), ("a?c", "abc", true), ("a?c", "ac", false),
        ("[ab]x", "bx", true), ("[^ab]x", "bx", false), ("[a-c]x", "cx", true), ("a\\*", "a*", true), ("a\\*", "ab", false),
        ("cached:*", "cached:", true), ("cached:*", "cache", false), ("*:*:*", "a:b:c", true),
    ])
    func glob(pattern: String, string: String, expected: Bool) {
        #expect(GlobPattern.matches(Array(pattern.utf8), Array(string.utf8)) == expected)
    }

    @Test("bad ACL lines are refused with their line number and never echo a password")
    func badFiles() {
        for (text, expected) in [
            ("user", ":1: a line must be"),
            ("alice on >pw", ":1: a line must be"),
            ("# c\nuser a on >pw ~* +@nosuch", ":2: unknown command category '@nosuch'"),
            ("user a on #abc", ":1: a '#' rule must be followed by 64 hex digits"),
            ("user a on\nuser a off", ":2: user 'a' is defined twice"),
            ("user a on ^pw", ":1: unknown rule '^pw'"),
        ] {
            do {
                _ = try AccessControl(requirePass: nil, aclFile: text, aclFilePath: "users.acl")
                Issue.record("accepted: \(text)")
            } catch {
                #expect("\(error)".contains("users.acl" + expected), "\(error)")
                #expect(!"\(error)".contains(">pw"))
            }
        }
    }

    @Test("loopback is parsed, not matched as a prefix", arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("localhost", true), ("::ffff:127.0.0.1", true),
        ("127.evil.example", false), ("127.0.0.1.nip.io", false), ("0.0.0.0", false), ("::", false), ("10.0.0.1", false),
        ("128.0.0.1", false), ("1.2.3.127", false), ("::2", false), ("", false),
    ])
    func loopback(host: String, expected: Bool) {
        #expect(ListenAddress(host: host, port: 1).isLoopback == expected, "\(host)")
    }

    @Test("protected mode and the admin address are checked before anything starts")
    func validation() throws {
        var c = SupervisorConfiguration(servicePath: "/bin/true")
        try c.validate()
        c.listen = ListenAddress(host: "0.0.0.0", port: 6380)
        #expect(throws: SupervisorError.self) { try c.validate() }
        do { try c.validate() } catch { #expect("\(error)".contains("--requirepass"), "\(error)") }
        c.protectedMode = false
        try c.validate()
        c.protectedMode = true
        c.access = try AccessControl(requirePass: "pw", aclFile: nil)
        try c.validate()
        c.admin = ListenAddress(host: "127.evil.example", port: 6381)
        #expect(throws: SupervisorError.self) { try c.validate() }
        c.allowRemoteAdmin = true
        try c.validate()
        // TLS beyond loopback counts too.
        var t = SupervisorConfiguration(servicePath: "/bin/true")
        t.tls = ClientTLSConfiguration(listen: ListenAddress(host: "0.0.0.0", port: 0), certificatePath: "c", keyPath: "k")
        #expect(throws: SupervisorError.self) { try t.validate() }
    }
}

@Suite("RESP connection: AUTH, HELLO, ACL, permissions")
struct RESPAuthenticationTests {
    static func harness(_ access: AccessControl) throws -> ConnectionHarness {
        try ConnectionHarness(access: access)
    }

    @Test("without credentials: NOAUTH, and nothing is journaled")
    func noAuth() throws {
        let h = try Self.harness(AccessControl(requirePass: "pw", aclFile: nil))
        defer { try? h.close() }
        #expect(try h.send(resp("GET", "k")) == "-NOAUTH Authentication required.\r\n")
        #expect(try h.send(resp("MULTI")) == "-NOAUTH Authentication required.\r\n")
        #expect(try h.send(resp("CLIENT", "ID")) == "-NOAUTH Authentication required.\r\n")
        #expect(try h.send(resp("AUTH", "nope")) ==
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(try h.send(resp("AUTH", "default", "nope")) ==
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(try h.send(resp("HELLO", "2")).hasPrefix("-NOAUTH HELLO must be called with the client already authenticated"))
        #expect(try h.send(resp("AUTH")) == "-ERR wrong number of arguments for 'auth' command\r\n")
        #expect(h.pipeline.heldCount == 0)
        #expect(try h.send(resp("AUTH", "pw")) == "+OK\r\n")
        #expect(try h.send(resp("ACL", "WHOAMI")) == "$7\r\ndefault\r\n")
        // Authenticated: the command reaches the pipeline (held: it has no workers).
        #expect(try h.send(resp("GET", "k")) == "")
        #expect(h.pipeline.heldCount == 1)
    }

    @Test("HELLO 2 AUTH authenticates, then the service answers HELLO")
    func hello() throws {
        let h = try Self.harness(AccessControl(requirePass: nil, aclFile: AccessControlTests.file))
        defer { try? h.close() }
        #expect(try h.send(resp("HELLO", "2", "AUTH", "admin", "bad")) ==
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        #expect(try h.send(resp("HELLO", "3", "AUTH", "admin", "s3cret")) == "-NOPROTO unsupported protocol version\r\n")
        #expect(try h.send(resp("HELLO", "2", "AUTH", "admin", "s3cret", "SETNAME", "me")) == "")
        #expect(h.pipeline.heldCount == 1)
        #expect(try h.send(resp("ACL", "WHOAMI")) == "")  // queued behind HELLO's reply, in order
    }

    @Test("a read-only user writing gets NOPERM; key patterns; MULTI with a denied command aborts")
    func permissions() throws {
        let h = try Self.harness(AccessControl(requirePass: nil, aclFile: AccessControlTests.file))
        defer { try? h.close() }
        #expect(try h.send(resp("AUTH", "reader", "readpw")) == "+OK\r\n")
        #expect(try h.send(resp("SET", "k", "v")) == "-NOPERM this user has no permissions to run the 'set' command\r\n")
        #expect(try h.send(resp("ACL", "WHOAMI")) == "$6\r\nreader\r\n")
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("INCR", "k")) == "-NOPERM this user has no permissions to run the 'incr' command\r\n")
        #expect(try h.send(resp("EXEC")) == "-EXECABORT Transaction discarded because of previous errors.\r\n")
        #expect(try h.send(resp("AUTH", "cache", "cachepw")) == "+OK\r\n")
        #expect(try h.send(resp("GET", "elsewhere")) ==
            "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n")
        #expect(try h.send(resp("ACL", "LIST")) == "-NOPERM this user has no permissions to run the 'acl|list' command\r\n")
        #expect(h.pipeline.heldCount == 0)
        // A failed AUTH keeps the user.
        #expect(try h.send(resp("AUTH", "admin", "wrong")).hasPrefix("-WRONGPASS"))
        #expect(try h.send(resp("ACL", "WHOAMI")) == "$5\r\ncache\r\n")
        #expect(try h.send(resp("AUTH", "admin", "s3cret")) == "+OK\r\n")
        let list = try h.send(resp("ACL", "LIST"))
        #expect(list.hasPrefix("*7\r\n"), "\(list)")
        #expect(!list.contains("s3cret") && list.contains(ACLUser.hash(Array("s3cret".utf8))))
    }

    @Test("with no users configured AUTH is answered by the front-end and never journaled")
    func openAuth() throws {
        let h = try Self.harness(.open)
        defer { try? h.close() }
        #expect(try h.send(resp("AUTH", "secret")).hasPrefix("-ERR AUTH <password> called without any password configured"))
        #expect(try h.send(resp("AUTH", "default", "anything")) == "+OK\r\n")
        #expect(try h.send(resp("MULTI")) == "+OK\r\n")
        #expect(try h.send(resp("AUTH", "default", "secret")) == "-ERR Command not allowed inside a transaction\r\n")
        #expect(try h.send(resp("EXEC")) == "-EXECABORT Transaction discarded because of previous errors.\r\n")
        #expect(h.pipeline.heldCount == 0)
    }
}

@Suite("HTTP credentials")
struct HTTPCredentialTests {
    @Test("Basic and Bearer headers parse; malformed ones do not")
    func parse() {
        let basic = "Basic " + Data("alice:p:w".utf8).base64EncodedString()
        #expect(HTTPConnectionHandler.credentials(basic).map { [$0.user, String(decoding: $0.password, as: UTF8.self)] } == ["alice", "p:w"])
        #expect(HTTPConnectionHandler.credentials("Bearer  s3cret ").map { [$0.user, String(decoding: $0.password, as: UTF8.self)] } == ["default", "s3cret"])
        #expect(HTTPConnectionHandler.credentials("Basic !!!") == nil)
        #expect(HTTPConnectionHandler.credentials("Basic " + Data("nocolon".utf8).base64EncodedString()) == nil)
        #expect(HTTPConnectionHandler.credentials("Digest x") == nil)
        #expect(HTTPConnectionHandler.credentials("") == nil)
    }

    @Test("base64 decoding matches Foundation's for every length, and refuses bad padding")
    func base64() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64.decode(Data(bytes).base64EncodedString()) == bytes)
        }
        #expect(Base64.decode("QQ=") == nil)
        #expect(Base64.decode("Q=Q=") == nil)
        #expect(Base64.decode("QQ==") == [0x41])
    }

    @Test("HTTP permissions: reads are @read, other methods @write; the path is the key")
    func permissions() throws {
        let access = try AccessControl(requirePass: nil, aclFile: """
            user default off
            user reader on >pw ~/accounts* +@all -@write
            user writer on >pw ~* +@all
            user noDelete on >pw ~* +@all -delete
            """)
        let reader = try #require(access.authenticate(user: "reader", password: Array("pw".utf8)))
        #expect(reader.checkHTTP(method: "GET", path: Array("/accounts/a".utf8)) == nil)
        #expect(reader.checkHTTP(method: "POST", path: Array("/accounts".utf8)) == .command("POST"))
        #expect(reader.checkHTTP(method: "GET", path: Array("/health".utf8)) == .key)
        let writer = try #require(access.authenticate(user: "writer", password: Array("pw".utf8)))
        #expect(writer.checkHTTP(method: "POST", path: Array("/transfers".utf8)) == nil)
        let noDelete = try #require(access.authenticate(user: "noDelete", password: Array("pw".utf8)))
        #expect(noDelete.checkHTTP(method: "DELETE", path: Array("/x".utf8)) == .command("DELETE"))
        #expect(noDelete.checkHTTP(method: "PUT", path: Array("/x".utf8)) == nil)
    }
}
