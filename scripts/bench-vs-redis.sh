#!/usr/bin/env bash
# bench-vs-redis.sh -- redis-benchmark against redis-server (appendonly everysec) and against
# `understudy run` (fsync everysec, shadow on) back to back, on loopback, and the ratio.
#
# Usage: scripts/bench-vs-redis.sh            (builds release binaries first)
# Environment: REQUESTS [200000], CLIENTS [50], TESTS [set,get,incr,lpush,lpop], PIPELINES ["1 16"],
#              BIN [the release build: set it to a directory holding `understudy` and `kv-v1` built from another
#              commit to compare two builds back to back; nothing is built then]
# Uses ../shared/tools/redis-load.sh when present (the workplace's instrument), else redis-benchmark directly.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    swift build -c release --product understudy >/dev/null
    swift build -c release --product kv-v1 >/dev/null
    BIN=$(swift build -c release --show-bin-path)
fi
export REQUESTS=${REQUESTS:-200000} CLIENTS=${CLIENTS:-50} TESTS=${TESTS:-set,get,incr,lpush,lpop} PIPELINES=${PIPELINES:-1 16}
LOAD=../shared/tools/redis-load.sh
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" 2>/dev/null || true; redis-cli -p "${RPORT:-0}" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_load() { # host port -> lines "cmd P=p: rps ..."
    if [ -x "$LOAD" ]; then "$LOAD" "$1" "$2" | grep -v '^#'; else
        for p in $PIPELINES; do
            redis-benchmark -h "$1" -p "$2" -t "$TESTS" -n "$REQUESTS" -c "$CLIENTS" -P "$p" -r 100000 -q 2>/dev/null | tr '\r' '\n' |
                awk -v p="$p" '/requests per second/ { sub(":", "", $1); print $1 " P=" p ": " $2 " ops/s" }'
        done
    fi
}
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir "$work" --daemonize yes >/dev/null
sleep 0.5
echo "# $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) cpus=$(nproc) n=$REQUESTS c=$CLIENTS"
run_load 127.0.0.1 "$RPORT" > "$work/redis.txt"
redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
"$BIN/understudy" run --service "$BIN/kv-v1" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$work/us" --fsync everysec \
    --log-level warning > "$work/ready.txt" 2> "$work/us.err" &
US_PID=$!
for _ in $(seq 100); do grep -q ready "$work/ready.txt" 2>/dev/null && break; sleep 0.1; done
UPORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
run_load 127.0.0.1 "$UPORT" > "$work/us.txt"
printf "%-8s %-5s %14s %14s %8s\n" command P redis-server understudy ratio
paste -d' ' "$work/redis.txt" "$work/us.txt" | awk '{ split($2, a, "="); r=$3; u=$(NF/2+3); printf "%-8s %-5s %14.0f %14.0f %8.2f\n", $1, a[2], r, u, (r > 0 ? u / r : 0) }'
