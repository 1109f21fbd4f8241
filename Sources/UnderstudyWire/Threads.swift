#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts an OS thread running `body` and returns its handle (for `pthread_join`, unless `detached`).
///
/// For the package's own threads — the journal's writer, a worker's snapshot encoder — which must not depend on
/// Foundation or a task executor.
package func startThread(detached: Bool = false, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let argument = Unmanaged.passRetained(Box(body)).toOpaque()
    let result = pthread_create(&thread, nil, { argument in
        Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
        return nil
    }, argument)
    precondition(result == 0, "pthread_create failed: \(result)")
    if detached { pthread_detach(thread) }
    return thread
}
