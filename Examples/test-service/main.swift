#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import UnderstudyKit

// A small counter service for the SDK's tests. One binary, two schema versions:
// `--schema 1` (the default) keeps plain counters; `--schema 2` keeps counters with an update
// count, migrates schema 1 snapshots and can downgrade back. Everything else is the SDK's.

/// Writes one line to standard error.
func complain(_ message: String) {
    let line = Array((message + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
var schema = "1"
if let i = arguments.firstIndex(of: "--schema") {
    guard i + 1 < arguments.count else {
        complain("test-service: --schema needs a value (1 or 2)")
        exit(WorkerRuntime.usageExitStatus)
    }
    schema = arguments[i + 1]
}

switch schema {
case "1":
    WorkerRuntime.main(CounterServiceV1(), arguments: arguments)
case "2":
    WorkerRuntime.main(CounterServiceV2(), arguments: arguments)
default:
    complain("test-service: unknown schema '\(schema)'; use --schema 1 or --schema 2")
    exit(WorkerRuntime.usageExitStatus)
}
