#!/usr/bin/env bash
# chaos.sh -- kill -9 rounds (primary, shadow, candidate, supervisor) under an INCR load; checks that no
# acknowledged write is lost or doubled, every round recovers and no worker outlives its supervisor.
#
# Usage: scripts/chaos.sh [ROUNDS] [chaos.py options: --seed S --connections C --keys-per-connection K
#                                   --keep --json FILE --bin-dir DIR --victims LIST]   (default 20 rounds)
# Binaries: $UNDERSTUDY_BIN_DIR, else .build/release if it has understudy, else .build/debug. Builds nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=20
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then ROUNDS=$1; shift; fi
if [[ -n "${UNDERSTUDY_BIN_DIR:-}" ]]; then
    BIN="$UNDERSTUDY_BIN_DIR"
elif [[ -x "$ROOT/.build/release/understudy" ]]; then
    BIN="$ROOT/.build/release"
else
    BIN="$ROOT/.build/debug"
fi
exec python3 "$ROOT/scripts/chaos.py" --rounds "$ROUNDS" --bin-dir "$BIN" "$@"
