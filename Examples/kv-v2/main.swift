import KVStore
import UnderstudyKit

WorkerRuntime.main(KVServiceV2(broken: BrokenMode.fromEnvironment(arguments: CommandLine.arguments)))
