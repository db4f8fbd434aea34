#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (issue 18): `scripts/fuzz.sh [TARGET|all] [SECONDS]`,
# default every target for 20 s each. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`); exits 3 without them. Each target starts from its committed
# corpus (fuzz/corpus/TARGET, read only) plus a scratch corpus under target/fuzz/corpus that
# keeps what earlier runs found. Crashing inputs land in fuzz/artifacts/TARGET; any crash
# fails the run. One summary line per target: `fuzz: TARGET: N execs in S s, C crashes`.
#
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-jobs=2);
# FUZZ_NICE (default 10) is the niceness the fuzzers run at.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:-all}"
seconds="${2:-20}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 3
fi
dir="$PWD/target/fuzz"
targets=$(cargo +nightly fuzz list --fuzz-dir fuzz)
if [ "$target" != all ]; then
    if ! grep -qx "$target" <<<"$targets"; then
        echo "fuzz.sh: no target '$target' (known: $(echo $targets))" >&2
        exit 2
    fi
    targets="$target"
fi

if [ "$target" = all ]; then
    nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$dir"
else
    nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$dir" "$target"
fi

failed=0
for t in $targets; do
    mkdir -p "$dir/corpus/$t" "fuzz/artifacts/$t"
    log="$dir/$t.log"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    rc=0
    # shellcheck disable=SC2086
    nice -n "${FUZZ_NICE:-10}" cargo +nightly fuzz run --fuzz-dir fuzz --target-dir "$dir" \
        "$t" "$dir/corpus/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
    echo "fuzz: $t: ${execs:-?} execs in ${secs:-?} s, $crashes crashes"
    if [ "$rc" != 0 ]; then
        failed=1
        echo "fuzz.sh: $t failed (exit $rc); the end of $log:" >&2
        tail -40 "$log" >&2
    fi
done
exit "$failed"
