import Ledger
import UnderstudyKit

WorkerRuntime.main(LedgerServiceV2(broken: LedgerBrokenMode.fromEnvironment(arguments: CommandLine.arguments)))
