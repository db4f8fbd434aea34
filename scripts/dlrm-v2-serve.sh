#!/usr/bin/env bash
# Issue 21's end-to-end check of the MLPerf DLRM-v2 preset: `cohost gen --preset dlrm-v2
# --rows 100000` (26 tables of dim 128, DCNv2, ~512 MB), `cohost serve` with a memory budget
# smaller than the tables (so the biggest tables are served through the offload tiers), then
# Triton's own Python client over HTTP (JSON and binary) and gRPC, every output checked
# against a float64 numpy recomputation from the safetensors (scripts/python/check_dlrm_v2.py).
#
#   scripts/dlrm-v2-serve.sh                 # rows 100000, budget 256MiB
#   ROWS=20000 BUDGET=64MiB scripts/dlrm-v2-serve.sh
#
# Environment: ROWS [100000], BUDGET [256MiB], COHOST_BIN (a prebuilt cohost), plus those of
# scripts/python/triton_common.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/python/triton_common.sh"
ROWS="${ROWS:-100000}"
BUDGET="${BUDGET:-256MiB}"

triton_venv
cohost_bin

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohost-dlrm-v2.XXXXXX")"
trap 'stop_cohost; rm -rf "$WORK"' EXIT
echo "== cohost gen --preset dlrm-v2 --rows $ROWS"
start=$(date +%s)
"$COHOST" gen --out "$WORK/repo" --preset dlrm-v2 --rows "$ROWS" --seed 5 >/dev/null 2>"$WORK/gen.log"
echo "   generated in $(( $(date +%s) - start )) s: $(du -sh "$WORK/repo" | cut -f1)"
start_cohost "$WORK/repo" "$WORK/server.log" --memory-budget "$BUDGET"
echo "== tritonclient against cohost serving dlrm-v2 (HTTP $HTTP_ADDR, gRPC $GRPC_ADDR, budget $BUDGET)"
"$VENV/bin/python" "$ROOT/scripts/python/check_dlrm_v2.py" \
  --http "$HTTP_ADDR" --grpc "$GRPC_ADDR" --model-dir "$WORK/repo/dlrm-v2"
