import Ledger
import UnderstudyKit

// ledger-v1 takes no broken modes; the switch still warns when half of it is set.
_ = LedgerBrokenMode.fromEnvironment(arguments: CommandLine.arguments, accepting: [])
WorkerRuntime.main(LedgerServiceV1())
