/// What access control needs to know about Redis commands: ACL categories (as Redis 7.0 assigns them) and
/// where the keys are.
enum RedisCommandTable {
    /// One command (or `command|subcommand`).
    struct Spec: Sendable {
        /// Redis's ACL categories, without `@`.
        var categories: Set<String>
        /// The first key's argument index (0: no keys).
        var firstKey: Int
        /// The last key's index; negative counts from the end (-1: the last argument); -100: the argument
        /// before the first key holds the number of keys.
        var lastKey: Int
        /// The distance between keys (2 for MSET key value …).
        var step: Int
    }

    /// Every category a rule may name.
    static let categories: Set<String> = [
        "all", "keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap", "hyperloglog",
        "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous", "connection", "transaction",
        "scripting",
    ]

    /// Commands whose second argument is a subcommand with categories of its own.
    static let hasSubcommands: Set<String> = ["acl", "client", "config", "object", "command"]

    /// `name first last step categories…`, one command per line.
    private static let source = """
        get 1 1 1 read string fast
        set 1 1 1 write string slow
        setnx 1 1 1 write string fast
        setex 1 1 1 write string slow
        psetex 1 1 1 write string slow
        mget 1 -1 1 read string fast
        mset 1 -1 2 write string slow
        msetnx 1 -1 2 write string slow
        getset 1 1 1 write string fast
        getdel 1 1 1 write string fast
        getex 1 1 1 write string fast
        append 1 1 1 write string fast
        strlen 1 1 1 read string fast
        getrange 1 1 1 read string slow
        setrange 1 1 1 write string slow
        incr 1 1 1 write string fast
        decr 1 1 1 write string fast
        incrby 1 1 1 write string fast
        decrby 1 1 1 write string fast
        incrbyfloat 1 1 1 write string fast
        del 1 -1 1 keyspace write slow
        unlink 1 -1 1 keyspace write fast
        exists 1 -1 1 keyspace read fast
        type 1 1 1 keyspace read fast
        rename 1 2 1 keyspace write slow
        renamenx 1 2 1 keyspace write fast
        copy 1 2 1 keyspace write slow
        keys 0 0 0 keyspace read slow dangerous
        scan 0 0 0 keyspace read slow
        randomkey 0 0 0 keyspace read slow
        dbsize 0 0 0 keyspace read fast
        expire 1 1 1 keyspace write fast
        pexpire 1 1 1 keyspace write fast
        expireat 1 1 1 keyspace write fast
        pexpireat 1 1 1 keyspace write fast
        ttl 1 1 1 keyspace read fast
        pttl 1 1 1 keyspace read fast
        expiretime 1 1 1 keyspace read fast
        pexpiretime 1 1 1 keyspace read fast
        persist 1 1 1 keyspace write fast
        object 2 2 1 keyspace read slow
        flushdb 0 0 0 keyspace write slow dangerous
        flushall 0 0 0 keyspace write slow dangerous
        lpush 1 1 1 write list fast
        rpush 1 1 1 write list fast
        lpushx 1 1 1 write list fast
        rpushx 1 1 1 write list fast
        lpop 1 1 1 write list fast
        rpop 1 1 1 write list fast
        llen 1 1 1 read list fast
        lrange 1 1 1 read list slow
        lindex 1 1 1 read list slow
        lset 1 1 1 write list slow
        lrem 1 1 1 write list slow
        ltrim 1 1 1 write list slow
        linsert 1 1 1 write list slow
        lpos 1 1 1 read list slow
        lmove 1 2 1 write list slow
        rpoplpush 1 2 1 write list slow
        lmpop 2 -100 1 write list slow
        hset 1 1 1 write hash fast
        hsetnx 1 1 1 write hash fast
        hget 1 1 1 read hash fast
        hmset 1 1 1 write hash fast
        hmget 1 1 1 read hash fast
        hdel 1 1 1 write hash fast
        hexists 1 1 1 read hash fast
        hlen 1 1 1 read hash fast
        hkeys 1 1 1 read hash slow
        hvals 1 1 1 read hash slow
        hgetall 1 1 1 read hash slow
        hincrby 1 1 1 write hash fast
        hincrbyfloat 1 1 1 write hash fast
        hstrlen 1 1 1 read hash fast
        hrandfield 1 1 1 read hash slow
        sadd 1 1 1 write set fast
        srem 1 1 1 write set fast
        smembers 1 1 1 read set slow
        sismember 1 1 1 read set fast
        smismember 1 1 1 read set fast
        scard 1 1 1 read set fast
        spop 1 1 1 write set fast
        srandmember 1 1 1 read set slow
        sinter 1 -1 1 read set slow
        sunion 1 -1 1 read set slow
        sdiff 1 -1 1 read set slow
        sinterstore 1 -1 1 write set slow
        sunionstore 1 -1 1 write set slow
        sdiffstore 1 -1 1 write set slow
        smove 1 2 1 write set fast
        zadd 1 1 1 write sortedset fast
        zpopmin 1 1 1 write sortedset fast
        zrange 1 1 1 read sortedset slow
        xadd 1 1 1 write stream fast
        ping 0 0 0 fast connection
        echo 0 0 0 fast connection
        select 0 0 0 fast connection
        hello 0 0 0 fast connection
        auth 0 0 0 fast connection
        quit 0 0 0 fast connection
        client 0 0 0 slow connection
        client|id 0 0 0 slow connection
        client|setname 0 0 0 slow connection
        client|getname 0 0 0 slow connection
        client|setinfo 0 0 0 slow connection
        client|no-evict 0 0 0 admin slow dangerous connection
        client|no-touch 0 0 0 slow connection
        client|list 0 0 0 admin slow dangerous connection
        client|info 0 0 0 slow connection
        client|kill 0 0 0 admin slow dangerous connection
        command 0 0 0 slow connection
        command|count 0 0 0 slow connection
        command|docs 0 0 0 slow connection
        command|info 0 0 0 slow connection
        command|list 0 0 0 slow connection
        info 0 0 0 slow dangerous
        config 0 0 0 admin slow dangerous
        time 0 0 0 fast
        multi 0 0 0 fast transaction
        exec 0 0 0 slow transaction
        discard 0 0 0 fast transaction
        watch 1 -1 1 fast transaction
        unwatch 0 0 0 fast transaction
        acl 0 0 0 admin slow dangerous
        acl|whoami 0 0 0 slow
        acl|list 0 0 0 admin slow dangerous
        acl|users 0 0 0 admin slow dangerous
        acl|cat 0 0 0 slow
        """

    /// The table, by lower-case name.
    static let commands: [String: Spec] = {
        var table: [String: Spec] = [:]
        for line in source.split(separator: "\n") {
            let w = line.split(separator: " ")
            table[String(w[0])] = Spec(
                categories: Set(w.dropFirst(4).map(String.init)), firstKey: Int(w[1])!, lastKey: Int(w[2])!,
                step: max(1, Int(w[3])!))
        }
        return table
    }()
}
