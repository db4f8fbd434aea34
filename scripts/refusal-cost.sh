#!/usr/bin/env bash
# What a refused request costs the server: scripts/server-cost.sh on one dlrm-small whose
# queue holds 8 requests and whose static batcher holds them 100 ms, so ~80 req/s are
# answered and the rest of RATE get 429. Read its "us/offered request" column.
#
#   BIN_A=old BIN_B=new scripts/refusal-cost.sh
#   BIN_A=old BIN_B=new BATCH=32 RATE=1000 scripts/refusal-cost.sh   # 32-row requests
#
# Environment: as scripts/server-cost.sh (BIN_A, BIN_B, RATE, BATCH, TARGET, ROUNDS,
# WINDOW [5], OUT [target/refusal-cost]); REPO_*, MODELS_* are set here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/target/refusal-cost}"
BIN="${BIN_B:-${BIN_A:-$ROOT/target/release/cohost}}"
[ -x "$BIN" ] || { echo "no cohost binary at $BIN (cargo build --release -p cohost-server -p cohost-bench)" >&2; exit 2; }
REPO="$OUT/repo"
if [ ! -f "$REPO/.complete" ]; then
  rm -rf "$REPO"
  mkdir -p "$OUT"
  "$BIN" gen --out "$REPO" --preset dlrm-small --count 1 --rows 20000 >/dev/null
  python3 - "$REPO/dlrm-small/config.toml" <<'PY'
import re, sys
path = sys.argv[1]
s = open(path).read()
s = re.sub(r"(?m)^max_queue_len = \d+", "max_queue_len = 8", s)
s = re.sub(r"(?ms)^\[batching\].*?(?=^\[)", '[batching]\npolicy = "static"\nmax_queue_delay_us = 100000\n\n', s)
open(path, "w").write(s)
PY
  touch "$REPO/.complete"
fi
export OUT REPO_A="$REPO" REPO_B="$REPO" MODELS_A=dlrm-small MODELS_B=dlrm-small
export WINDOW="${WINDOW:-5}"
exec "$ROOT/scripts/server-cost.sh"
