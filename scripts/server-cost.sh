#!/usr/bin/env bash
# What one request costs a server at a fixed offered load: two `cohost serve` set-ups (A and
# B: binaries, repositories, models or schedules) up side by side, the same open-loop
# Poisson rate sent to each in turn, ROUNDS times, so a slow stretch of a shared machine
# hits both. Per window it prints the answered rate, p50/p99, the refused count, the mean
# batch size (from /v2/models/stats), the server's CPU time and context switches per
# answered row, and its CPU time per offered request (`perf stat -p`, so Linux with perf
# installed). scripts/refusal-cost.sh runs it on a model that refuses nearly everything.
#
# Two more modes measure the front end's own cost against the null servers
# (benches/examples/null_server.rs over HTTP, null_grpc_server.rs over gRPC: the same
# stacks answering without work), mlp-tiny, BATCH rows a request:
#
#   scripts/server-cost.sh front-end   # server CPU per request (/proc/PID/stat utime+stime
#                                      # over the window) and context switches per request
#                                      # at RATE: HTTP JSON, HTTP binary and gRPC, each next
#                                      # to its null server and to cohost with caller runs
#                                      # off ("lanes-*": every batch on a lane thread),
#                                      # ROUNDS rounds
#   scripts/server-cost.sh callgrind   # instructions per request: each server under
#                                      # valgrind --tool=callgrind, counting only while
#                                      # CG_RATE req/s run for CG_SECONDS
#
#   (both need target/release/{cohost,cohost-bench} and target/release/examples/
#   {null_server,null_grpc_server}: cargo build --release -p cohost-server -p cohost-bench
#   --bins --examples; the release profile keeps line tables, so callgrind names functions;
#   scripts/python/callgrind_phases.py splits a cohost profile by phase)
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
#   POLICY              batching policy of the generated mlp-tiny (none, static, adaptive)
#                       [the preset's: static, 500 µs delay]
#   RATE                offered requests per second, all models together [2000]
#   BATCH               rows per request [1]
#   TARGET              http-json, http-binary or grpc [http-json]
#   ROUNDS              interleaved rounds [3]
#   WINDOW              measured seconds per window, after 1 s of warm-up [4]
#   OUT                 folder for the repository and logs [target/server-cost]
#   CG_RATE, CG_SECONDS callgrind: offered rate and seconds counted [200, 5]
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
[ -n "${1:-}" ] || command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }
# The generated mlp-tiny repository, batched by POLICY (the preset's own: static, 500 µs).
TINY="$OUT/repo-tiny${POLICY:+-$POLICY}"
if [ -z "${REPO_A:-}" ] || [ -z "${REPO_B:-}" ]; then
  if [ ! -f "$TINY/.complete" ]; then
    rm -rf "$TINY"
    "$BIN_B" gen --out "$TINY" --preset mlp-tiny --count 1 >/dev/null
    if [ -n "${POLICY:-}" ]; then
      sed -i "s/^policy = .*/policy = \"$POLICY\"/" "$TINY/mlp-tiny/config.toml"
    fi
    touch "$TINY/.complete"
  fi
fi
REPO_A="${REPO_A:-$TINY}"
REPO_B="${REPO_B:-$TINY}"
MODELS_A="${MODELS_A:-mlp-tiny}"
MODELS_B="${MODELS_B:-mlp-tiny}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

EXAMPLES="$(dirname "$BIN_B")/examples"
# Waits until TCP port $1 accepts connections (or process $2 exits).
wait_port() {
  for _ in $(seq 1 1500); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2)' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "the server for port $1 exited; see $OUT/*.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "nothing listens on port $1" >&2; exit 1
}
# Starts the servers of the front-end modes, each command prefixed with "$@" (valgrind):
# cohost on mlp-tiny (HTTP and gRPC ports of one process), the same with every batch on a
# lane thread (--caller-runs-us 0), the null HTTP and the null gRPC server. Sets FE_PORT
# and FE_PID for cohost-http, cohost-grpc, lanes-http, lanes-grpc, null-http, null-grpc.
declare -A FE_PORT FE_PID
start_front_ends() {
  local http grpc lh lg nh ng
  http=$(free_port) grpc=$(free_port) lh=$(free_port) lg=$(free_port) nh=$(free_port) ng=$(free_port)
  for b in "$EXAMPLES/null_server" "$EXAMPLES/null_grpc_server"; do
    [ -x "$b" ] || { echo "no $b (cargo build --release -p cohost-bench --examples)" >&2; exit 2; }
  done
  "$@" "$BIN_B" serve --device cpu --model-repository "$REPO_B" --http-port "$http" \
    --grpc-port "$grpc" ${COHOST_ARGS:-} >"$OUT/cohost.log" 2>&1 &
  FE_PID[cohost-http]=$! FE_PID[cohost-grpc]=$!
  PIDS+=("$!")
  "$@" "$BIN_B" serve --device cpu --model-repository "$REPO_B" --http-port "$lh" \
    --grpc-port "$lg" --caller-runs-us 0 >"$OUT/cohost-lanes.log" 2>&1 &
  FE_PID[lanes-http]=$! FE_PID[lanes-grpc]=$!
  PIDS+=("$!")
  "$@" "$EXAMPLES/null_server" "127.0.0.1:$nh" >"$OUT/null-http.log" 2>&1 &
  FE_PID[null-http]=$!
  PIDS+=("$!")
  "$@" "$EXAMPLES/null_grpc_server" "127.0.0.1:$ng" >"$OUT/null-grpc.log" 2>&1 &
  FE_PID[null-grpc]=$!
  PIDS+=("$!")
  FE_PORT[cohost-http]=$http FE_PORT[cohost-grpc]=$grpc FE_PORT[null-http]=$nh FE_PORT[null-grpc]=$ng
  FE_PORT[lanes-http]=$lh FE_PORT[lanes-grpc]=$lg
  for p in "$http" "$lh"; do
    wait_port "$p" "${FE_PID[cohost-http]}"
    for _ in $(seq 1 1500); do
      curl -sf "127.0.0.1:$p/v2/health/ready" >/dev/null && break
      sleep 0.2
    done
  done
  wait_port "$grpc" "${FE_PID[cohost-grpc]}"
  wait_port "$lg" "${FE_PID[lanes-grpc]}"
  wait_port "$nh" "${FE_PID[null-http]}"
  wait_port "$ng" "${FE_PID[null-grpc]}"
}
# The measured cases: label, cohost bench target, server ("lanes-*": caller runs off).
FE_CASES=("null-http http-json null-http" "cohost-json http-json cohost-http"
  "lanes-json http-json lanes-http" "cohost-binary http-binary cohost-http"
  "lanes-binary http-binary lanes-http" "null-grpc grpc null-grpc"
  "cohost-grpc grpc cohost-grpc" "lanes-grpc grpc lanes-grpc")
# utime+stime of process $1 (all its threads), in clock ticks.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
# Context switches (voluntary and not) of every thread of process $1 so far.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }

if [ "${1:-}" = front-end ]; then
  start_front_ends
  HZ=$(getconf CLK_TCK)
  echo "server CPU per request (/proc utime+stime over $((WINDOW - 1)) s, after 1 s of load), mlp-tiny, $BATCH row(s), open loop at $RATE req/s, $ROUNDS rounds"
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${FE_CASES[@]}"; do
      read -r label target server <<<"$c"
      pid=${FE_PID[$server]}
      "$BIN_B" bench --target "$target" --url "http://127.0.0.1:${FE_PORT[$server]}" \
        --model-repository "$REPO_B" --model mlp-tiny --batch-size "$BATCH" --rate "$RATE" \
        --warmup 1 --duration "$WINDOW" --no-progress --json "$OUT/bench.json" \
        >/dev/null 2>"$OUT/bench.err" &
      bench=$!
      sleep 1
      t0=$(date +%s.%N) c0=$(cpu_ticks "$pid") s0=$(ctx_switches "$pid")
      sleep "$((WINDOW - 1))"
      t1=$(date +%s.%N) c1=$(cpu_ticks "$pid") s1=$(ctx_switches "$pid")
      wait "$bench" || true
      python3 - "$OUT/bench.json" "$r" "$label" "$RATE" "$t0" "$t1" "$c0" "$c1" "$HZ" "$s0" "$s1" <<'EOF'
import json, sys
f, r, label = sys.argv[1:4]
rate, t0, t1, c0, c1, hz, s0, s1 = map(float, sys.argv[4:12])
o = json.load(open(f))["overall"]
n = rate * (t1 - t0)
cpu_us = (c1 - c0) / hz * 1e6 / n
print(f"round {r} {label:<13} answered {o['throughput']:7.0f} req/s  errors {o['errors']:5d}  "
      f"p50 {o['p50_ms']:5.2f} ms  p99 {o['p99_ms']:6.2f} ms  server CPU {cpu_us:6.1f} us/request  "
      f"{(s1 - s0) / n:4.2f} context switches/request")
EOF
    done
  done
  exit 0
fi

if [ "${1:-}" = callgrind ]; then
  command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
  CG_RATE="${CG_RATE:-200}" CG_SECONDS="${CG_SECONDS:-5}"
  # Under valgrind a forward runs ~50x slower, so its learnt latency would exceed the caller
  # runs bound: a bound of 1 s keeps the decisions the native server makes.
  COHOST_ARGS="--caller-runs-us 1000000"
  start_front_ends valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.%p.out"
  echo "instructions per request (callgrind, counted only while the requests run), mlp-tiny, $BATCH row(s), $CG_RATE req/s for $CG_SECONDS s"
  for c in "${FE_CASES[@]}"; do
    read -r label target server <<<"$c"
    pid=${FE_PID[$server]}
    bench_args=(--target "$target" --url "http://127.0.0.1:${FE_PORT[$server]}"
      --model-repository "$REPO_B" --model mlp-tiny --batch-size "$BATCH" --no-progress --timeout 30)
    # Warm-up, not counted: connections, allocator and the latency model settle.
    "$BIN_B" bench "${bench_args[@]}" --rate 50 --warmup 0 --duration 2 >/dev/null 2>&1 || true
    callgrind_control -z "$pid" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    "$BIN_B" bench "${bench_args[@]}" --rate "$CG_RATE" --warmup 0 --duration "$CG_SECONDS" \
      --json "$OUT/bench.json" >/dev/null 2>"$OUT/bench.err" || true
    callgrind_control -i off "$pid" >/dev/null
    before=$(ls "$OUT"/callgrind.$pid.out* 2>/dev/null | wc -l)
    callgrind_control -d "$label" "$pid" >/dev/null
    for _ in $(seq 1 100); do
      [ "$(ls "$OUT"/callgrind.$pid.out* 2>/dev/null | wc -l)" -gt "$before" ] && break
      sleep 0.2
    done
    dump=$(ls -t "$OUT"/callgrind.$pid.out* | head -1)
    mv "$dump" "$OUT/callgrind-$label.out"
    python3 - "$OUT/bench.json" "$OUT/callgrind-$label.out" "$label" <<'EOF'
import json, re, sys
o = json.load(open(sys.argv[1]))["overall"]
n = o["ok"] + o["errors"]
text = open(sys.argv[2]).read()
# The last "totals:" line (a dump's "summary:" header may read 0).
totals = re.findall(r"^totals:\s+(\d+)", text, re.M)
ir = int(totals[-1]) if totals else 0
print(f"{sys.argv[3]:<13} {n:6d} requests ({o['errors']} failed)  {ir / max(n, 1):10.0f} instructions/request")
EOF
  done
  exit 0
fi

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
