#!/usr/bin/env bash
# What one request costs a server at a fixed offered load: two `cohost serve` set-ups (A and
# B: binaries, repositories, models or schedules) up side by side, the same open-loop
# Poisson rate sent to each in turn, ROUNDS times, so a slow stretch of a shared machine
# hits both. Per window it prints the answered rate, p50/p99, the refused count, the mean
# batch size (from /v2/models/stats), the server's CPU time and context switches per
# answered row, and its CPU time per offered request (`perf stat -p`, so Linux with perf
# installed). scripts/refusal-cost.sh runs it on a model that refuses nearly everything.
#
#   scripts/server-cost.sh                      # A = B = target/release/cohost, mlp-tiny
#   BIN_A=old BIN_B=new REPO_A=r REPO_B=r MODELS_A=dlrm-small MODELS_B=dlrm-small \
#     RATE=2000 scripts/server-cost.sh          # the same set-up on two binaries
#   REPO_A=one REPO_B=eight MODELS_A=dlrm-small MODELS_B="dlrm-small-0 ... dlrm-small-7" \
#     RATE=5000 scripts/server-cost.sh          # 1 model vs 8 at equal total load
#
# Environment (defaults in brackets):
#   BIN_A, BIN_B        cohost binaries [target/release/cohost]; the client is always BIN_B
#   REPO_A, REPO_B      model repositories [a generated mlp-tiny repository under OUT]
#   MODELS_A, MODELS_B  models sent to, space-separated NAME[:WEIGHT] [mlp-tiny]
#   SCHED_A, SCHED_B    --schedule of each server [edf-fair]
#   RATE                offered requests per second, all models together [2000]
#   BATCH               rows per request [1]
#   TARGET              http-json, http-binary or grpc [http-json]
#   ROUNDS              interleaved rounds [3]
#   WINDOW              measured seconds per window, after 1 s of warm-up [4]
#   OUT                 folder for the repository and logs [target/server-cost]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/target/server-cost}"
BIN_A="${BIN_A:-$ROOT/target/release/cohost}"
BIN_B="${BIN_B:-$BIN_A}"
RATE="${RATE:-2000}"
BATCH="${BATCH:-1}"
TARGET="${TARGET:-http-json}"
ROUNDS="${ROUNDS:-3}"
WINDOW="${WINDOW:-4}"
mkdir -p "$OUT"
for b in "$BIN_A" "$BIN_B"; do
  [ -x "$b" ] || { echo "no cohost binary at $b (cargo build --release -p cohost-server -p cohost-bench)" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }
if [ -z "${REPO_A:-}" ] || [ -z "${REPO_B:-}" ]; then
  if [ ! -f "$OUT/repo-tiny/.complete" ]; then
    rm -rf "$OUT/repo-tiny"
    "$BIN_B" gen --out "$OUT/repo-tiny" --preset mlp-tiny --count 1 >/dev/null
    touch "$OUT/repo-tiny/.complete"
  fi
fi
REPO_A="${REPO_A:-$OUT/repo-tiny}"
REPO_B="${REPO_B:-$OUT/repo-tiny}"
MODELS_A="${MODELS_A:-mlp-tiny}"
MODELS_B="${MODELS_B:-mlp-tiny}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

declare -A PORT PID PORT_HTTP
for side in A B; do
  bin_var="BIN_$side" repo_var="REPO_$side" sched_var="SCHED_$side"
  http=$(free_port)
  grpc=$(free_port)
  "${!bin_var}" serve --device cpu --model-repository "${!repo_var}" --http-port "$http" \
    --grpc-port "$grpc" --schedule "${!sched_var:-edf-fair}" >"$OUT/server-$side.log" 2>&1 &
  PID[$side]=$!
  PIDS+=("$!")
  PORT[$side]=$http
  [ "$TARGET" = grpc ] && PORT[$side]=$grpc
  for _ in $(seq 1 600); do
    curl -sf "127.0.0.1:$http/v2/health/ready" >/dev/null && break
    kill -0 "${PID[$side]}" 2>/dev/null || { echo "server $side exited; see $OUT/server-$side.log" >&2; exit 1; }
    sleep 0.2
  done
  PORT_HTTP[$side]=$http
done

echo "rate $RATE req/s of $BATCH row(s), $TARGET, $ROUNDS rounds; A: ${BIN_A} ${REPO_A} [$MODELS_A] ${SCHED_A:-edf-fair}; B: ${BIN_B} ${REPO_B} [$MODELS_B] ${SCHED_B:-edf-fair}"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    repo_var="REPO_$side" models_var="MODELS_$side"
    args=()
    for m in ${!models_var}; do args+=(--model "$m"); done
    curl -sf "127.0.0.1:${PORT_HTTP[$side]}/v2/models/stats" >"$OUT/stats-before.json"
    perf stat -e context-switches,task-clock -p "${PID[$side]}" -o "$OUT/perf.txt" \
      -- sleep "$((WINDOW + 1))" >/dev/null 2>&1 &
    perf_pid=$!
    "$BIN_B" bench --target "$TARGET" --url "http://127.0.0.1:${PORT[$side]}" \
      --model-repository "${!repo_var}" "${args[@]}" --batch-size "$BATCH" --rate "$RATE" \
      --warmup 1 --duration "$WINDOW" --no-progress --json "$OUT/bench.json" \
      >/dev/null 2>"$OUT/bench.err" || true
    wait "$perf_pid"
    curl -sf "127.0.0.1:${PORT_HTTP[$side]}/v2/models/stats" >"$OUT/stats-after.json"
    python3 - "$OUT" "$r" "$side" "$RATE" "$WINDOW" <<'EOF'
import json, re, sys
out, r, side = sys.argv[1:4]
offered = float(sys.argv[4]) * (float(sys.argv[5]) + 1)  # perf covers the warm-up second too
def stats(f):
    return {m["name"]: m for m in json.load(open(f"{out}/{f}"))["model_stats"]}
a, b = stats("stats-before.json"), stats("stats-after.json")
rows = sum(m["inference_count"] - a.get(k, {}).get("inference_count", 0) for k, m in b.items())
batches = sum(m["execution_count"] - a.get(k, {}).get("execution_count", 0) for k, m in b.items())
perf = open(f"{out}/perf.txt").read()
def counter(name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + name, perf)
    return float(m.group(1).replace(",", "")) if m else float("nan")
cpu_ms, switches = counter("task-clock"), counter("context-switches")
o = json.load(open(f"{out}/bench.json"))["overall"]
n = max(rows, 1)  # the server's own count covers the warm-up too
print(f"round {r} {side}: answered {o['throughput']:8.1f} req/s  p50 {o['p50_ms']:6.2f} ms  "
      f"p99 {o['p99_ms']:7.2f} ms  refused {o['errors']:6d}  mean batch {rows / max(batches, 1):5.2f}  "
      f"server CPU {cpu_ms * 1000 / n:6.1f} us/row  switches {switches / n:5.2f}/row  "
      f"CPU {cpu_ms * 1000 / offered:6.1f} us/offered request")
EOF
  done
done
