#!/usr/bin/env bash
# pipe-load-bench.sh -- a standby that stays hot under a bulk load: N SETs through `redis-cli --pipe` (default
# 1 000 000), the live shadow's lag sampled every 200 ms (p50/p99/max), a SIGKILL of the primary in the middle of
# the load measured with gap-probe (longest client gap, acknowledged writes lost), and a planned swap asked for
# 1 s after the load ends (its pause). Finally every key is counted.
#
# Usage: scripts/pipe-load-bench.sh [KEYS] [MAX_STANDBY_LAG_MS]     (default 1000000 keys, 100 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-1000000}
LAG=${2:-100}
swift build -c release --product understudy >/dev/null
swift build -c release --product kv-v1 >/dev/null
BIN=$(swift build -c release --show-bin-path)
PROBE=../shared/tools/gap-probe.py
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" "${PIPE_PID:-}" "${PROBE_PID:-}" "${SAMPLER_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp -r "$work" "$KEEP"; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$KEYS" > "$work/load.resp" <<'PY'
import sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    k = b"pipe:%d" % i
    v = b"v%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
PY
"$BIN/understudy" run --service "$BIN/kv-v1" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$work/data" \
    --max-standby-lag-ms "$LAG" --log-level "${LOG_LEVEL:-warning}" > "$work/ready.txt" 2> "$work/err.log" &
US_PID=$!
for _ in $(seq 100); do grep -q ready "$work/ready.txt" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
ADMIN=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' "$work/ready.txt")
status() { "$BIN/understudy" status --json --admin "$ADMIN" --data "$work/data"; }
wait_shadow() { for _ in $(seq 600); do status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(i["role"]=="shadow" and i["phase"]=="live" for i in s["instances"]) else 1)' && return; sleep 0.1; done; }
wait_shadow
# Lag samples every 200 ms while the load runs (and a few seconds after), straight from the admin API.
python3 - "$ADMIN" "$work/data/admin.token" "$work/lag.txt" <<'PY' &
import json, sys, time, urllib.request
admin, token, out = sys.argv[1], open(sys.argv[2]).read().strip(), open(sys.argv[3], "a", buffering=1)
req = urllib.request.Request("http://%s/status" % admin, headers={"Authorization": "Bearer " + token})
while True:
    t = time.time()
    try:
        s = json.load(urllib.request.urlopen(req, timeout=2))
        phases = [i["phase"] for i in s["instances"] if i["role"] == "shadow"]
        phase = "live" if "live" in phases else (phases[0] if phases else "none")
        out.write("%.3f %d %d %s %s %s\n" % (t, s["standbyLagMillis"], s["lastSequence"],
            str(s["intakeThrottled"]).lower(), s.get("intakeThrottleLevel", "-"), phase))
    except Exception:
        pass
    time.sleep(max(0, 0.2 - (time.time() - t)))
PY
SAMPLER_PID=$!
python3 "$PROBE" --duration 600 --top 10 --json "$work/probe.json" --stop-file "$work/stop-probe" "127.0.0.1:$PORT" >/dev/null 2>&1 &
PROBE_PID=$!
start=$(date +%s.%N)
redis-cli -p "$PORT" --pipe < "$work/load.resp" > "$work/pipe.txt" 2>&1 &
PIPE_PID=$!
# Kill the primary when about half the keys are in.
for _ in $(seq 3000); do
    seq_now=$(status | python3 -c 'import json,sys; print(json.load(sys.stdin)["lastSequence"])' 2>/dev/null || echo 0)
    [ "$seq_now" -ge $((KEYS / 2)) ] && break
    sleep 0.1
done
pid=$(status | python3 -c 'import json,sys; print([i["pid"] for i in json.load(sys.stdin)["instances"] if i["role"]=="primary"][0])')
echo "SIGKILL of the primary (pid $pid) at sequence $seq_now, $(python3 -c "import time; print('%.1f' % (time.time() - $start))") s into the load"
kill -9 "$pid"
wait "$PIPE_PID" || true
end=$(date +%s.%N)
tail -2 "$work/pipe.txt"
echo "load: $KEYS SETs in $(python3 -c "print('%.1f' % ($end - $start))") s"
sleep 1
swap=$("$BIN/understudy" swap --json --admin "$ADMIN" --data "$work/data" || true)
echo "$swap" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("planned swap 1 s after the load: outcome %s, pause %.3f ms" % (r.get("outcome"), r.get("pauseMicros", 0) / 1000))' 2>/dev/null || echo "swap: $swap"
sleep 2
touch "$work/stop-probe"
wait "$PROBE_PID" || true
kill "$SAMPLER_PID" 2>/dev/null || true
python3 - "$work/lag.txt" "$start" "$end" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
start, end = float(sys.argv[2]), float(sys.argv[3])
during = [r for r in rows if start <= float(r[0]) <= end]
live = sorted(int(r[1]) for r in during if r[5] == "live")
if live:
    p = lambda q: live[min(len(live) - 1, int(q * len(live)))]
    print("standby lag during the load (%d samples of 200 ms with a live standby): p50 %d ms, p99 %d ms, max %d ms" % (
        len(live), p(0.5), p(0.99), live[-1]))
levels = {}
for r in during: levels[r[4]] = levels.get(r[4], 0) + 1
phases = {}
for r in during:
    if r[5] != "live": phases[r[5]] = phases.get(r[5], 0) + 1
print("samples without a live standby (after the failover): %d of %d (%s); intake levels: %s" % (
    sum(phases.values()), len(during), ", ".join("%s %d" % kv for kv in sorted(phases.items())),
    ", ".join("%s %d" % kv for kv in sorted(levels.items()))))
PY
python3 - "$work/probe.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("gap-probe: max_gap_ms=%s lost_acked=%s applied_unacked=%s failed_ops=%s ok_ops=%s" % (
    r.get("max_gap_ms"), r.get("lost_acked"), r.get("applied_unacked"), r.get("failed_ops"), r.get("ok_ops")))
print("top gaps (ms @ s):", ", ".join("%.1f@%.1f" % (g["gap_ms"], g["to_s"]) for g in r.get("top_gaps", [])))
PY
echo "keys present: $(redis-cli -p "$PORT" dbsize) (expected $KEYS plus the probe's key)"
