#!/usr/bin/env bash
# bench-kv.sh -- the key-value service against redis-server, back to back on loopback:
#  1. memory per key: KEYS small string keys (SET key:i value:i) loaded with `redis-cli --pipe` into redis-server
#     (--save '' --appendonly no) and into `understudy run` with kv-v1 and with kv-v2 (fsync everysec, shadow on).
#     redis-server: used_memory and VmRSS deltas / KEYS. understudy: the primary's and the shadow's VmRSS deltas / KEYS,
#     taken once the load is acknowledged and the shadow has caught up (no snapshot in progress), the supervisor's
#     own VmRSS delta, and the kv's INFO used_memory (its estimate). Each also as a ratio to redis-server's
#     used_memory per key and to its RSS per key.
#  2. redis-benchmark -t zadd,zpopmin,lpush,lpop -r 100000 at each pipeline depth against redis-server
#     (appendonly everysec, as in bench-vs-redis.sh) and against understudy + kv-v2 (fsync everysec, shadow on):
#     ops/s and the ratio. ZPOPMIN follows ZADD and drains the set, as redis-benchmark does.
#
# Usage: scripts/bench-kv.sh            (builds release binaries first)
# Environment: KEYS [1000000], REQUESTS [200000], CLIENTS [50], PIPELINES ["1 16"]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server redis-cli redis-benchmark python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench-kv: $tool not found (apt-get install -y redis-server redis-tools)" >&2; exit 2; }
done
swift build -c release --product understudy >/dev/null
swift build -c release --product kv-v1 >/dev/null
swift build -c release --product kv-v2 >/dev/null
BIN=$(swift build -c release --show-bin-path)
KEYS=${KEYS:-1000000} REQUESTS=${REQUESTS:-200000} CLIENTS=${CLIENTS:-50} PIPELINES=${PIPELINES:-1 16}
TESTS=zadd,zpopmin,lpush,lpop
work=$(mktemp -d)
US_PID='' RPORT='' WORKERS='' SERVICE=''
stop_redis() { [ -n "$RPORT" ] && redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true; RPORT=''; }
stop_understudy() { # SIGTERM (it drains and retires its workers); SIGKILL after 30 s
    [ -n "$US_PID" ] || return 0
    kill "$US_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$US_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$US_PID" 2>/dev/null || true
    wait "$US_PID" 2>/dev/null || true
    for w in $WORKERS; do  # a worker the supervisor left behind (checked to be still our service binary)
        [ "$(readlink "/proc/$w/exe" 2>/dev/null)" = "$SERVICE" ] && kill -9 "$w" 2>/dev/null || true
    done
    US_PID='' WORKERS=''
}
cleanup() { stop_understudy; stop_redis; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }

start_redis() { # extra redis-server arguments...
    RPORT=$(free_port)
    mkdir -p "$work/redis-$RPORT"
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --dir "$work/redis-$RPORT" --daemonize yes "$@" >/dev/null
    for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    RPID=$(redis-cli -p "$RPORT" info server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
}
start_understudy() { # service-binary data-directory
    SERVICE=$(readlink -f "$1") DATA=$2
    "$BIN/understudy" run --service "$1" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$DATA" --fsync everysec \
        --log-level warning > "$DATA.ready" 2> "$DATA.err" &
    US_PID=$!
    for _ in $(seq 300); do grep -q ready "$DATA.ready" 2>/dev/null && break; sleep 0.1; done
    grep -q ready "$DATA.ready" || { echo "bench-kv: understudy did not start:" >&2; cat "$DATA.err" >&2; exit 1; }
    UPORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$DATA.ready")
    ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$DATA.ready")
    wait_caught_up
    WORKERS="$(role_pid primary) $(role_pid shadow)"
}
status() { curl -sf --max-time 5 -H "Authorization: Bearer $(cat "$DATA/admin.token")" "http://$ADMIN/status"; }
status_py() { status | python3 -c "import json, sys; s = json.load(sys.stdin); $1"; }
role_pid() { status_py "print([i['pid'] for i in s['instances'] if i['role'] == '$1'][0])"; }
# A live shadow at the journal's head, and no snapshot being taken (it is taken from the shadow). 120 s at most.
wait_caught_up() {
    for _ in $(seq 1200); do
        status_py "sh = [i for i in s['instances'] if i['role'] == 'shadow']; sys.exit(0 if sh and sh[0]['phase'] == 'live' and sh[0]['appliedSequence'] >= s['lastSequence'] and not s['snapshotInProgress'] else 1)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-kv: the shadow did not catch up within 120 s" >&2
    status >&2 || true
    return 1
}
load() { # port -> "seconds" ; fails unless every reply came back without an error
    local t0 t1
    t0=$(date +%s.%N)
    timeout 600 redis-cli -p "$1" --pipe < "$work/load.resp" > "$work/pipe.out" 2>&1 || { cat "$work/pipe.out" >&2; return 1; }
    t1=$(date +%s.%N)
    grep -q "errors: 0, replies: $KEYS" "$work/pipe.out" || { echo "bench-kv: --pipe: $(tail -1 "$work/pipe.out")" >&2; return 1; }
    python3 -c "print('%.1f' % ($t1 - $t0))"
}
bench() { # port -> lines "TEST P rps"
    for p in $PIPELINES; do
        timeout 300 redis-benchmark -h 127.0.0.1 -p "$1" -t "$TESTS" -n "$REQUESTS" -c "$CLIENTS" -P "$p" -r 100000 -q 2>&1 |
            tr '\r' '\n' | awk -v p="$p" '/requests per second/ { sub(":", "", $1); print $1, p, $2; next } /ERR|rror/ { print "# " $0 > "/dev/stderr" }' || true
    done
}

python3 - "$KEYS" > "$work/load.resp" <<'PY'
import sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    k = b"key:%d" % i
    v = b"value:%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
PY
echo "# $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) cpus=$(nproc) keys=$KEYS n=$REQUESTS c=$CLIENTS redis=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"

# 1. Memory per key. Rows: "label bytes-per-key"; the first two are redis-server's references.
rows=$work/memory.txt
start_redis --appendonly no
m0=$(used_memory "$RPORT"); r0=$(rss_bytes "$RPID")
secs=$(load "$RPORT")
m1=$(used_memory "$RPORT"); r1=$(rss_bytes "$RPID")
echo "# redis-server: load ${secs} s, dbsize $(redis-cli -p "$RPORT" dbsize)"
echo "redis-server used_memory $(( (m1 - m0) / KEYS ))" > "$rows"
echo "redis-server RSS $(( (r1 - r0) / KEYS ))" >> "$rows"
stop_redis
for v in kv-v1 kv-v2; do
    start_understudy "$BIN/$v" "$work/us-$v"
    p=$(role_pid primary); s=$(role_pid shadow)
    p0=$(rss_bytes "$p"); s0=$(rss_bytes "$s"); u0=$(rss_bytes "$US_PID"); k0=$(used_memory "$UPORT")
    secs=$(load "$UPORT")
    t0=$(date +%s.%N); wait_caught_up
    catch=$(python3 -c "import time; print('%.1f' % (time.time() - $t0))")
    [ "$(role_pid primary)" = "$p" ] && [ "$(role_pid shadow)" = "$s" ] || echo "# $v: a worker was replaced during the load; RSS deltas are not comparable" >&2
    p1=$(rss_bytes "$p"); s1=$(rss_bytes "$s"); u1=$(rss_bytes "$US_PID"); k1=$(used_memory "$UPORT")
    echo "# understudy+$v: load ${secs} s, shadow caught up ${catch} s later, dbsize $(redis-cli -p "$UPORT" dbsize), $(status_py "print('discrepancies %d, worker restarts %d' % (s['discrepancies'], s['workerRestarts']))")"
    {
        echo "$v primary RSS $(( (p1 - p0) / KEYS ))"
        echo "$v shadow RSS $(( (s1 - s0) / KEYS ))"
        echo "$v supervisor RSS $(( (u1 - u0) / KEYS ))"
        echo "$v INFO used_memory $(( (k1 - k0) / KEYS ))"
    } >> "$rows"
    stop_understudy
done
echo
echo "memory per key (${KEYS} x SET key:i value:i)"
printf "%-28s %14s %18s %10s\n" "" bytes/key "x redis used_mem" "x redis RSS"
awk 'NR == FNR { if (FNR == 1) um = $NF; if (FNR == 2) rss = $NF; next }
     { label = $1; for (i = 2; i < NF; i++) label = label " " $i
       printf "%-28s %14d %18s %10s\n", label, $NF, (um > 0 ? sprintf("%.2f", $NF / um) : "-"), (rss > 0 ? sprintf("%.2f", $NF / rss) : "-") }' "$rows" "$rows"

# 2. Throughput.
start_redis --appendonly yes --appendfsync everysec
bench "$RPORT" > "$work/redis.txt"
rafter="ZCARD myzset $(redis-cli -p "$RPORT" zcard myzset), LLEN mylist $(redis-cli -p "$RPORT" llen mylist)"
stop_redis
start_understudy "$BIN/kv-v2" "$work/us-bench"
bench "$UPORT" > "$work/us.txt"
wait_caught_up || true
uafter="ZCARD myzset $(redis-cli -p "$UPORT" zcard myzset), LLEN mylist $(redis-cli -p "$UPORT" llen mylist)"
health=$(status_py "print('discrepancies %d, worker restarts %d, quarantined %d, given up %s' % (s['discrepancies'], s['workerRestarts'], len(s['quarantined']), s['givenUpRoles'] or 'none'))")
stop_understudy
echo
echo "redis-benchmark -t $TESTS -n $REQUESTS -c $CLIENTS -r 100000 (redis-server appendonly everysec; understudy+kv-v2 fsync everysec, shadow on)"
printf "%-8s %-4s %14s %14s %8s\n" command P redis-server understudy ratio
awk 'NR == FNR { r[$1 " " $2] = $3; if (!(($1 " " $2) in seen)) { seen[$1 " " $2] = 1; order[++n] = $1 " " $2 }; next }
     { u[$1 " " $2] = $3; if (!(($1 " " $2) in seen)) { seen[$1 " " $2] = 1; order[++n] = $1 " " $2 } }
     END { for (i = 1; i <= n; i++) { k = order[i]; split(k, a, " ")
             printf "%-8s %-4s %14s %14s %8s\n", a[1], a[2], (k in r ? sprintf("%.0f", r[k]) : "-"), (k in u ? sprintf("%.0f", u[k]) : "-"),
                    ((k in r) && (k in u) && r[k] > 0 ? sprintf("%.2f", u[k] / r[k]) : "-") } }' "$work/redis.txt" "$work/us.txt"
echo "# after the benchmark: redis-server $rafter; understudy+kv-v2 $uafter, $health"
