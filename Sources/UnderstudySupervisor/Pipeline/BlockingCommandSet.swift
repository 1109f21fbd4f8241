/// The commands whose reply a service may hold back (``Hello/blockingCommands``), as every greeting so far declared
/// them: a front-end asks it about each command, so a command that cannot block costs one table look-up.
struct BlockingCommandSet {
    /// Which first bytes (lower-cased) some blocking command starts with.
    private var firstBytes = [Bool](repeating: false, count: 256)
    /// The names, lower-cased.
    private var names: Set<[UInt8]> = []

    /// True when no command may block.
    var isEmpty: Bool { names.isEmpty }

    /// Adds declared command names (any case).
    mutating func learn(_ declared: [String]) {
        for name in declared {
            let bytes = Self.lowercased(Array(name.utf8))
            guard let first = bytes.first else { continue }
            names.insert(bytes)
            firstBytes[Int(first)] = true
        }
    }

    /// Whether the command `name` (any case) may hold its reply back.
    @inline(__always)
    func contains(_ name: [UInt8]) -> Bool {
        guard let first = name.first, firstBytes[Int(Self.lowercased(first))] else { return false }
        return names.contains(Self.lowercased(name))
    }

    @inline(__always)
    static func lowercased(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }

    static func lowercased(_ bytes: [UInt8]) -> [UInt8] { bytes.map(lowercased) }
}
