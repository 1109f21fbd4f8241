// KVStore
