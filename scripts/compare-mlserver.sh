#!/usr/bin/env bash
# Peer comparison (issue 4 item 5): cohost vs Seldon MLServer 1.7.1 on the same MLP, both
# measured by the same harness (`cohost bench`, KServe v2 HTTP JSON) with the same P99
# target; prints both maximum throughputs and their ratio.
#
#  1. venv $VENV with mlserver==1.7.1, uvloop<0.22 (newer uvloop crashes its workers),
#     numpy and safetensors, pinned by scripts/mlserver/constraints.txt (reused when present);
#  2. release build of cohost; `cohost gen --preset $PRESET --seed 42` into $WORK/repo
#     (reused when present), its [batching] switched to the adaptive policy at $P99 ms;
#  3. MLServer serves the very same config.toml + model.safetensors through a custom runtime
#     (scripts/mlserver/cohost_mlp.py, numpy float32) with adaptive batching on;
#  4. both servers get identical inputs (1, 3, 8 rows): outputs must agree within 1e-4;
#  5. one after the other (never concurrently), `cohost bench --target http-json
#     --p99-target $P99` against each: cohost once, MLServer once per value of
#     $MLSERVER_WORKERS (parallel_workers); the best MLServer run is the one compared.
#
# Everything listens on 127.0.0.1 on free ports; servers are stopped on exit.
#
# Environment (defaults in brackets):
#   COHOST_MLSERVER_VENV   venv folder [target/mlserver-venv]
#   COHOST_BIN             prebuilt cohost binary [cargo build --release; target/release/cohost]
#   PRESET                 MLP preset [mlp-small: 256-1024-512-64, 0.8 M parameters]
#   P99                    P99 target in ms [20]
#   WARMUP, DURATION       seconds of warm-up and measured window per search step [1, 2]
#                          (the harness stretches a window up to 10x to see 500 requests)
#   SEARCH_START           first offered rate of the search, req/s [100]
#   COHOST_LANES           cohost serve --lanes [0: derived from the machine]
#   MLSERVER_WORKERS       MLServer parallel_workers values to try [1 2]
#   MLSERVER_MAX_BATCH_SIZE, MLSERVER_MAX_BATCH_TIME  adaptive batching [16, 0.001 s]
#   MLSERVER_BLAS_THREADS  OPENBLAS/OMP/MKL threads per MLServer process [1]
#   OUT                    results folder (bench JSON, server logs) [target/compare-mlserver]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MLS="$ROOT/scripts/mlserver"
VENV="${COHOST_MLSERVER_VENV:-$ROOT/target/mlserver-venv}"
PRESET="${PRESET:-mlp-small}"
P99="${P99:-20}"
WARMUP="${WARMUP:-1}"
DURATION="${DURATION:-2}"
SEARCH_START="${SEARCH_START:-100}"
COHOST_LANES="${COHOST_LANES:-0}"
MLSERVER_WORKERS="${MLSERVER_WORKERS:-1 2}"
MLSERVER_MAX_BATCH_SIZE="${MLSERVER_MAX_BATCH_SIZE:-16}"
MLSERVER_MAX_BATCH_TIME="${MLSERVER_MAX_BATCH_TIME:-0.001}"
MLSERVER_BLAS_THREADS="${MLSERVER_BLAS_THREADS:-1}"
OUT="${OUT:-$ROOT/target/compare-mlserver}"
MODEL="$PRESET"
PY="$VENV/bin/python"
T0=$SECONDS

COHOST_PID=""
MLSERVER_PID=""

# Stops a server started below (each leads its own process group): SIGTERM to the leader,
# SIGKILL after 15 s, then SIGKILL to whatever is left in its group (MLServer's workers).
stop_group() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 75); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
  kill -KILL -- "-$pid" 2>/dev/null || true
}
stop_cohost() { stop_group "$COHOST_PID"; COHOST_PID=""; }
stop_mlserver() { stop_group "$MLSERVER_PID"; MLSERVER_PID=""; }
trap 'stop_mlserver; stop_cohost' EXIT
trap 'exit 130' INT TERM

# --- 1. the MLServer venv --------------------------------------------------------------
venv_ok() {
  [ -x "$PY" ] && "$PY" - <<'EOF' 2>/dev/null
import importlib.metadata as m
assert m.version("mlserver") == "1.7.1"
v = tuple(int(x) for x in m.version("uvloop").split(".")[:2])
assert v < (0, 22), v
import numpy, safetensors.numpy  # noqa: F401
EOF
}
if ! venv_ok; then
  echo "== creating $VENV: mlserver==1.7.1, uvloop<0.22, numpy, safetensors"
  "${PYTHON:-python3}" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -r "$MLS/requirements.txt" -c "$MLS/constraints.txt"
  venv_ok || { echo "the venv at $VENV does not have mlserver 1.7.1 with uvloop<0.22" >&2; exit 1; }
fi

# --- 2. cohost binary and the model -------------------------------------------------------
if [ -n "${COHOST_BIN:-}" ]; then
  COHOST="$COHOST_BIN"
else
  echo "== cargo build --release -p cohost-server -p cohost-bench"
  (cd "$ROOT" && cargo build -q --release -p cohost-server -p cohost-bench)
  COHOST="$ROOT/target/release/cohost"
fi
mkdir -p "$OUT"
# A private copy: other builds may replace target/release/cohost while this runs.
cp "$COHOST" "$OUT/cohost.bin"
# `cohost bench` runs the cohost-bench binary beside it (else the one on PATH).
if [ -x "$(dirname "$COHOST")/cohost-bench" ]; then
  cp "$(dirname "$COHOST")/cohost-bench" "$OUT/cohost-bench"
fi
COHOST="$OUT/cohost.bin"
REPO="$OUT/repo"
CONFIG="$REPO/$MODEL/config.toml"
WEIGHTS="$REPO/$MODEL/1/model.safetensors"
if [ ! -f "$CONFIG" ] || [ ! -f "$WEIGHTS" ]; then
  echo "== cohost gen --preset $PRESET --seed 42 into $REPO"
  "$COHOST" gen --out "$REPO" --preset "$PRESET" --seed 42
fi
# cohost's own SLO-aware batching, told the same target the search uses.
"$PY" "$MLS/tools.py" adaptive "$CONFIG" "$P99"
IO_ARGS="$("$PY" "$MLS/tools.py" io "$CONFIG")"

port() { "$PY" "$MLS/tools.py" port; }

start_cohost() {
  local http grpc
  http="$(port)"
  grpc="$(port)"
  while [ "$grpc" = "$http" ]; do grpc="$(port)"; done
  COHOST_URL="http://127.0.0.1:$http"
  setsid "$COHOST" serve --model-repository "$REPO" --host 127.0.0.1 --http-port "$http" \
    --grpc-port "$grpc" --device cpu --lanes "$COHOST_LANES" >"$OUT/cohost.log" 2>&1 &
  COHOST_PID=$!
  "$PY" "$MLS/tools.py" ready "$COHOST_URL/v2/models/$MODEL/ready" 60 ||
    { cat "$OUT/cohost.log" >&2; exit 1; }
}

# $1: parallel_workers. A fresh MLServer folder per start: settings.json, and the model
# folder with its model-settings.json and the runtime module.
start_mlserver() {
  local workers="$1" dir="$OUT/mlserver-w$1" http grpc metrics
  rm -rf "$dir"
  mkdir -p "$dir/$MODEL" "$dir/.metrics"
  http="$(port)"
  grpc="$(port)"
  metrics="$(port)"
  MLSERVER_URL="http://127.0.0.1:$http"
  "$PY" "$MLS/tools.py" render "$MLS/settings.json.in" "$dir/settings.json" \
    HTTP_PORT="$http" GRPC_PORT="$grpc" METRICS_PORT="$metrics" PARALLEL_WORKERS="$workers" \
    METRICS_DIR="$dir/.metrics" ENVIRONMENTS_DIR="$dir/.envs"
  # shellcheck disable=SC2086 # IO_ARGS is KEY=VALUE words
  "$PY" "$MLS/tools.py" render "$MLS/model-settings.json.in" "$dir/$MODEL/model-settings.json" \
    MODEL="$MODEL" MAX_BATCH_SIZE="$MLSERVER_MAX_BATCH_SIZE" \
    MAX_BATCH_TIME="$MLSERVER_MAX_BATCH_TIME" $IO_ARGS WEIGHTS="$WEIGHTS" CONFIG="$CONFIG"
  cp "$MLS/cohost_mlp.py" "$dir/$MODEL/"
  (
    cd "$dir"
    export OPENBLAS_NUM_THREADS="$MLSERVER_BLAS_THREADS" OMP_NUM_THREADS="$MLSERVER_BLAS_THREADS" \
      MKL_NUM_THREADS="$MLSERVER_BLAS_THREADS"
    exec setsid "$VENV/bin/mlserver" start . >"$OUT/mlserver-w$workers.log" 2>&1
  ) &
  MLSERVER_PID=$!
  "$PY" "$MLS/tools.py" ready "$MLSERVER_URL/v2/models/$MODEL/ready" 120 ||
    { tail -40 "$OUT/mlserver-w$workers.log" >&2; exit 1; }
}

# $1: base URL, $2: JSON output, $3: label.
bench() {
  echo "== cohost bench --p99-target $P99 against $3 ($1); load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -f "$2"
  "$COHOST" bench --target http-json --url "$1" --model "$MODEL" --model-repository "$REPO" \
    --batch-size 1 --p99-target "$P99" --warmup "$WARMUP" --duration "$DURATION" \
    --search-start "$SEARCH_START" --timeout 2 --no-progress --json "$2" |
    grep -E '^(step|max rate|no rate)' || true
  [ -s "$2" ] || { echo "bench against $3 wrote no results" >&2; exit 1; }
}

# --- 3/4. both up once: same outputs for the same inputs -----------------------------------
first_workers="${MLSERVER_WORKERS%% *}"
start_cohost
start_mlserver "$first_workers"
echo "== same input to both servers"
"$PY" "$MLS/tools.py" check "$COHOST_URL" "$MLSERVER_URL" "$MODEL" "$CONFIG"
stop_mlserver

# --- 5. one server at a time --------------------------------------------------------------
bench "$COHOST_URL" "$OUT/cohost.json" "cohost serve (adaptive batching, P99 target $P99 ms)"
stop_cohost

best_json=""
best_tp=-1
best_workers=""
for w in $MLSERVER_WORKERS; do
  start_mlserver "$w"
  bench "$MLSERVER_URL" "$OUT/mlserver-w$w.json" \
    "MLServer 1.7.1 (parallel_workers=$w, max_batch_size=$MLSERVER_MAX_BATCH_SIZE, max_batch_time=$MLSERVER_MAX_BATCH_TIME s)"
  stop_mlserver
  tp="$("$PY" -c 'import json,sys; b=json.load(open(sys.argv[1]))["search"]["best"]; print("%.1f" % (b["overall"]["throughput"] if b else 0))' "$OUT/mlserver-w$w.json")"
  echo "MLServer parallel_workers=$w: max throughput $tp req/s"
  if "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$tp" "$best_tp"; then
    best_tp="$tp"
    best_json="$OUT/mlserver-w$w.json"
    best_workers="$w"
  fi
done

echo
echo "== $MODEL, batch-1 requests, KServe v2 HTTP JSON, P99 <= $P99 ms, < 0.1% errors"
echo "MLServer best of parallel_workers in [$MLSERVER_WORKERS]: $best_workers"
"$PY" "$MLS/tools.py" summary "$OUT/cohost.json" "$best_json"
echo "(whole run $((SECONDS - T0)) s, load average at the end $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; results and logs in $OUT)"
