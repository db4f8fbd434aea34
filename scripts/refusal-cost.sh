#!/usr/bin/env bash
# What a refused request costs the server: one dlrm-small whose queue holds 8 requests and
# whose static batcher holds them 100 ms (so ~80 req/s are answered and the rest get 429),
# offered RATE req/s open-loop. Two binaries side by side, interleaved ROUNDS times; per
# window: answered and refused counts, and the server's CPU time and context switches per
# offered request (`perf stat -p`, so Linux with perf installed).
#
#   BIN_A=old BIN_B=new scripts/refusal-cost.sh
#   BIN_A=old BIN_B=new BATCH=32 RATE=1000 scripts/refusal-cost.sh   # 32-row requests
#
# Environment (defaults in brackets):
#   BIN_A, BIN_B   cohost binaries [target/release/cohost]; the client is always BIN_B
#   RATE           offered requests per second [2000]
#   BATCH          rows per request [1]
#   TARGET         http-json, http-binary or grpc [http-json]
#   ROUNDS         interleaved rounds [3]
#   WINDOW         measured seconds per window, after 1 s of warm-up [5]
#   OUT            folder for the repository and logs [target/refusal-cost]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/target/refusal-cost}"
BIN_A="${BIN_A:-$ROOT/target/release/cohost}"
BIN_B="${BIN_B:-$BIN_A}"
RATE="${RATE:-2000}"
BATCH="${BATCH:-1}"
TARGET="${TARGET:-http-json}"
ROUNDS="${ROUNDS:-3}"
WINDOW="${WINDOW:-5}"
mkdir -p "$OUT"
for b in "$BIN_A" "$BIN_B"; do
  [ -x "$b" ] || { echo "no cohost binary at $b (cargo build --release -p cohost-server)" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)" >&2; exit 2; }

REPO="$OUT/repo"
if [ ! -f "$REPO/.complete" ]; then
  rm -rf "$REPO"
  "$BIN_B" gen --out "$REPO" --preset dlrm-small --count 1 --rows 20000 >/dev/null
  python3 - "$REPO/dlrm-small/config.toml" <<'EOF'
import re, sys
path = sys.argv[1]
s = open(path).read()
s = re.sub(r"(?m)^max_queue_len = \d+", "max_queue_len = 8", s)
s = re.sub(r"(?ms)^\[batching\].*?(?=^\[)", '[batching]\npolicy = "static"\nmax_queue_delay_us = 100000\n\n', s)
open(path, "w").write(s)
EOF
  touch "$REPO/.complete"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
declare -A PID PORT PORT_HTTP
for side in A B; do
  bin_var="BIN_$side"
  http=$(free_port)
  grpc=$(free_port)
  "${!bin_var}" serve --device cpu --model-repository "$REPO" --http-port "$http" \
    --grpc-port "$grpc" >"$OUT/server-$side.log" 2>&1 &
  PID[$side]=$!
  PIDS+=("$!")
  PORT_HTTP[$side]=$http
  PORT[$side]=$http
  [ "$TARGET" = grpc ] && PORT[$side]=$grpc
  for _ in $(seq 1 600); do
    curl -sf "127.0.0.1:$http/v2/health/ready" >/dev/null && break
    kill -0 "${PID[$side]}" 2>/dev/null || { echo "server $side exited; see $OUT/server-$side.log" >&2; exit 1; }
    sleep 0.2
  done
done

echo "rate $RATE req/s of $BATCH row(s), $TARGET, $ROUNDS rounds; A: $BIN_A; B: $BIN_B"
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    perf stat -e context-switches,task-clock -p "${PID[$side]}" -o "$OUT/perf.txt" \
      -- sleep "$((WINDOW + 1))" >/dev/null 2>&1 &
    perf_pid=$!
    "$BIN_B" bench --target "$TARGET" --url "http://127.0.0.1:${PORT[$side]}" \
      --model-repository "$REPO" --model dlrm-small --batch-size "$BATCH" --rate "$RATE" \
      --warmup 1 --duration "$WINDOW" --no-progress --json "$OUT/bench.json" \
      >/dev/null 2>"$OUT/bench.err" || true
    wait "$perf_pid"
    python3 - "$OUT" "$r" "$side" "$RATE" "$WINDOW" <<'EOF'
import json, re, sys
out, r, side, rate, window = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
perf = open(f"{out}/perf.txt").read()
def counter(name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + name, perf)
    return float(m.group(1).replace(",", "")) if m else float("nan")
o = json.load(open(f"{out}/bench.json"))["overall"]
offered = rate * (window + 1)  # perf covers the warm-up second too
errors = sum(o["errors"].values()) if isinstance(o["errors"], dict) else o["errors"]
print(f"round {r} {side}: answered {o['ok']:6d}  refused {errors:6d}  "
      f"server CPU {counter('task-clock') * 1000 / offered:6.1f} us per offered request  "
      f"switches {counter('context-switches') / offered:5.2f}")
EOF
  done
done
