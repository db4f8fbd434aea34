#!/usr/bin/env bash
# The bench client's tokio workers: default (one per core) vs TOKIO_WORKER_THREADS=1, against the null server
# and cohost adaptive at fixed rates; client CPU per request (whole bench process), pacer lateness, p50/p99.
set -uo pipefail
BIN=/work/main/target/release/cohost
NULL=/work/main/target/release/examples/null_server
OUT=/tmp/s8/ct; mkdir -p $OUT; REPO=/tmp/s8/ceiling/repo
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
$NULL 127.0.0.1:18150 > $OUT/null.log 2>&1 & pids+=($!)
$BIN serve --model-repository /tmp/s8/ceiling/var-adaptive --host 127.0.0.1 --http-port 18170 --grpc-port 18171 --device cpu > $OUT/adaptive.log 2>&1 & pids+=($!)
for p in 18150 18170; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
for rate in ${RATES:-6000}; do for r in 1 2 3; do for s in null:18150 adaptive:18170; do for w in default 1; do
  n=${s%%:*}; p=${s##*:}
  env $([ $w = 1 ] && echo TOKIO_WORKER_THREADS=1) perf stat -e task-clock,context-switches -o $OUT/perf.txt -- \
    $BIN bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
    --rate $rate --warmup 1 --duration 5 --no-progress --json $OUT/w.json >/dev/null 2>&1
  python3 - $OUT $n $w $r $rate <<'PY' | tee -a $OUT/summary.txt
import json, re, sys
out, n, w, r, rate = sys.argv[1:6]
t = open(f"{out}/perf.txt").read()
c = lambda k: float(re.search(r"([\d,.]+)\s+(?:msec\s+)?" + k, t).group(1).replace(",", ""))
j = json.load(open(f"{out}/w.json")); o = j["overall"]; l = j.get("send_lateness") or {}
req = float(rate) * 6
print(f"rate {rate} r{r} {n:<8} workers {w:<7} p50 {o['p50_ms']:5.2f} p99 {o['p99_ms']:6.2f} ms | lateness p50 {l.get('p50_us',0):5.0f} p99 {l.get('p99_us',0):6.0f} us | client {c('task-clock')*1000/req:5.1f} us/req {c('context-switches')/req:4.2f} cs/req")
PY
done; done; done; done
