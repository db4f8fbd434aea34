#!/usr/bin/env bash
# The first thing to run when a GPU machine is lent (issue 20): the GPU suite and the
# co-scheduling benchmark, results as JSON + a markdown summary.
#
# The lent machine (docs/CUDA.md § "Running on a lent GPU machine") has CUDA, no Rust
# toolchain and no network, so the work is split in two:
#
#   scripts/gpu-check.sh prepare      # HERE: release-build the server, the harness and the
#                                     # GPU test binaries into gpu-check/bin (git-ignored,
#                                     # stripped, well under the 64 MiB a run may carry)
#   scripts/gpu-check.sh run [OUTDIR] # THERE: run them; OUTDIR defaults to $OUT/gpu-results
#                                     # (the device tool's output folder) or gpu-results/
#
# `run` needs no cargo. It finds libcuda / libnvrtc / libcublas (system paths, /usr/local/cuda,
# or the nvidia-* Python wheels), links CUDA 13's libnvrtc.so.13 / libcublas.so.13 under the
# unversioned names cudarc also looks for, then:
#   1. the GPU suite (kernels/tests/cuda_gpu.rs, nvrtc_compile.rs, models/tests/cuda_dlrm.rs)
#      with COHOST_REQUIRE_CUDA=1,
#      so a missing device fails instead of skipping;
#   2. 8 dlrm-small models co-scheduled in-process on 8 CUDA streams vs 1 stream, and 1 model
#      on 8 vs 1: the harness's max rate under a P99 target (SEARCH_P99_MS, default 5 ms);
#   3. stream priorities on vs off (scripts/lane-priorities.sh): a latency-critical dlrm-small
#      (priority 10, 5% of requests) beside a closed-loop flood on 3 more, 8 lanes (2 of them
#      High: streams at the device's most urgent priority), the critical model's P99 with
#      --lane-priorities on and off (goal: on <= 0.7 x off).
# Budget: under 8 minutes on a 16-core machine (each search is capped by SEARCH_SECONDS).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/gpu-check/bin"
cmd="${1:-}"

prepare() {
    cd "$ROOT"
    grep -qx '/gpu-check/' .git/info/exclude 2>/dev/null || echo '/gpu-check/' >>.git/info/exclude
    cargo build --release -p cohost-server -p cohost-bench
    local tests
    tests="$(cargo test --release -p cohost-kernels -p cohost-models --test cuda_gpu --test nvrtc_compile \
        --test cuda_dlrm --no-run \
        --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])
')"
    rm -rf "$BIN" && mkdir -p "$BIN"
    cp target/release/cohost target/release/cohost-bench "$BIN/"
    while read -r name exe; do cp "$exe" "$BIN/$name"; done <<<"$tests"
    strip "$BIN"/* 2>/dev/null || true
    git rev-parse HEAD >"$BIN/COMMIT"
    du -sh "$BIN"
    echo "carry gpu-check, then: bash scripts/gpu-check.sh run"
}

cuda_libs() {
    local dir="$WORK/lib" found=() dirs=""
    mkdir -p "$dir"
    for lib in nvrtc cublas cublasLt; do
        local so=""
        so="$( (ldconfig -p 2>/dev/null | awk -v l="lib$lib.so" '$1 ~ "^"l {print $NF}';
                find /usr/local/cuda*/ /usr/lib /opt "$ROOT/target/nvrtc" -name "lib$lib.so*" 2>/dev/null;
                python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null |
                    xargs -r -I{} find {} -name "lib$lib.so*") 2>/dev/null | grep -v '\.alt\.' | sort -V | tail -1)" || true
        if [ -n "$so" ]; then
            ln -sf "$so" "$dir/lib$lib.so"
            for v in 12 13; do ln -sf "$so" "$dir/lib$lib.so.$v"; done
            found+=("$lib=$so")
            dirs="${dirs:+$dirs:}$(dirname "$so")" # beside it: libnvrtc-builtins and friends
        fi
    done
    export LD_LIBRARY_PATH="$dir${dirs:+:$dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "${found[*]:-none}"
}

search() { # label lanes models...
    local label="$1" lanes="$2"
    shift 2
    local args=()
    for m in "$@"; do args+=(--model "$m"); done
    timeout "${SEARCH_SECONDS:-90}" "$BIN/cohost-bench" --target in-process --model-repository "$WORK/repo" \
        "${args[@]}" --lanes "$lanes" --p99-target "${SEARCH_P99_MS:-5}" --batch-size 1:0.5,16:0.5 \
        --warmup 0.5 --duration 2 --search-start 500 --search-precision 0.2 --no-progress \
        --json "$RESULTS/$label.json" >"$RESULTS/$label.log" 2>&1 || echo "exit $?" >>"$RESULTS/$label.log"
    grep -h "^max rate\|^no rate\|^exit" "$RESULTS/$label.log" | head -1
}

run() {
    RESULTS="${1:-${OUT:+$OUT/gpu-results}}"
    RESULTS="${RESULTS:-$ROOT/gpu-results}"
    mkdir -p "$RESULTS"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    [ -x "$BIN/cohost" ] || { echo "gpu-check: no $BIN/cohost — run 'scripts/gpu-check.sh prepare' here and carry gpu-check" >&2; exit 2; }
    local summary="$RESULTS/summary.md" t0=$SECONDS
    {
        echo "# GPU check ($(date -u +%F' '%H:%M) UTC, commit $(cat "$BIN/COMMIT" 2>/dev/null || echo unknown))"
        echo
        echo '```'
        nvidia-smi --query-gpu=name,driver_version,memory.total,mig.mode.current,clocks.max.sm --format=csv 2>&1 || true
        nvidia-smi -L 2>&1 || true
        echo '```'
        echo "CUDA libraries linked for cudarc: $(cuda_libs)"
        echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) × $(nproc)"
    } >"$summary"
    cuda_libs >/dev/null
    echo "## 1. GPU suite (COHOST_REQUIRE_CUDA=1)" >>"$summary"
    for t in cuda_gpu nvrtc_compile cuda_dlrm; do
        if COHOST_REQUIRE_CUDA=1 COHOST_REQUIRE_NVRTC=1 timeout 180 "$BIN/$t" --test-threads 1 --nocapture \
            >"$RESULTS/$t.log" 2>&1; then
            echo "- $t: $(grep -h '^test result' "$RESULTS/$t.log" | tail -1)" >>"$summary"
        else
            echo "- $t: FAILED (exit $?) — $(grep -h '^test result\|panicked' "$RESULTS/$t.log" | head -3 | tr '\n' ' ')" >>"$summary"
        fi
    done
    grep -h "^CUDA device" "$RESULTS/cuda_gpu.log" | head -1 >>"$summary" || true
    grep -h "makespan\|overlap" "$RESULTS/cuda_gpu.log" | head -5 | sed 's/^/    /' >>"$summary" || true

    "$BIN/cohost" gen --out "$WORK/repo" --preset dlrm-small --count 8 >/dev/null 2>&1
    local models=(dlrm-small-0 dlrm-small-1 dlrm-small-2 dlrm-small-3 dlrm-small-4 dlrm-small-5 dlrm-small-6 dlrm-small-7)
    {
        echo
        echo "## 2. Co-scheduling: max req/s with P99 <= ${SEARCH_P99_MS:-5} ms (in-process, batch 1 or 16)"
        echo
        echo "| models | 8 streams | 1 stream |"
        echo "|---|---|---|"
        echo "| 8 × dlrm-small | $(search eight-8 8 "${models[@]}") | $(search eight-1 1 "${models[@]}") |"
        echo "| 1 × dlrm-small | $(search one-8 8 dlrm-small-0) | $(search one-1 1 dlrm-small-0) |"
        echo
        echo "## 3. Stream priorities: a priority-10 model (5% of requests) beside a closed-loop flood (64 outstanding), 8 lanes"
        echo
        echo "| lane priorities | critical P99 ms | flood P99 ms (one model) | all req/s |"
        echo "|---|---|---|---|"
        bash "$ROOT/scripts/lane-priorities.sh" "$BIN" "$RESULTS"
        echo
        echo "Took $((SECONDS - t0)) s."
    } >>"$summary"
    cat "$summary"
}

case "$cmd" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) sed -n 2,25p "$0"; exit 2 ;;
esac
