#!/usr/bin/env bash
# Stream priorities on vs off (issue 20 item 3): a latency-critical model (priority 10,
# 5% of requests) beside a closed-loop flood on three models of the same preset, in-process,
# and the critical model's P99 with `--lane-priorities on` and `off`.
#
#   scripts/lane-priorities.sh BIN_DIR OUTDIR   # BIN_DIR holds cohost and cohost-bench
#
# Env: PRIO_PRESET (dlrm-small), PRIO_LANES (8), PRIO_CONCURRENCY (64), PRIO_SECONDS (5).
# Prints one markdown table row per setting: | on/off | critical P99 ms | flood P99 ms | req/s |.
set -euo pipefail
BIN="$1" OUTDIR="$2"
preset="${PRIO_PRESET:-dlrm-small}"
mkdir -p "$OUTDIR"
repo="$(mktemp -d)"
trap 'rm -rf "$repo"' EXIT
"$BIN/cohost" gen --out "$repo" --preset "$preset" --count 4 >/dev/null 2>&1
sed -i 's/^priority = 0$/priority = 10/' "$repo/$preset-0/config.toml"
col() { # model column -> value of that column in the markdown table of a log
    awk -F'|' -v m="$1" -v c="$2" '{gsub(/ /, "", $5)} $5 == m {gsub(/ /, "", $c); print $c}' "$3" | tail -1
}
for setting in on off; do
    log="$OUTDIR/priorities-$setting.log"
    timeout 120 "$BIN/cohost-bench" --target in-process --model-repository "$repo" \
        --model "$preset-0:0.05" --model "$preset-1:0.317" --model "$preset-2:0.317" \
        --model "$preset-3:0.316" --lanes "${PRIO_LANES:-8}" --lane-priorities "$setting" \
        --concurrency "${PRIO_CONCURRENCY:-64}" --batch-size 1:0.5,16:0.5 --warmup 1 \
        --duration "${PRIO_SECONDS:-5}" --no-progress --json "$OUTDIR/priorities-$setting.json" \
        >"$log" 2>&1 || echo "exit $?" >>"$log"
    # p99_ms is the 14th '|'-field of the table (field 1 is empty), throughput the 9th.
    echo "| $setting | $(col "$preset-0" 14 "$log") | $(col "$preset-1" 14 "$log") | $(col '(all)' 9 "$log") |"
done
