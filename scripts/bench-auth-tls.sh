#!/usr/bin/env bash
# bench-auth-tls.sh -- redis-benchmark with a password (-a) and over TLS (--tls), against redis-server
# (appendonly everysec, the same password and TLS settings) and against `understudy run` (fsync everysec,
# shadow on), back to back on loopback. Certificates are made with openssl in a temporary directory.
#
# Usage: scripts/bench-auth-tls.sh   (builds release binaries first; BIN=DIR uses binaries from DIR instead)
# Environment: REQUESTS [100000], CLIENTS [50], TESTS [set,get], PIPELINES ["1 16"]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
    swift build -c release --product understudy >/dev/null
    swift build -c release --product kv-v1 >/dev/null
    BIN=$(swift build -c release --show-bin-path)
fi
REQUESTS=${REQUESTS:-100000} CLIENTS=${CLIENTS:-50} TESTS=${TESTS:-set,get} PIPELINES=${PIPELINES:-1 16}
PASS=bench-$RANDOM$RANDOM
work=$(mktemp -d)
cleanup() { kill "${US_PID:-}" 2>/dev/null || true; [ -f "$work/redis.pid" ] && kill "$(cat "$work/redis.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
(cd "$work" && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.crt &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr &&
    printf 'subjectAltName=IP:127.0.0.1\n' > ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.crt) >/dev/null 2>&1
load() { # label port extra-args...
    local label=$1 port=$2; shift 2
    for p in $PIPELINES; do
        redis-benchmark -h 127.0.0.1 -p "$port" "$@" -t "$TESTS" -n "$REQUESTS" -c "$CLIENTS" -P "$p" -r 100000 -q 2>/dev/null |
            tr '\r' '\n' | awk -v p="$p" -v l="$label" '/requests per second/ { sub(":", "", $1); print l, $1, "P=" p, $2 }'
    done
}
TLS=(--tls --cacert "$work/ca.crt")
echo "# $(date -u +%FT%TZ) loadavg=$(cut -d' ' -f1-3 /proc/loadavg) cpus=$(nproc) n=$REQUESTS c=$CLIENTS"
RPORT=$(free_port); RTLS=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --tls-port "$RTLS" --tls-cert-file "$work/server.crt" \
    --tls-key-file "$work/server.key" --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no --requirepass "$PASS" \
    --save '' --appendonly yes --appendfsync everysec --dir "$work" --daemonize yes --pidfile "$work/redis.pid" >/dev/null
sleep 0.5
load "redis -a" "$RPORT" -a "$PASS"
load "redis --tls -a" "$RTLS" "${TLS[@]}" -a "$PASS"
kill "$(cat "$work/redis.pid")"; rm -f "$work/redis.pid"
"$BIN/understudy" run --service "$BIN/kv-v1" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --data "$work/us" --fsync everysec \
    --requirepass "$PASS" --tls-port 0 --tls-cert "$work/server.crt" --tls-key "$work/server.key" \
    --log-level warning > "$work/ready.txt" 2> "$work/us.err" &
US_PID=$!
for _ in $(seq 100); do grep -q ready "$work/ready.txt" 2>/dev/null && break; sleep 0.1; done
UPORT=$(sed -n 's/.*listen=[^:]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
UTLS=$(sed -n 's/.* tls=[^ ]*:\([0-9]*\).*/\1/p' "$work/ready.txt")
load "understudy -a" "$UPORT" -a "$PASS"
load "understudy --tls -a" "$UTLS" "${TLS[@]}" -a "$PASS"
