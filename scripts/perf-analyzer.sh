#!/usr/bin/env bash
# Runs Triton's perf_analyzer (shipped in the tritonclient==2.51.0 wheel) against cohost
# models over HTTP and gRPC, a few seconds each, and prints its throughput/latency lines.
#
# From a clean clone: reuses or creates the tritonclient venv (scripts/python/triton_common.sh),
# installs perf_analyzer's shared libraries when missing (libb64.so.0d from the Debian
# package libb64-0d via apt-get; libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel,
# which perf_analyzer links even when no GPU is used), builds the server, generates a tiny
# repository and starts `cohost serve` on free loopback ports.
#
# Environment:
#   PA_MODELS       models to measure (default: "mlp-tiny dlrm-tiny")
#   PA_CONCURRENCY  perf_analyzer --concurrency-range (default: 4)
#   PA_BATCH        rows per request, perf_analyzer -b (default: 8)
#   PA_WINDOW_MS    measurement window, perf_analyzer -p (default: 2000)
#   PA_LANES        cohost --lanes (default: 2)
#   PA_STABILITY    perf_analyzer --stability-percentage (default: 50)
#   PA_TRIALS       perf_analyzer --max-trials (default: 6)
#   plus COHOST_TRITON_VENV, COHOST_BIN, PYTHON as in scripts/triton-client-test.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/python/triton_common.sh"

MODELS="${PA_MODELS:-mlp-tiny dlrm-tiny}"
CONCURRENCY="${PA_CONCURRENCY:-4}"
BATCH="${PA_BATCH:-8}"
WINDOW_MS="${PA_WINDOW_MS:-2000}"
# Loose stability: CI machines are shared; perf_analyzer fails rather than report otherwise.
STABILITY="${PA_STABILITY:-50}"
TRIALS="${PA_TRIALS:-6}"

triton_venv
PA="$VENV/bin/perf_analyzer"
[ -x "$PA" ] || { echo "perf_analyzer not found in $VENV/bin (tritonclient wheel)" >&2; exit 1; }

# libb64.so.0d: a Debian/Ubuntu system library.
if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
  echo "== installing libb64-0d (perf_analyzer needs libb64.so.0d)"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q libb64-0d >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q libb64-0d >/dev/null; } ||
    { echo "cannot install libb64-0d; install it (apt-get install libb64-0d) and rerun" >&2; exit 1; }
fi
# libcudart.so.12: from the CUDA runtime wheel, into the venv.
CUDART_DIR="$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))' 2>/dev/null || true)"
if [ -z "$CUDART_DIR" ] || [ ! -e "$CUDART_DIR/libcudart.so.12" ]; then
  echo "== installing nvidia-cuda-runtime-cu12 into the venv (perf_analyzer links libcudart.so.12)"
  "$VENV/bin/python" -m pip install -q nvidia-cuda-runtime-cu12
  CUDART_DIR="$("$VENV/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))')"
fi
export LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

cohost_bin
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohost-pa.XXXXXX")"
trap 'stop_cohost; rm -rf "$WORK"' EXIT
generate_tiny_repository "$WORK/repo"
COHOST_LANES="${PA_LANES:-2}" start_cohost "$WORK/repo" "$WORK/server.log"

echo "== perf_analyzer $("$PA" --version 2>&1 | tail -1) against cohost (HTTP $HTTP_ADDR, gRPC $GRPC_ADDR)"
echo "   concurrency $CONCURRENCY, batch $BATCH, ${WINDOW_MS} ms windows, $(nproc) CPUs"
status=0
for model in $MODELS; do
  # Random FP32 features; zero indices (random INT64 would fall outside the tables).
  data=random
  case "$model" in dlrm*) data=zero ;; esac
  for proto in http grpc; do
    url="$HTTP_ADDR"
    [ "$proto" = grpc ] && url="$GRPC_ADDR"
    echo
    echo "-- $model over $proto (--input-data $data)"
    if ! out="$("$PA" -m "$model" -u "$url" -i "$proto" -b "$BATCH" \
      --concurrency-range "$CONCURRENCY" -p "$WINDOW_MS" --max-trials "$TRIALS" \
      --stability-percentage "$STABILITY" --input-data "$data" 2>&1)"; then
      echo "$out"
      echo "perf_analyzer failed for $model over $proto" >&2
      status=1
      continue
    fi
    echo "$out" | sed -n '/^  Client:/,$p' | grep -vE '^\s*$'
  done
done
exit $status
