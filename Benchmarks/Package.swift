// swift-tools-version: 6.1
// Benchmarks live in their own package so ordo-one/benchmark and its malloc interposer never enter
// the product build or CI's test build. Run: `cd Benchmarks && swift package benchmark`.
import PackageDescription

let package = Package(
    name: "understudy-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "understudy", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "UnderstudyKit", package: "understudy"),
                .product(name: "UnderstudyWire", package: "understudy"),
                .product(name: "UnderstudyJournal", package: "understudy"),
                .product(name: "UnderstudyPrediction", package: "understudy"),
                .product(name: "KVStore", package: "understudy"),
            ],
            path: "Benchmarks/CoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
