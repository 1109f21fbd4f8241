#!/usr/bin/env bash
# poison-bench.sh -- what a poisoned request costs: the time from its arrival to its error reply, the time until
# the next request is served, and the longest gap an INCR client (../shared/tools/gap-probe.py) sees meanwhile,
# under redis-benchmark load, with kv-v2 in the deliberately broken `poison` mode.
#
# Usage: scripts/poison-bench.sh [POISONS] [DEADLINE_MS]   (default 6 poisons, alternating crash and hang; 5000 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
POISONS=${1:-6}
DEADLINE=${2:-5000}
swift build -c release --product understudy >/dev/null
swift build -c release --product kv-v2 >/dev/null
BIN=$(swift build -c release --show-bin-path)
PROBE=../shared/tools/gap-probe.py
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" "${BENCH_PID:-}" "${PROBE_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/understudy" run --service "$BIN/kv-v2" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$work/data" \
    --fsync always --request-deadline-ms "$DEADLINE" --env UNDERSTUDY_KV_BROKEN=poison --arg=--i-know-this-is-broken \
    --log-level warning > "$work/ready.txt" 2> "$work/err.log" &
US_PID=$!
for _ in $(seq 100); do grep -q ready "$work/ready.txt" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$work/ready.txt")
status() { "$BIN/understudy" status --json --admin "$ADMIN" --data "$work/data"; }
wait_shadow() { for _ in $(seq 300); do status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(i["role"]=="shadow" and i["phase"]=="live" for i in s["instances"]) else 1)' && return; sleep 0.1; done; }
wait_shadow
redis-benchmark -p "$PORT" -t set,get -n 50000000 -r 100000 -c 8 -q >/dev/null 2>&1 &
BENCH_PID=$!
duration=$((3 + POISONS * (DEADLINE / 1000 + 3)))
python3 "$PROBE" --duration "$duration" --top 10 --json "$work/probe.json" "127.0.0.1:$PORT" >/dev/null 2>&1 &
PROBE_PID=$!
sleep 2
for p in $(seq "$POISONS"); do
    kind=$([ $((p % 2)) -eq 1 ] && echo crash || echo hang)
    python3 - "$PORT" "$kind" "$p" <<'PY'
import socket, sys, time
port, kind, n = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def call(s, *args):
    s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(65536)
    return buf.decode().strip()
poison = socket.create_connection(("127.0.0.1", port), timeout=120)
other = socket.create_connection(("127.0.0.1", port), timeout=120)
t0 = time.monotonic()
reply = call(poison, "SET", "poison:%s:%s" % (kind, n), "x")
t1 = time.monotonic()
after = call(other, "INCR", "poison-bench:after")
t2 = time.monotonic()
print("poison %s %-5s error reply after %8.1f ms, next request served %6.1f ms later: %s" % (n, kind, (t1 - t0) * 1000, (t2 - t1) * 1000, reply[:90]))
PY
    wait_shadow
    sleep 1
done
wait "$PROBE_PID" || true
status | python3 -c 'import json,sys; s=json.load(sys.stdin); print("quarantined:", len(s["quarantined"]), "worker restarts:", s["workerRestarts"])'
python3 - "$work/probe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("gap-probe: max_gap_ms=%s max_outage_ms=%s max_stall_ms=%s lost_acked=%s applied_unacked=%s failed_ops=%s ok_ops=%s" % (
    r.get("max_gap_ms"), r.get("max_outage_ms"), r.get("max_stall_ms"), r.get("lost_acked"), r.get("applied_unacked"),
    r.get("failed_ops"), r.get("ok_ops")))
print("top gaps (ms @ s):", ", ".join("%.1f@%.1f" % (g["gap_ms"], g["to_s"]) for g in r.get("top_gaps", [])))
PY
