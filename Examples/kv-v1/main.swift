import KVStore
import UnderstudyKit

WorkerRuntime.main(KVServiceV1())
