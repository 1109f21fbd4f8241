#!/usr/bin/env bash
# failover-gap.sh -- the longest gap a client sees when the primary worker is SIGKILLed under load,
# measured with the workplace's gap-probe (../shared/tools/gap-probe.py), plus lost acknowledged writes.
#
# Usage: scripts/failover-gap.sh [KILLS]   (default 3 kills, 4 s apart, under redis-benchmark load)
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-3}
swift build -c release --product understudy >/dev/null
swift build -c release --product kv-v1 >/dev/null
BIN=$(swift build -c release --show-bin-path)
PROBE=../shared/tools/gap-probe.py
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" "${BENCH_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN/understudy" run --service "$BIN/kv-v1" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$work/data" \
    --log-level warning > "$work/ready.txt" 2> "$work/err.log" &
US_PID=$!
for _ in $(seq 100); do grep -q ready "$work/ready.txt" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$work/ready.txt")
status() { "$BIN/understudy" status --json --admin "$ADMIN" --data "$work/data"; }
wait_shadow() { for _ in $(seq 200); do status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(i["role"]=="shadow" and i["phase"]=="live" for i in s["instances"]) else 1)' && return; sleep 0.1; done; }
wait_shadow
redis-benchmark -p "$PORT" -t set,get -n 5000000 -r 100000 -c 8 -q >/dev/null 2>&1 &
BENCH_PID=$!
python3 "$PROBE" --duration $((4 + KILLS * 4)) --top 10 --json "$work/probe.json" "127.0.0.1:$PORT" >/dev/null 2>&1 &
PROBE_PID=$!
sleep 4
for k in $(seq "$KILLS"); do
    pid=$(status | python3 -c 'import json,sys; print([i["pid"] for i in json.load(sys.stdin)["instances"] if i["role"]=="primary"][0])')
    echo "kill -9 primary worker pid $pid at $(date +%T.%N | cut -c1-12)"
    kill -9 "$pid"
    sleep 1
    wait_shadow
    sleep 2
done
wait "$PROBE_PID" || true
python3 - "$work/probe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("max_gap_ms=%s max_outage_ms=%s max_stall_ms=%s lost_acked=%s applied_unacked=%s failed_ops=%s ok_ops=%s" % (
    r.get("max_gap_ms"), r.get("max_outage_ms"), r.get("max_stall_ms"), r.get("lost_acked"), r.get("applied_unacked"),
    r.get("failed_ops"), r.get("ok_ops")))
print("top gaps (ms @ s):", ", ".join("%.1f@%.1f" % (g["gap_ms"], g["to_s"]) for g in r.get("top_gaps", [])))
PY
