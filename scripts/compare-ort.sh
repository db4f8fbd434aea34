#!/usr/bin/env bash
# cohost's CPU forward vs ONNX Runtime (issue 22 item 3), both in-process, same weights and
# inputs, interleaved and repeated; prints per-batch latency, rows/s, ratios and spread.
#
#  1. venv $VENV with onnxruntime, onnx, numpy and safetensors from PyPI (reused when present);
#  2. release build of cohost's driver (models/examples/compare_ort.rs), which writes each
#     preset's safetensors (cohost's generator, seed 1; DLRM tables of $TABLE_ROWS rows) and
#     512 rows of inputs, and then runs forwards on request;
#  3. scripts/python/compare_ort.py builds the ONNX graph from those safetensors
#     (Gemm+Relu; for DLRM Gather+ReduceSum bags, MatMul interaction, lower-triangle Gather,
#     Concat, top MLP, Sigmoid), checks ORT's outputs equal cohost's (|a-b| <= 1e-5 max(|b|,1))
#     at every batch size, then times both: per thread (1 cohost lane vs ORT intra_op=1) and
#     per machine (cohost $LANES lanes vs ORT intra_op=$LANES, and vs $LANES ORT callers).
#
# Environment (defaults in brackets):
#   VENV        venv folder [target/ort-venv]
#   PRESETS     [mlp-small,dlrm-small]        BATCHES  [1,4,16,64,256,512]
#   ROUNDS      repeats of every measurement [5]   SECS  seconds per measurement [0.3]
#   LANES       cores for the per-machine rows [nproc]
#   TABLE_ROWS  rows per DLRM table [10000] (per-row work does not depend on it)
#   COHOST_CPU_ISA  cap cohost's kernels' ISA (avx512, avx2, portable) [detected]
#   OUT         work and results folder [target/compare-ort]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/target/ort-venv}"
OUT="${OUT:-$ROOT/target/compare-ort}"
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q onnxruntime onnx numpy safetensors
fi

(cd "$ROOT" && cargo build --release -q -p cohost-models --example compare_ort)
BIN="$ROOT/target/release/examples/compare_ort"

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores, $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2 | tr -d ' ') MHz (/proc/cpuinfo)"
echo "vector flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|fma|f16c|amx)' | sort | tr '\n' ' ')"
echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+dirty')"

"$VENV/bin/python" "$ROOT/scripts/python/compare_ort.py" \
  --bin "$BIN" --work "$OUT" \
  --presets "${PRESETS:-mlp-small,dlrm-small}" --batches "${BATCHES:-1,4,16,64,256,512}" \
  --rounds "${ROUNDS:-5}" --secs "${SECS:-0.3}" --lanes "${LANES:-$(nproc)}" \
  --table-rows "${TABLE_ROWS:-10000}" --json "$OUT/results.json"
