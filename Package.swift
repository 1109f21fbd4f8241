// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "understudy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "understudy", targets: ["understudy"]),
        .executable(name: "kv-v1", targets: ["kv-v1"]),
        .executable(name: "kv-v2", targets: ["kv-v2"]),
        .executable(name: "ledger-v1", targets: ["ledger-v1"]),
        .executable(name: "ledger-v2", targets: ["ledger-v2"]),
        .library(name: "UnderstudyKit", targets: ["UnderstudyKit"]),
        .library(name: "UnderstudyWire", targets: ["UnderstudyWire"]),
        .library(name: "UnderstudyJournal", targets: ["UnderstudyJournal"]),
        .library(name: "UnderstudyPrediction", targets: ["UnderstudyPrediction"]),
        .library(name: "KVStore", targets: ["KVStore"]),
        .library(name: "Ledger", targets: ["Ledger"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // The frames between supervisor and worker.
        .target(name: "UnderstudyWire"),
        // System calls Swift cannot make directly (prctl is variadic): the worker's parent-death signal.
        .target(name: "CUnderstudySystem"),
        // The SDK a service author links: service protocol, tracked state, worker runtime.
        .target(
            name: "UnderstudyKit",
            dependencies: [
                "UnderstudyWire",
                "CUnderstudySystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The durable journal: segments, fsync policies, snapshots, recovery.
        .target(
            name: "UnderstudyJournal",
            dependencies: ["UnderstudyWire", .product(name: "Logging", package: "swift-log")]
        ),
        // The journal in PostgreSQL (`--journal postgres://…`): group commits fenced by a lease epoch, chunked
        // snapshots, LISTEN/NOTIFY for standbys.
        .target(
            name: "UnderstudyJournalPostgres",
            dependencies: [
                "UnderstudyJournal",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The prediction engine: kernels, GRU/LSTM, baselines, online trainer.
        .target(name: "UnderstudyPrediction"),
        // The client front-ends (RESP, HTTP/1.1): protocol parsing, connections, AUTH and ACL users, the intake
        // throttle; they reach the request path only through `RequestIntake`.
        .target(
            name: "UnderstudyFrontend",
            dependencies: [
                "UnderstudyWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [
                // Confined to the core event loop like the request path (see UnderstudySupervisor): the connection
                // handlers' class properties are read and written for every request.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ]
        ),
        // The supervisor: sequencer, instances, shadowing, transfer, updates.
        .target(
            name: "UnderstudySupervisor",
            dependencies: [
                "UnderstudyWire",
                "UnderstudyFrontend",
                "CUnderstudySystem",
                "UnderstudyJournal",
                "UnderstudyJournalPostgres",
                "UnderstudyPrediction",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: [
                // The request path is confined to one event loop; dynamic exclusivity checks on its
                // class properties cost ~6 % of the loop in profiles.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ]
        ),
        // The admin API (Hummingbird) the supervisor serves, its dashboard page, and the command line's client for it.
        .target(
            name: "UnderstudyAdmin",
            dependencies: [
                "UnderstudySupervisor",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // `understudy demo`: a supervisor in a temporary directory under load from its own clients, a live deploy of
        // version 2, and a report; its RESP and HTTP clients and load generators serve the tests too.
        .target(
            name: "UnderstudyDemo",
            dependencies: [
                "UnderstudySupervisor",
                "UnderstudyAdmin",
                "UnderstudyFrontend",
                "UnderstudyWire",
                "UnderstudyPrediction",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "understudy",
            dependencies: [
                "UnderstudySupervisor",
                "UnderstudyFrontend",
                "UnderstudyAdmin",
                "UnderstudyDemo",
                "UnderstudyJournalPostgres",
                "UnderstudyPrediction",
                "UnderstudyJournal",
                "UnderstudyKit",
                // The demo embeds the key-value and ledger examples, so `understudy demo` needs no other binary.
                "KVStore",
                "Ledger",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Example: a Redis-compatible key-value store, versions 1 and 2.
        .target(name: "KVStore", dependencies: ["UnderstudyKit"], path: "Examples/KVStore"),
        .executableTarget(name: "kv-v1", dependencies: ["KVStore", "UnderstudyKit"], path: "Examples/kv-v1"),
        .executableTarget(name: "kv-v2", dependencies: ["KVStore", "UnderstudyKit"], path: "Examples/kv-v2"),
        // Example: an HTTP ledger (accounts, transfers, idempotency keys), versions 1 and 2.
        .target(name: "Ledger", dependencies: ["UnderstudyKit"], path: "Examples/Ledger"),
        .executableTarget(name: "ledger-v1", dependencies: ["Ledger", "UnderstudyKit"], path: "Examples/ledger-v1"),
        .executableTarget(name: "ledger-v2", dependencies: ["Ledger", "UnderstudyKit"], path: "Examples/ledger-v2"),
        // The ledger's logic served directly by a plain Hummingbird application (the front-end's benchmark baseline).
        .executableTarget(
            name: "ledger-hummingbird",
            dependencies: ["Ledger", "UnderstudyKit", .product(name: "Hummingbird", package: "hummingbird")],
            path: "Examples/ledger-hummingbird"),
        // A small counter service with two schema versions, used by the SDK's tests.
        .executableTarget(name: "test-service", dependencies: ["UnderstudyKit"], path: "Examples/test-service"),

        // A child process for the journal's crash tests: appends with fsync always, reports acks.
        .executableTarget(
            name: "journal-crash-writer",
            dependencies: ["UnderstudyJournal"],
            path: "Tests/Support/journal-crash-writer"
        ),

        .testTarget(name: "UnderstudyWireTests", dependencies: ["UnderstudyWire"]),
        .testTarget(name: "UnderstudyKitTests", dependencies: ["UnderstudyKit", "UnderstudyWire", "CUnderstudySystem"]),
        .testTarget(name: "UnderstudyJournalTests", dependencies: ["UnderstudyJournal"]),
        // Throwaway PostgreSQL clusters (initdb, pg_basebackup) for the tests of the PostgreSQL journal.
        .target(name: "PostgresTestSupport", path: "Tests/Support/PostgresTestSupport"),
        .testTarget(
            name: "UnderstudyJournalPostgresTests",
            dependencies: [
                "UnderstudyJournalPostgres", "UnderstudyJournal", "PostgresTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "UnderstudyPredictionTests", dependencies: ["UnderstudyPrediction"]),
        // The front-ends alone, against a recording request intake: no supervisor, no sockets.
        .testTarget(
            name: "UnderstudyFrontendTests",
            dependencies: [
                "UnderstudyFrontend", "UnderstudyWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .testTarget(name: "UnderstudySupervisorTests", dependencies: ["UnderstudySupervisor", "UnderstudyFrontend", "UnderstudyWire"]),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "UnderstudyKit"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "UnderstudyKit", "UnderstudyWire"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "UnderstudySupervisor", "UnderstudyAdmin", "UnderstudyDemo", "UnderstudyFrontend", "UnderstudyWire",
                "UnderstudyJournal",
                "PostgresTestSupport",
            ]
        ),
    ]
)

for target in package.targets where target.name != "CUnderstudySystem" {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
