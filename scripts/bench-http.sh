#!/usr/bin/env bash
# bench-http.sh -- wrk against the ledger through `understudy run` (ledger-v1, shadow on, fsync everysec) and
# against the same ledger logic served directly by a plain Hummingbird application (ledger-hummingbird: no journal,
# no shadow), back to back in the same run, and the ratio.
#
# Usage: scripts/bench-http.sh [SECONDS] [CONNECTIONS]    (default 10 s, 32 connections; builds release binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
CONNECTIONS=${2:-32}
for p in understudy ledger-v1 ledger-hummingbird; do swift build -c release --product "$p" >/dev/null; done
BIN=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" "${HB_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body   = '{"from":"acct1","to":"acct2","amount":1}'
wrk.headers["Content-Type"] = "application/json"
LUA
UPORT=$(free_port)
HPORT=$(free_port)
"$BIN/understudy" run --service "$BIN/ledger-v1" --listen "127.0.0.1:$UPORT" --admin 127.0.0.1:0 --data "$work/data" \
    --log-level error > "$work/us.out" 2> "$work/us.err" &
US_PID=$!
"$BIN/ledger-hummingbird" "$HPORT" > /dev/null 2>&1 &
HB_PID=$!
for _ in $(seq 100); do grep -q ready "$work/us.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
for port in "$UPORT" "$HPORT"; do
    for i in 1 2 3; do curl -s -XPOST "127.0.0.1:$port/accounts" -d "{\"id\":\"acct$i\",\"balance\":1000000000000}" >/dev/null; done
done
echo "# $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) cpus=$(nproc) wrk -t1 -c$CONNECTIONS -d${SECONDS_PER_RUN}s"
rate() { wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$@" 2>&1 | awk '/Requests\/sec/ {print $2}'; }
printf "%-6s %14s %14s %7s\n" request understudy direct ratio
for kind in GET POST; do
    if [ "$kind" = GET ]; then args=(); path=/accounts/acct1; else args=(-s "$work/post.lua"); path=/transfers; fi
    u=$(rate "${args[@]}" "http://127.0.0.1:$UPORT$path")
    h=$(rate "${args[@]}" "http://127.0.0.1:$HPORT$path")
    python3 -c "print('%-6s %14.0f %14.0f %7.2f' % ('$kind', $u, $h, $u / $h if $h else 0))"
done
