#!/usr/bin/env bash
# Takes a screenshot of the Understudy dashboard (the admin server's `GET /`) with headless
# Chromium and writes it to docs/dashboard.png (or OUT).
#
# Usage:
#   scripts/dashboard-screenshot.sh [ADMIN-URL] [OUT]
#     ADMIN-URL  the supervisor's admin address (default http://127.0.0.1:6381/);
#                `understudy run` prints it on its ready line (--admin 127.0.0.1:0 picks a port)
#     OUT        the PNG to write (default: docs/dashboard.png in this repository)
#
# Environment:
#   BUDGET_MS    Chromium's virtual-time budget before the shot (default 60000). Headless Chromium
#                runs the page's timers on virtual time, so this many ms of polling (one poll per
#                virtual second) take less real time: roughly 15–20 s on a small machine. The page
#                keys its charts on the supervisor's uptime, so rates stay right either way; a larger
#                budget gives longer curves.
#   WINDOW_SIZE  browser window as WIDTH,HEIGHT (default 1400,1100: the whole page at 1400 px wide)
#   CHROMIUM     the browser binary (default: chromium, chromium-browser or google-chrome)
#   UNDERSTUDY_TOKEN  the admin token (default: read from DATA/admin.token, DATA given as UNDERSTUDY_DATA,
#                default ./understudy-data); the page gets it in its URL fragment (#token=…)
#
# If no browser is found and we are root, the Debian package `chromium` is installed with apt-get.
# For live data, put load on the supervisor while this runs, e.g. `redis-benchmark -p PORT -n 20000 -q`.
set -euo pipefail

URL="${1:-http://127.0.0.1:6381/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${2:-$ROOT/docs/dashboard.png}"
BUDGET_MS="${BUDGET_MS:-60000}"
WINDOW_SIZE="${WINDOW_SIZE:-1400,1100}"

case "$URL" in http://* | https://*) ;; *) URL="http://$URL" ;; esac
case "$URL" in */) ;; *) URL="$URL/" ;; esac
TOKEN="${UNDERSTUDY_TOKEN:-$(cat "${UNDERSTUDY_DATA:-./understudy-data}/admin.token" 2> /dev/null || true)}"
[ -n "$TOKEN" ] || echo "warning: no admin token (set UNDERSTUDY_TOKEN or UNDERSTUDY_DATA): the page will show no data" >&2

find_browser() {
    if [ -n "${CHROMIUM:-}" ]; then echo "$CHROMIUM"; return; fi
    for b in chromium chromium-browser google-chrome; do
        if command -v "$b" > /dev/null 2>&1; then command -v "$b"; return; fi
    done
}
BROWSER="$(find_browser)"
if [ -z "$BROWSER" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
        echo "installing chromium with apt-get…" >&2
        apt-get install -y chromium > /dev/null || { apt-get update > /dev/null && apt-get install -y chromium > /dev/null; }
        BROWSER="$(command -v chromium)"
    else
        echo "no Chromium found: install the Debian package 'chromium' (apt-get install -y chromium) or set CHROMIUM" >&2
        exit 1
    fi
fi

if command -v curl > /dev/null 2>&1 && ! curl -fsS -o /dev/null --max-time 3 -H "Authorization: Bearer $TOKEN" "${URL}status"; then
    echo "warning: ${URL}status does not answer; the page will show the supervisor as unreachable" >&2
fi

mkdir -p "$(dirname "$OUT")"
PROFILE="$(mktemp -d)"
LOG="$(mktemp)"
trap 'rm -rf "$PROFILE" "$LOG"' EXIT

if ! "$BROWSER" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$PROFILE" --no-first-run --window-size="$WINDOW_SIZE" \
    --virtual-time-budget="$BUDGET_MS" --screenshot="$PROFILE/shot.png" "${URL}#token=${TOKEN}" > "$LOG" 2>&1 \
    || [ ! -s "$PROFILE/shot.png" ]; then
    cat "$LOG" >&2
    echo "screenshot failed" >&2
    exit 1
fi
mv -f "$PROFILE/shot.png" "$OUT"

SIZE=$(wc -c < "$OUT")
echo "wrote $OUT ($((SIZE / 1024)) KB) from $URL"
if [ "$SIZE" -gt 400000 ]; then
    echo "warning: the PNG is over 400 KB; a smaller WINDOW_SIZE keeps it small" >&2
fi
