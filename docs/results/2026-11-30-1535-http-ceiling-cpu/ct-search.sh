#!/usr/bin/env bash
# Peak searches with the bench client's tokio workers at the default (one per core) vs 1, interleaved.
set -uo pipefail
BIN=/work/main/target/release/cohost
NULL=/work/main/target/release/examples/null_server
OUT=/tmp/s8/ct; mkdir -p $OUT; REPO=/tmp/s8/ceiling/repo
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
$NULL 127.0.0.1:18150 > $OUT/null.log 2>&1 & pids+=($!)
$BIN serve --model-repository /tmp/s8/ceiling/var-adaptive --host 127.0.0.1 --http-port 18170 --grpc-port 18171 --device cpu > $OUT/adaptive.log 2>&1 & pids+=($!)
for p in 18150 18170; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
for r in 1 2; do for s in null:18150 adaptive:18170; do for w in default 1; do
  n=${s%%:*}; p=${s##*:}
  env $([ $w = 1 ] && echo TOKIO_WORKER_THREADS=1) $BIN bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
      --p99-target 10 --search-start 2000 --warmup 0.5 --duration 2 --search-min-requests 300 \
      --search-retries 1 --no-progress --json $OUT/s-$n-$w-r$r.json > /dev/null 2>&1
  python3 -c "
import json; r=json.load(open('$OUT/s-$n-$w-r$r.json'))['search']; b=r.get('best') or {'overall':{'throughput':0,'p99_ms':0,'p50_ms':0}}; o=b['overall']
print(f'search r$r $n workers $w max {o[\"throughput\"]:.0f} req/s p50 {o[\"p50_ms\"]:.2f} p99 {o[\"p99_ms\"]:.2f} first fail {r[\"first_fail\"]}')" | tee -a $OUT/search-summary.txt
done; done; done
