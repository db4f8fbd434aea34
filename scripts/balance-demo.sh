#!/usr/bin/env bash
# The balancing demo (issue 19, docs/FLEET.md): three cohost replicas on loopback serve
# the same model `m`; replica C also serves `side`, a heavier model kept busy by a side
# load, so each request of `m` costs C more (it waits for C's one lane). One unmodified grpcio channel over
# `ipv4:A,B,C` sends the same open-loop rate under `round_robin`, `weighted_round_robin`
# with per-call ORCA reports, and with out-of-band reports, interleaved, twice; it prints
# each replica's share of requests, P99 and errors, and the overall P99.
# (scripts/python/orca_balance.py; about 3 minutes.)
#
# All replicas: one lane (`--lanes 1`), one front-end thread, `--schedule fifo` (so C's
# scheduler does not hold the side load back to a fair share: C stands for a host whose
# lane is busy with other work).
# The side load is calibrated at start to keep C's lane ~75% busy (by C's own report); `m` is offered at 60
# requests/s over the three (DEMO_ARGS --rate, --side-busy): rates for a 2-core machine.
#
# Environment:
#   COHOST_BIN         a prebuilt cohost binary (default: cargo build, target/debug/cohost)
#   COHOST_ORCA_VENV   venv with grpcio and xds-protos (default: target/orca-venv)
#   DEMO_ARGS          extra arguments for orca_balance.py (e.g. "--seconds 30 --rounds 3")
#   DEMO_OUT           where the JSON results go (default: target/balance-demo.json)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COHOST_ORCA_VENV:-$ROOT/target/orca-venv}"
OUT="${DEMO_OUT:-$ROOT/target/balance-demo.json}"
PINS=("xds-protos==1.85.0" "grpcio==1.85.1")

if ! "$VENV/bin/python" -c "import grpc, xds.service.orca.v3.orca_pb2" 2>/dev/null; then
  echo "== creating $VENV with ${PINS[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "${PINS[@]}"
fi
if [ -n "${COHOST_BIN:-}" ]; then
  COHOST="$COHOST_BIN"
else
  echo "== cargo build -p cohost-server"
  (cd "$ROOT" && cargo build -q -p cohost-server)
  COHOST="$ROOT/target/debug/cohost"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohost-balance.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# One model, three repositories: `m` (mlp-tiny) as version 1 (A), 2 (B) and 3 (C), so a
# response names its replica; C's also has `side` (mlp-small, far heavier per request).
"$COHOST" gen --out "$WORK/gen" --preset mlp-tiny --seed 3 >/dev/null
"$COHOST" gen --out "$WORK/gen" --preset mlp-small --seed 4 >/dev/null
for i in 1 2 3; do
  mkdir -p "$WORK/r$i/m"
  cp "$WORK/gen/mlp-tiny/config.toml" "$WORK/r$i/m/"
  cp -r "$WORK/gen/mlp-tiny/1" "$WORK/r$i/m/$i"
done
cp -r "$WORK/gen/mlp-small" "$WORK/r3/side"

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
GRPC=()
for i in 1 2 3; do
  http="$(free_port)"
  grpc="$(free_port)"
  "$COHOST" serve --model-repository "$WORK/r$i" --host 127.0.0.1 --http-port "$http" \
    --grpc-port "$grpc" --device cpu --lanes 1 --io-threads 1 --schedule fifo \
    >"$WORK/server$i.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    if "$VENV/bin/python" - "127.0.0.1:$http" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/v2/health/ready", timeout=1).read()
PY
    sleep 0.2
  done
  GRPC+=("127.0.0.1:$grpc")
done
echo "== replicas A, B, C (gRPC): ${GRPC[*]}"
targets="$(IFS=,; echo "${GRPC[*]}")"
# shellcheck disable=SC2086
"$VENV/bin/python" "$ROOT/scripts/python/orca_balance.py" --grpc "$targets" --out "$OUT" \
  ${DEMO_ARGS:-}
echo "== results: $OUT"
