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
#   SEARCH_RETRIES  times a failing search step is measured again before it counts [1]
#   CAPACITY     (c) total req/s of the 4-model slice; skips its capacity search [unset]
#   OLD_BIN      another cohost binary whose adaptive policy is also measured in (a) [unset]
#   LANE_SPINS   (d) cohost serve --lane-spin-us settings measured side by side [0 200]
#   NULL_BIN     (d) the null server (benches/examples/null_server.rs): the same HTTP stack
#                answering without work, the floor under the HTTP figures [built if missing]
#   WEIGHT_PRECISION  (b) weight_precision of every model, fp32 or fp16 [fp32]
#   COHOST_LANE_SPIN_US  lane spin of every other server started here, and of the
#                in-process target (cohost serve --lane-spin-us) [0]
#   FINALS       (a) skip the grid and run only the interleaved finals of adaptive against
#                these grid settings, e.g. "a-static-500us-256 a-static-500us-64" [unset]
#   NOISY_TARGET (c) http-json, or in-process: the bench process runs the runtime itself
#                (--lanes LANES --schedule per schedule), so no front end shares the cores
#                and the lanes are what the tenants contend for [http-json]
#   REPEAT       interleaved repetitions of each comparison [3]; ratios are reported per
#                repetition and as their median, so a slow stretch of a shared machine
#                hits both sides of a comparison instead of one
#   CONNECTIONS  HTTP searches and windows: cohost bench --connections (most connections
#                the client opens; 0 = one per request in flight) [0]
#   SCHEDULES    (c) cross-model policies compared [edf-fair edf-fair-work-conserving]
#   NOISY_WINDOW (c) seconds of each measured window [5]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${COHOST_BIN:-$ROOT/target/release/cohost}"
OUT="${OUT:-$ROOT/target/bench-policies}"
ROWS="${ROWS:-20000}"
P99="${P99:-10}"
WARMUP="${WARMUP:-0.5}"
DURATION="${DURATION:-2}"
LANES="${LANES:-0}"
LANE_SPINS="${LANE_SPINS:-0 200}"
PORT="${PORT:-18080}"
GPORT=$((PORT + 1))
DELAYS="${DELAYS:-100 500 2000}"
SIZES="${SIZES:-16 64 256}"
NOISY_QUEUE="${NOISY_QUEUE:-8}"
SEARCH_MIN_REQUESTS="${SEARCH_MIN_REQUESTS:-300}"
SEARCH_START="${SEARCH_START:-100}"
SEARCH_RETRIES="${SEARCH_RETRIES:-1}"
REPEAT="${REPEAT:-3}"
SCHEDULES="${SCHEDULES:-edf-fair edf-fair-work-conserving}"
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"

# `cohost bench` runs the cohost-bench binary next to cohost (or on PATH): build both.
if [ ! -x "$BIN" ] || { [ -z "${COHOST_BIN:-}" ] && [ ! -x "$ROOT/target/release/cohost-bench" ]; }; then
  (cd "$ROOT" && cargo build --release -p cohost-server -p cohost-bench)
fi

# Servers started here, by HTTP port; all are stopped on exit.
declare -A SERVERS=()
stop_port() {
  local pid="${SERVERS[$1]:-}"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "SERVERS[$1]"
}
stop_server() {
  for port in "${!SERVERS[@]}"; do stop_port "$port"; done
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_on PORT REPO LOG [SERVE ARGS...]: serve REPO on 127.0.0.1:PORT (gRPC PORT+1).
start_on() {
  local port="$1" repo="$2" log="$3"
  shift 3
  stop_port "$port"
  "$BIN" serve --model-repository "$repo" --host 127.0.0.1 --http-port "$port" \
    --grpc-port $((port + 1)) --lanes "$LANES" --device cpu "$@" >"$log" 2>&1 &
  SERVERS[$port]=$!
  wait_ready "$port" "$log"
}

# wait_ready PORT LOG: waits for the server started on PORT (in SERVERS) to be ready.
wait_ready() {
  local port="$1" log="$2"
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1; then
      # Ready with a model that failed to load would make every search a row of 404s.
      local unready
      unready=$(curl -sf -X POST "http://127.0.0.1:$port/v2/repository/index" | python3 -c \
        'import json,sys; print(" ".join(m["name"] for m in json.load(sys.stdin) if m.get("state") != "READY"))')
      [ -z "$unready" ] && return 0
      cat "$log"; echo "server on port $port: not ready: $unready" >&2; exit 1
    fi
    kill -0 "${SERVERS[$port]}" 2>/dev/null || { cat "$log"; echo "server died" >&2; exit 1; }
    sleep 0.2
  done
  echo "server on port $port not ready after 60 s" >&2
  exit 1
}

# start_server REPO LOG [SERVE ARGS...]: the one server of a step, on $PORT.
start_server() {
  stop_server
  start_on "$PORT" "$@"
}

# median of the numbers given as arguments.
median() { python3 -c "import statistics,sys; print(statistics.median(float(a) for a in sys.argv[1:]))" "$@"; }

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

# The bench's target arguments: HTTP JSON at $1, or (TARGET=in-process) the runtime in the
# bench process with LANES lanes and the SCHEDULE cross-model policy.
target_args() {
  if [ "${TARGET:-http-json}" = in-process ]; then
    echo --target in-process --lanes "$LANES" --schedule "${SCHEDULE:-edf-fair}" \
      --lane-spin-us "${COHOST_LANE_SPIN_US:-0}"
  else
    echo --target http-json --url "$1" --connections "${CONNECTIONS:-0}"
  fi
}

# search NAME START MODEL...: peak search over HTTP JSON (or TARGET); prints and records
# the result.
search() {
  local name="$1" start="$2"
  shift 2
  local args=()
  for m in "$@"; do args+=(--model "$m"); done
  # shellcheck disable=SC2046
  "$BIN" bench $(target_args "${SEARCH_URL:-$URL}") --model-repository "$REPO" "${args[@]}" \
    --p99-target "$P99" --search-start "$start" --warmup "$WARMUP" --duration "$DURATION" \
    --search-min-requests "$SEARCH_MIN_REQUESTS" --search-retries "$SEARCH_RETRIES" \
    --no-progress --json "$OUT/$name.json" \
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

# variant NAME SRC_REPO MODEL key=value...: a repository sharing SRC_REPO's weights (hard
# links: the server refuses weights that resolve outside its repository, so no symbolic
# links) with its own config for MODEL; prints its path.
variant() {
  local name="$1" src="$2" model="$3"
  shift 3
  local dir="$OUT/var-$name"
  rm -rf "$dir"
  mkdir -p "$dir/$model"
  for v in "$src/$model"/*/; do cp -al "${v%/}" "$dir/$model/"; done
  cp "$src/$model/config.toml" "$dir/$model/config.toml"
  set_config "$dir/$model/config.toml" "$@"
  echo "$dir"
}

batching() {
  REPO="$OUT/repo-batching"
  gen "$REPO" dlrm-small 1 "$ROWS"
  echo "== (a) dlrm-small (rows $ROWS), batch 1, HTTP JSON, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  declare -A CONF=(
    [a-none]="policy=\"none\""
    [a-static-0]="policy=\"static\" max_queue_delay_us=0"
    [a-adaptive]="policy=\"adaptive\" p99_target_ms=$P99"
  )
  for d in $DELAYS; do
    for sz in $SIZES; do
      CONF[a-static-${d}us-${sz}]="policy=\"static\" max_queue_delay_us=$d max_batch_size=$sz"
    done
  done
  # One search per configuration (the grid), each on its own server.
  local names=(a-none a-static-0)
  for d in $DELAYS; do for sz in $SIZES; do names+=("a-static-${d}us-${sz}"); done; done
  names+=(a-adaptive)
  [ -n "${FINALS:-}" ] && names=()
  for name in "${names[@]}"; do
    # shellcheck disable=SC2086
    local repo
    repo=$(variant "$name" "$REPO" dlrm-small ${CONF[$name]})
    start_server "$repo" "$OUT/$name.server.log"
    search "$name" "$SEARCH_START" dlrm-small
    stop_server
  done
  if [ -n "${OLD_BIN:-}" ]; then
    local bin="$BIN" repo
    BIN="$OLD_BIN"
    repo=$(variant a-adaptive-old "$REPO" dlrm-small policy='"adaptive"' p99_target_ms="$P99")
    start_server "$repo" "$OUT/a-adaptive-old.server.log"
    search a-adaptive-old "$SEARCH_START" dlrm-small
    stop_server
    BIN="$bin"
  fi
  # Then adaptive against the two best static settings of the grid, interleaved REPEAT
  # times, all three servers up at once (ports PORT, PORT+10, PORT+20).
  local top="${FINALS:-}"
  [ -n "$top" ] || top=$(python3 - "$OUT" "$DELAYS" "$SIZES" <<'EOF2'
import json, sys
out, delays, sizes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def tp(n):
    b = json.load(open(f"{out}/{n}.json"))["search"]["best"]
    return b["overall"]["throughput"] if b else 0.0
grid = sorted((tp(f"a-static-{d}us-{s}"), f"a-static-{d}us-{s}") for d in delays for s in sizes)
print(grid[-1][1], grid[-2][1])
EOF2
)
  local finals=(a-adaptive $top) port=$PORT
  declare -A PORTS=()
  for name in "${finals[@]}"; do
    # shellcheck disable=SC2086
    start_on "$port" "$(variant "$name-final" "$REPO" dlrm-small ${CONF[$name]})" "$OUT/$name-final.server.log"
    PORTS[$name]=$port
    port=$((port + 10))
  done
  for r in $(seq 1 "$REPEAT"); do
    for name in "${finals[@]}"; do
      SEARCH_URL="http://127.0.0.1:${PORTS[$name]}" search "$name-r$r" "$SEARCH_START" dlrm-small
    done
  done
  stop_server
  python3 - "$OUT" "$DELAYS" "$SIZES" "$REPEAT" "${finals[@]}" <<'EOF2' | tee -a "$OUT/summary.txt"
import json, statistics, sys
out, delays, sizes, repeat, finals = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4]), sys.argv[5:]
def tp(n):
    b = json.load(open(f"{out}/{n}.json"))["search"]["best"]
    return b["overall"]["throughput"] if b else 0.0
r = lambda x, y: x / y if y else float("inf")
import os
if os.path.exists(f"{out}/a-adaptive.json") and os.path.exists(f"{out}/a-none.json"):
    ad, no, s0 = tp("a-adaptive"), tp("a-none"), tp("a-static-0")
    grid = {f"a-static-{d}us-{s}": tp(f"a-static-{d}us-{s}") for d in delays for s in sizes}
    best = max(grid, key=grid.get)
    print(f"grid pass: adaptive {ad:.1f} | none {no:.1f} | static-0 {s0:.1f} | best static {best} {grid[best]:.1f}")
    print(f"grid-pass ratios: adaptive/none {r(ad, no):.2f} (goal >= 3), adaptive/static-0 {r(ad, s0):.2f} (goal >= 2), "
          f"adaptive/best-static {r(ad, grid[best]):.2f} (goal >= 1.0)")
ratios = {n: [] for n in finals[1:]}
for i in range(1, repeat + 1):
    a = tp(f"a-adaptive-r{i}")
    row = [f"adaptive {a:.1f}"]
    for n in finals[1:]:
        t = tp(f"{n}-r{i}")
        ratios[n].append(r(a, t))
        row.append(f"{n} {t:.1f} (adaptive/that {r(a, t):.2f})")
    print(f"repetition {i}: " + " | ".join(row))
goals = {"a-none": 3.0, "a-static-0": 2.0}  # issue 4 (a); every other static setting: 1.0
for n, v in ratios.items():
    print(f"median adaptive/{n} over {repeat} interleaved repetitions: {statistics.median(v):.2f} "
          f"(goal >= {goals.get(n, 1.0)})")
EOF2
}

# Adaptive policy (and WEIGHT_PRECISION) on every model of REPO.
adaptive_all() {
  for c in "$1"/*/config.toml; do
    set_config "$c" policy='"adaptive"' p99_target_ms="$P99" \
      weight_precision="\"${WEIGHT_PRECISION:-fp32}\""
  done
}

multitenant() {
  echo "== (b) 8 x dlrm-small (rows $ROWS) sharing the lanes vs 1, adaptive, P99 <= $P99 ms" | tee -a "$OUT/summary.txt"
  local one="$OUT/repo-one" eight="$OUT/repo-eight"
  gen "$one" dlrm-small 1 "$ROWS"
  adaptive_all "$one"
  gen "$eight" dlrm-small 8 "$ROWS"
  adaptive_all "$eight"
  # Both servers up at once; the searches alternate so drift hits both.
  start_on "$PORT" "$one" "$OUT/b-one.server.log"
  start_on $((PORT + 10)) "$eight" "$OUT/b-eight.server.log"
  for r in $(seq 1 "$REPEAT"); do
    REPO="$one" SEARCH_URL="http://127.0.0.1:$PORT" search "b-one-r$r" "$SEARCH_START" dlrm-small
    REPO="$eight" SEARCH_URL="http://127.0.0.1:$((PORT + 10))" search "b-eight-r$r" "$SEARCH_START" dlrm-small-{0..7}
  done
  stop_server
  python3 - "$OUT" "$REPEAT" <<'EOF2' | tee -a "$OUT/summary.txt"
import json, statistics, sys
out, repeat = sys.argv[1], int(sys.argv[2])
def tp(n):
    b = json.load(open(f"{out}/{n}.json"))["search"]["best"]
    return b["overall"]["throughput"] if b else 0.0
ratios = []
for i in range(1, repeat + 1):
    one, eight = tp(f"b-one-r{i}"), tp(f"b-eight-r{i}")
    ratios.append(eight / one if one else 0.0)
    print(f"repetition {i}: 8 models {eight:.1f} / 1 model {one:.1f} = {ratios[-1]:.2f}")
print(f"median 8 models / 1 model over {repeat} interleaved repetitions: {statistics.median(ratios):.2f} (goal >= 0.9)")
EOF2
}

# fixed NAME RATE MODEL...: one open-loop window at RATE (total); per-model stats printed.
fixed() {
  local name="$1" rate="$2"
  shift 2
  local args=()
  for m in "$@"; do args+=(--model "$m"); done
  # shellcheck disable=SC2046
  "$BIN" bench $(target_args "$URL") --model-repository "$REPO" "${args[@]}" \
    --rate "$rate" --warmup 1 --duration "${NOISY_WINDOW:-5}" --no-progress \
    --json "$OUT/$name.json" >"$OUT/$name.txt" 2>"$OUT/$name.err"
  python3 - "$OUT/$name.json" "$name" "$P99" <<'EOF2' >>"$OUT/noisy-windows.txt"
import json, sys
r, name, target = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
for m, s in r["models"] + [["(all)", r["overall"]]]:
    errs = " ".join(f"{k}={v}" for k, v in s["errors_by_kind"].items())
    print(f"{name:<24} {m:<14} ok {s['throughput']:8.1f} req/s  p50 {s['p50_ms']:6.2f}  "
          f"p99 {s['p99_ms']:6.2f} ms  {'within' if s['p99_ms'] <= target else 'OVER'} target  {errs}")
EOF2
}

noisy() {
  local target="${NOISY_TARGET:-http-json}"
  echo "== (c) noisy neighbour: 4 x dlrm-small (rows $ROWS), adaptive, P99 <= $P99 ms, $target" | tee -a "$OUT/summary.txt"
  # In-process: no server; the bench runs the runtime (start_server/stop_server do nothing).
  local serve=start_server stop=stop_server
  if [ "$target" = in-process ]; then
    export TARGET=in-process
    serve=true stop=true
  fi
  REPO="$OUT/repo-four"
  gen "$REPO" dlrm-small 4 "$ROWS"
  adaptive_all "$REPO"
  set_config "$REPO/dlrm-small-3/config.toml" policy='"adaptive"' p99_target_ms="$P99" \
    max_queue_len="$NOISY_QUEUE" max_lanes=1
  # Capacity of the 4-model slice at equal shares: fair share = capacity / 4 per model.
  local cap q noisy_rate
  if [ -n "${CAPACITY:-}" ]; then
    cap="$CAPACITY"
  else
    $serve "$REPO" "$OUT/c-capacity.server.log"
    search c-capacity "$SEARCH_START" dlrm-small-{0..3}
    $stop
    cap=$(maxrate "$OUT/c-capacity.json")
  fi
  q=$(python3 -c "print(round($cap / 8, 1))")         # quiet models: half their fair share
  noisy_rate=$(python3 -c "print(round(3 * $cap / 4, 1))")
  echo "capacity $cap req/s, fair share $(python3 -c "print($cap/4)") each; quiet at $q req/s each, noisy at $noisy_rate req/s (3x fair share)" | tee -a "$OUT/summary.txt"
  for sched in $SCHEDULES; do
    export SCHEDULE="$sched"
    $serve "$REPO" "$OUT/c-$sched.server.log" --schedule "$sched"
    for r in $(seq 1 "$REPEAT"); do
      fixed "c-$sched-without-r$r" "$(python3 -c "print(3 * $q)")" dlrm-small-0 dlrm-small-1 dlrm-small-2
      fixed "c-$sched-with-r$r" "$(python3 -c "print(3 * $q + $noisy_rate)")" dlrm-small-0:1 dlrm-small-1:1 \
        dlrm-small-2:1 "dlrm-small-3:$(python3 -c "print($noisy_rate / $q)")"
    done
    $stop
  done
  unset TARGET SCHEDULE
  python3 - "$OUT" "$P99" "$REPEAT" $SCHEDULES <<'EOF2' | tee -a "$OUT/summary.txt"
import json, statistics, sys
out, target, repeat, scheds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
med = statistics.median
for sched in scheds:
    load = lambda kind, i: dict((m, s) for m, s in json.load(open(f"{out}/c-{sched}-{kind}-r{i}.json"))["models"])
    runs = [(load("without", i), load("with", i)) for i in range(1, repeat + 1)]
    print(f"schedule {sched} ({repeat} interleaved pairs of windows):")
    for m in sorted(runs[0][0]):
        alone = [wo[m]["p99_ms"] for wo, _ in runs]
        noisy = [w[m]["p99_ms"] for _, w in runs]
        ratio = [b / a for a, b in zip(alone, noisy)]
        ok = med(noisy) <= target and med(ratio) <= 1.2
        print(f"  {m}: p99 alone {' '.join(f'{a:.2f}' for a in alone)} ms, with noisy "
              f"{' '.join(f'{b:.2f}' for b in noisy)} ms; median ratio x{med(ratio):.2f} "
              f"(goal <= 1.2 and <= {target} ms: {'ok' if ok else 'NOT MET'})")
    n = [w.get("dlrm-small-3") for _, w in runs]
    served = med(x["throughput"] for x in n)
    errs = {}
    for x in n:
        for k, v in x["errors_by_kind"].items():
            errs[k] = errs.get(k, 0) + v
    print(f"  noisy dlrm-small-3: median {served:.1f} req/s served, errors over all windows {errs}")
EOF2
}

overhead() {
  echo "== (d) overhead: mlp-tiny, policy none, concurrency 1, lane spin ${LANE_SPINS} us" | tee -a "$OUT/summary.txt"
  REPO="$OUT/repo-tiny"
  gen "$REPO" mlp-tiny 1
  set_config "$REPO/mlp-tiny/config.toml" policy='"none"'
  # One server per lane-spin setting, side by side, so each repetition measures them all
  # within the same minute.
  local port=$PORT
  declare -A ports
  for spin in $LANE_SPINS; do
    ports[$spin]=$port
    start_on "$port" "$REPO" "$OUT/d-spin-$spin.server.log" --lane-spin-us "$spin"
    port=$((port + 10))
  done
  # The floor: a server on the same HTTP stack that answers without doing any work.
  local null_bin="${NULL_BIN:-$ROOT/target/release/examples/null_server}" null_port=$((PORT + 50))
  [ -x "$null_bin" ] || (cd "$ROOT" && cargo build --release -p cohost-bench --example null_server)
  "$null_bin" "127.0.0.1:$null_port" >"$OUT/d-null.server.log" 2>&1 &
  SERVERS[$null_port]=$!
  wait_ready "$null_port" "$OUT/d-null.server.log"
  for r in $(seq 1 "$REPEAT"); do
    "$BIN" bench --target http-json --url "http://127.0.0.1:$null_port" --model-repository "$REPO" \
      --model mlp-tiny --concurrency 1 --warmup 1 --duration 5 --no-progress \
      --json "$OUT/d-null-http-json-r$r.json" >/dev/null 2>&1
    for spin in $LANE_SPINS; do
      "$BIN" bench --target in-process --model-repository "$REPO" --model mlp-tiny --lanes "$LANES" \
        --lane-spin-us "$spin" --concurrency 1 --warmup 1 --duration 5 --no-progress \
        --json "$OUT/d-spin-$spin-in-process-r$r.json" >/dev/null 2>&1
      for t in http-json http-binary grpc; do
        local url="http://127.0.0.1:${ports[$spin]}"
        [ "$t" = grpc ] && url="http://127.0.0.1:$((ports[$spin] + 1))"
        "$BIN" bench --target "$t" --url "$url" --model-repository "$REPO" --model mlp-tiny \
          --concurrency 1 --warmup 1 --duration 5 --no-progress --json "$OUT/d-spin-$spin-$t-r$r.json" >/dev/null 2>&1
      done
    done
  done
  stop_server
  python3 - "$OUT" "$REPEAT" $LANE_SPINS <<'EOF2' | tee -a "$OUT/summary.txt"
import json, statistics, sys
out, repeat, spins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
targets = ["in-process", "http-json", "http-binary", "grpc"]
p50 = lambda s, t, i: json.load(open(f"{out}/d-spin-{s}-{t}-r{i}.json"))["overall"]["p50_ms"] * 1000
null = lambda i: json.load(open(f"{out}/d-null-http-json-r{i}.json"))["overall"]["p50_ms"] * 1000
floor = statistics.median(null(i) for i in range(1, repeat + 1))
print(f"null server (same HTTP stack, answers without work): median p50 {floor:.0f} us "
      f"({', '.join(f'{null(i):.0f}' for i in range(1, repeat + 1))})")
for s in spins:
    print(f"lane spin {s} us")
    for i in range(1, repeat + 1):
        print(f"  repetition {i}: " + ", ".join(f"{t} {p50(s, t, i):.0f} us" for t in targets))
    base = statistics.median(p50(s, "in-process", i) for i in range(1, repeat + 1))
    print(f"  in-process median p50 {base:.0f} us")
    for t in targets[1:]:
        med = statistics.median(p50(s, t, i) for i in range(1, repeat + 1))
        diffs = [p50(s, t, i) - p50(s, "in-process", i) for i in range(1, repeat + 1)]
        print(f"  {t:<12} median p50 {med:.0f} us, minus in-process (same repetition): {statistics.median(diffs):.0f} us (goal <= 30 us)")
    above = [p50(s, "http-json", i) - null(i) for i in range(1, repeat + 1)]
    print(f"  http-json minus the null server (same repetition): {statistics.median(above):.0f} us")
EOF2
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
