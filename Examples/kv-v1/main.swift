import KVStore
import UnderstudyKit

WorkerRuntime.main(KVServiceV1(broken: BrokenMode.fromEnvironment(
    arguments: CommandLine.arguments, accepting: BrokenMode.version1Modes)))
