#!/usr/bin/env bash
# Issue 4 measurements: batching policies, multi-tenancy, noisy neighbour, transport
# overhead, and the capacity oracle. Every figure comes from `cohost bench` (HTTP JSON
# unless said otherwise) against `cohost serve` started here on 127.0.0.1.
#
#   scripts/bench-policies.sh batching     # (a) dlrm-small batch-1, P99 <= $P99 ms: none,
#                                          #     static-0, static delay x size grid, adaptive
#   scripts/bench-policies.sh multitenant  # (b) 8 models sharing the lanes vs 1 model
#   scripts/bench-policies.sh noisy        # (c) 4 models, one offered 3x its fair share
#   scripts/bench-policies.sh overhead     # (d) mlp-tiny p50 per transport minus in-process
#   scripts/bench-policies.sh oracle       #     capacity oracle (in-process) on dlrm-small
#   scripts/bench-policies.sh all
#
# Environment (defaults in brackets):
#   COHOST_BIN   prebuilt binary [target/release/cohost; built once if missing]
#   OUT          results folder (repos, JSON, logs) [target/bench-policies]
#   ROWS         rows per embedding table of dlrm-small [20000] (the preset has 100000)
#   P99          P99 target, ms [10]
#   WARMUP, DURATION  seconds of warm-up and measured window per step [0.5, 2]
#                (the harness stretches a window up to 10x to see 500 requests)
#   LANES        cohost serve --lanes [0: one per core]
#   PORT         HTTP port, gRPC is PORT+1 [18080]
#   DELAYS, SIZES  static grid [100 500 2000] x [16 64 256]
#   NOISY_QUEUE  max_queue_len of the noisy model [8]
#   SEARCH_MIN_REQUESTS  requests a search step measures at least [300]
#   SEARCH_START first rate of each search, req/s [100]
#   CAPACITY     (c) total req/s of the 4-model slice; skips its capacity search [unset]
#   OLD_BIN      another cohost binary whose adaptive policy is also measured in (a) [unset]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${COHOST_BIN:-$ROOT/target/release/cohost}"
OUT="${OUT:-$ROOT/target/bench-policies}"
ROWS="${ROWS:-20000}"
P99="${P99:-10}"
WARMUP="${WARMUP:-0.5}"
DURATION="${DURATION:-2}"
LANES="${LANES:-0}"
PORT="${PORT:-18080}"
GPORT=$((PORT + 1))
DELAYS="${DELAYS:-100 500 2000}"
SIZES="${SIZES:-16 64 256}"
NOISY_QUEUE="${NOISY_QUEUE:-8}"
SEARCH_MIN_REQUESTS="${SEARCH_MIN_REQUESTS:-300}"
SEARCH_START="${SEARCH_START:-100}"
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"

if [ ! -x "$BIN" ]; then
  (cd "$ROOT" && cargo build --release -p cohost-server)
fi

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server REPO LOG: serve REPO on 127.0.0.1 and wait until ready.
start_server() {
  stop_server
  "$BIN" serve --model-repository "$1" --host 127.0.0.1 --http-port "$PORT" \
    --grpc-port "$GPORT" --lanes "$LANES" --device cpu >"$2" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    curl -sf "$URL/v2/health/ready" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$2"; echo "server died" >&2; exit 1; }
    sleep 0.2
  done
  echo "server not ready after 60 s" >&2
  exit 1
}

# gen REPO PRESET COUNT [ROWS]: a generated repository (reused when present).
gen() {
  [ -f "$1/.complete-$2-$3" ] && return 0
  rm -rf "$1"
  "$BIN" gen --out "$1" --preset "$2" --count "$3" ${4:+--rows "$4"} >/dev/null
  touch "$1/.complete-$2-$3"
}

# set_config FILE key=value...: top-level keys (weight, max_queue_len, max_lanes) and the
# [batching] table (policy, max_batch_size, max_queue_delay_us, p99_target_ms) rewritten.
set_config() {
  python3 - "$@" <<'EOF'
import re, sys
path, kvs = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
batching_keys = {"policy", "max_batch_size", "max_queue_delay_us", "p99_target_ms"}
lines, out, skip, in_table = open(path).read().splitlines(), [], False, False
for line in lines:
    if line.startswith("["):
        in_table = True
        skip = line.strip() == "[batching]"
        if skip:
            continue
    if skip:
        continue
    key = line.split("=", 1)[0].strip()
    if not in_table and key in kvs and key not in batching_keys:
        continue
    out.append(line)
top = [f"{k} = {v}" for k, v in kvs.items() if k not in batching_keys]
bat = ["[batching]"] + [f"{k} = {v}" for k, v in kvs.items() if k in batching_keys]
if "max_queue_delay_us" not in kvs:
    bat.append("max_queue_delay_us = 0")
open(path, "w").write("\n".join(top + out + [""] + bat) + "\n")
EOF
}

# search NAME START MODEL...: peak search over HTTP JSON; prints and records the result.
search() {
  local name="$1" start="$2"
  shift 2
  local args=()
  for m in "$@"; do args+=(--model "$m"); done
  "$BIN" bench --target http-json --url "$URL" --model-repository "$REPO" "${args[@]}" \
    --p99-target "$P99" --search-start "$start" --warmup "$WARMUP" --duration "$DURATION" \
    --search-min-requests "$SEARCH_MIN_REQUESTS" --no-progress --json "$OUT/$name.json" \
    >"$OUT/$name.txt" 2>"$OUT/$name.err" || {
    cat "$OUT/$name.err" >&2
    return 1
  }
  python3 - "$OUT/$name.json" "$name" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
r = json.load(open(sys.argv[1]))["search"]
b = r.get("best") or {"overall": {"throughput": 0, "p99_ms": 0, "p50_ms": 0}}
o = b["overall"]
print(f"{sys.argv[2]:<28} max {o['throughput']:8.1f} req/s  p50 {o['p50_ms']:6.2f} ms  "
      f"p99 {o['p99_ms']:6.2f} ms  offered {r['max_rate'] or 0:8.1f}  first fail {r['first_fail']}")
EOF
}

maxrate() { python3 -c "import json,sys; b=json.load(open(sys.argv[1]))['search']['best']; print(b['overall']['throughput'] if b else 0)" "$1"; }

batching() {
  REPO="$OUT/repo-batching"
  gen "$REPO" dlrm-small 1 "$ROWS"
  local cfg="$REPO/dlrm-small/config.toml"
  echo "== (a) dlrm-small (rows $ROWS), batch 1, HTTP JSON, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  run_policy() {
    local name="$1"
    shift
    set_config "$cfg" "$@"
    start_server "$REPO" "$OUT/$name.server.log"
    search "$name" "$SEARCH_START" dlrm-small
    stop_server
  }
  run_policy a-none policy='"none"'
  run_policy a-static-0 policy='"static"' max_queue_delay_us=0
  for d in $DELAYS; do
    for s in $SIZES; do
      run_policy "a-static-${d}us-${s}" policy='"static"' max_queue_delay_us="$d" max_batch_size="$s"
    done
  done
  run_policy a-adaptive policy='"adaptive"' p99_target_ms="$P99"
  if [ -n "${OLD_BIN:-}" ]; then
    local bin="$BIN"
    BIN="$OLD_BIN"
    run_policy a-adaptive-old policy='"adaptive"' p99_target_ms="$P99"
    BIN="$bin"
  fi
  python3 - "$OUT" "$DELAYS" "$SIZES" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
out, delays, sizes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def tp(n):
    b = json.load(open(f"{out}/{n}.json"))["search"]["best"]
    return b["overall"]["throughput"] if b else 0.0
ad, no, s0 = tp("a-adaptive"), tp("a-none"), tp("a-static-0")
grid = {f"a-static-{d}us-{s}": tp(f"a-static-{d}us-{s}") for d in delays for s in sizes}
best = max(grid, key=grid.get)
r = lambda x: ad / x if x else float("inf")
print(f"adaptive {ad:.1f} | none {no:.1f} | static-0 {s0:.1f} | best static {best} {grid[best]:.1f}")
print(f"ratios: adaptive/none {r(no):.2f} (goal >= 3), adaptive/static-0 {r(s0):.2f} (goal >= 2), "
      f"adaptive/best-static {r(grid[best]):.2f} (goal >= 1.0)")
EOF
}

# Adaptive policy on every model of REPO.
adaptive_all() {
  for c in "$1"/*/config.toml; do
    set_config "$c" policy='"adaptive"' p99_target_ms="$P99"
  done
}

multitenant() {
  echo "== (b) 8 x dlrm-small (rows $ROWS) sharing the lanes vs 1, adaptive, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  REPO="$OUT/repo-one"
  gen "$REPO" dlrm-small 1 "$ROWS"
  adaptive_all "$REPO"
  start_server "$REPO" "$OUT/b-one.server.log"
  search b-one "$SEARCH_START" dlrm-small
  stop_server
  REPO="$OUT/repo-eight"
  gen "$REPO" dlrm-small 8 "$ROWS"
  adaptive_all "$REPO"
  start_server "$REPO" "$OUT/b-eight.server.log"
  search b-eight "$SEARCH_START" dlrm-small-{0..7}
  stop_server
  local one eight
  one=$(maxrate "$OUT/b-one.json")
  eight=$(maxrate "$OUT/b-eight.json")
  python3 -c "print(f'8 models / 1 model: {$eight:.1f} / {$one:.1f} = {$eight/$one:.2f} (goal >= 0.9)')" | tee -a "$OUT/summary.txt"
}

# fixed NAME RATE MODEL...: one open-loop window at RATE (total); per-model stats printed.
fixed() {
  local name="$1" rate="$2"
  shift 2
  local args=()
  for m in "$@"; do args+=(--model "$m"); done
  "$BIN" bench --target http-json --url "$URL" --model-repository "$REPO" "${args[@]}" \
    --rate "$rate" --warmup 1 --duration "${NOISY_WINDOW:-8}" --no-progress \
    --json "$OUT/$name.json" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  python3 - "$OUT/$name.json" "$name" "$P99" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
r, name, target = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
for m, s in r["models"] + [["(all)", r["overall"]]]:
    errs = " ".join(f"{k}={v}" for k, v in s["errors_by_kind"].items())
    print(f"{name:<10} {m:<14} ok {s['throughput']:8.1f} req/s  p50 {s['p50_ms']:6.2f}  "
          f"p99 {s['p99_ms']:6.2f} ms  {'within' if s['p99_ms'] <= target else 'OVER'} target  {errs}")
EOF
}

noisy() {
  echo "== (c) noisy neighbour: 4 x dlrm-small (rows $ROWS), adaptive, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  REPO="$OUT/repo-four"
  gen "$REPO" dlrm-small 4 "$ROWS"
  adaptive_all "$REPO"
  set_config "$REPO/dlrm-small-3/config.toml" policy='"adaptive"' p99_target_ms="$P99" \
    max_queue_len="$NOISY_QUEUE" max_lanes=1
  start_server "$REPO" "$OUT/c.server.log"
  # Capacity of the 4-model slice at equal shares: fair share = capacity / 4 per model.
  local cap q noisy_rate
  if [ -n "${CAPACITY:-}" ]; then
    cap="$CAPACITY"
  else
    search c-capacity "$SEARCH_START" dlrm-small-{0..3}
    cap=$(maxrate "$OUT/c-capacity.json")
  fi
  q=$(python3 -c "print(round($cap / 8, 1))")         # quiet models: half their fair share
  noisy_rate=$(python3 -c "print(round(3 * $cap / 4, 1))")
  echo "capacity $cap req/s, fair share $(python3 -c "print($cap/4)") each; quiet at $q req/s each, noisy at $noisy_rate req/s (3x fair share)" | tee -a "$OUT/summary.txt"
  fixed c-without "$(python3 -c "print(3 * $q)")" dlrm-small-0 dlrm-small-1 dlrm-small-2
  fixed c-with "$(python3 -c "print(3 * $q + $noisy_rate)")" dlrm-small-0:1 dlrm-small-1:1 \
    dlrm-small-2:1 "dlrm-small-3:$(python3 -c "print($noisy_rate / $q)")"
  stop_server
  python3 - "$OUT" "$P99" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
out, target = sys.argv[1], float(sys.argv[2])
wo = dict((m, s) for m, s in json.load(open(f"{out}/c-without.json"))["models"])
w = dict((m, s) for m, s in json.load(open(f"{out}/c-with.json"))["models"])
for m in sorted(wo):
    a, b = wo[m]["p99_ms"], w[m]["p99_ms"]
    print(f"{m}: p99 {a:.2f} ms alone, {b:.2f} ms with the noisy one: x{b/a:.2f} "
          f"(goal <= 1.2, and <= {target} ms: {'ok' if b <= target and b <= 1.2 * a else 'NOT MET'})")
n = w.get("dlrm-small-3")
if n:
    print(f"noisy dlrm-small-3: {n['throughput']:.1f} req/s served, errors {n['errors_by_kind']}")
EOF
}

overhead() {
  echo "== (d) overhead: mlp-tiny, policy none, concurrency 1" | tee -a "$OUT/summary.txt"
  REPO="$OUT/repo-tiny"
  gen "$REPO" mlp-tiny 1
  set_config "$REPO/mlp-tiny/config.toml" policy='"none"'
  "$BIN" bench --target in-process --model-repository "$REPO" --model mlp-tiny --lanes "$LANES" \
    --concurrency 1 --warmup 1 --duration 5 --no-progress --json "$OUT/d-in-process.json" >/dev/null 2>&1
  start_server "$REPO" "$OUT/d.server.log"
  for t in http-json http-binary grpc; do
    local url="$URL"
    [ "$t" = grpc ] && url="http://127.0.0.1:$GPORT"
    "$BIN" bench --target "$t" --url "$url" --model-repository "$REPO" --model mlp-tiny \
      --concurrency 1 --warmup 1 --duration 5 --no-progress --json "$OUT/d-$t.json" >/dev/null 2>&1
  done
  stop_server
  python3 - "$OUT" <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys
out = sys.argv[1]
p50 = lambda t: json.load(open(f"{out}/d-{t}.json"))["overall"]["p50_ms"] * 1000
base = p50("in-process")
print(f"in-process p50 {base:.0f} us")
for t in ["http-json", "http-binary", "grpc"]:
    print(f"{t:<12} p50 {p50(t):.0f} us, minus in-process: {p50(t) - base:.0f} us (goal <= 30 us)")
EOF
}

oracle() {
  echo "== oracle: dlrm-small (rows $ROWS), adaptive, in-process, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  REPO="$OUT/repo-oracle"
  gen "$REPO" dlrm-small 1 "$ROWS"
  adaptive_all "$REPO"
  "$BIN" bench --oracle --target in-process --model-repository "$REPO" --model dlrm-small \
    --p99-target "$P99" --oracle-lanes 1,2 --oracle-memory "${ORACLE_MEMORY:-1MiB,64MiB,unlimited}" \
    --target-rate "${TARGET_RATE:-1000}" --search-start 100 --warmup "$WARMUP" \
    --search-min-requests "$SEARCH_MIN_REQUESTS" \
    --duration "$DURATION" --no-progress --json "$OUT/oracle.json" 2>"$OUT/oracle.err" |
    tee -a "$OUT/summary.txt"
}

case "${1:-all}" in
  batching) batching ;;
  multitenant) multitenant ;;
  noisy) noisy ;;
  overhead) overhead ;;
  oracle) oracle ;;
  all) batching; multitenant; noisy; overhead; oracle ;;
  *) echo "usage: $0 [batching|multitenant|noisy|overhead|oracle|all]" >&2; exit 2 ;;
esac
