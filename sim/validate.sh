#!/usr/bin/env bash
# Validation of cohost-sim against the harness (docs/SIMULATION.md § Validation): for none,
# static-0, static 500 us x 64 and adaptive, 1 model and 8 models, the in-process peak
# search of cohost-bench (which also writes the lane cost profile with --profile), then
# the simulator's peak search on that profile. Results in $OUT.
#
#   BIN_DIR=target/debug OUT=/tmp/sim-validate ROWS=5000 sim/validate.sh
# HOST_US=25 runs the simulator with the front end's CPU share (--host-us-per-request); with
# OUT kept from an earlier run the bench searches rerun too (they are the slow half).
set -euo pipefail
BIN_DIR=${BIN_DIR:-target/debug}
OUT=${OUT:-/tmp/sim-validate}
ROWS=${ROWS:-5000}
P99=${P99:-10}
DURATION=${DURATION:-2}
POLICIES=${POLICIES:-"none static-0 static-500x64 adaptive"}
COUNTS=${COUNTS:-"1 8"}
mkdir -p "$OUT"
REPO="$OUT/repo"
if [ ! -f "$REPO/.complete" ]; then
  rm -rf "$REPO"
  "$BIN_DIR/cohost" gen --out "$REPO" --preset dlrm-small --count 8 --rows "$ROWS" >/dev/null
  touch "$REPO/.complete"
fi

# set_batching POLICY: every model's [batching] table for POLICY.
set_batching() {
  python3 - "$REPO" "$1" "$P99" <<'PY'
import pathlib, re, sys
repo, policy, p99 = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if policy == "none": table = 'policy = "none"'
elif policy == "adaptive": table = f'policy = "adaptive"\np99_target_ms = {p99}'
elif policy == "static-0": table = 'policy = "static"\nmax_queue_delay_us = 0'
else:
    d, n = policy.removeprefix("static-").split("x")
    table = f'policy = "static"\nmax_queue_delay_us = {d}\nmax_batch_size = {n}'
for c in repo.glob("*/config.toml"):
    # Drop the [batching] table (up to the next table header), keep every other table.
    text = re.sub(r"(?ms)^\[batching\]\n.*?(?=^\[)|^\[batching\]\n.*\Z", "", c.read_text())
    c.write_text(text.rstrip() + "\n\n[batching]\n" + table + "\n")
PY
}

for n in $COUNTS; do
  models=()
  for i in $(seq 0 $((n - 1))); do models+=(--model "dlrm-small-$i"); done
  for p in $POLICIES; do
    set_batching "$p"
    nice -n 10 "$BIN_DIR/cohost-bench" --target in-process --lanes 2 --model-repository "$REPO" \
      "${models[@]}" --p99-target "$P99" --search-start 1000 --warmup 0.5 --duration "$DURATION" \
      --search-min-requests 300 --search-retries 1 --no-progress --profile "$OUT/profile-$n.json" \
      --json "$OUT/bench-$p-$n.json" >"$OUT/bench-$p-$n.txt" 2>"$OUT/bench-$p-$n.err"
    grep "^max rate" "$OUT/bench-$p-$n.txt" | sed "s/^/bench $p x$n: /"
  done
done
for n in $COUNTS; do
  model=dlrm-small-0
  [ "$n" = 1 ] || model=dlrm-small
  for p in $POLICIES; do
    set_batching "$p"
    nice -n 10 "$BIN_DIR/cohost-sim" search --profile "$OUT/profile-$n.json" --model "$model" \
      --copies "$n" --model-repository "$REPO" --batching "$p" --p99-target "$P99" \
      --duration "$DURATION" --warmup 0.5 --host-us-per-request "${HOST_US:-0}" | tail -1 | sed "s/^/sim $p x$n: /"
  done
done
