#!/usr/bin/env bash
# (a) ceiling: the null server (no work) vs cohost none / adaptive, dlrm-small batch-1
# requests, HTTP JSON, P99 <= 10 ms, interleaved peak searches.
set -uo pipefail
BIN=/work/main/target/release/cohost
NULL=/work/main/target/release/examples/null_server
OUT=/tmp/s8/ceiling; mkdir -p $OUT
REPO=$OUT/repo
[ -f $REPO/.done ] || { rm -rf $REPO; $BIN gen --out $REPO --preset dlrm-small --count 1 --rows 20000 >/dev/null && touch $REPO/.done; }
mk() { # name policy-lines
  local d=$OUT/var-$1; rm -rf $d; mkdir -p $d/dlrm-small
  for v in $REPO/dlrm-small/*/; do ln -s "$v" $d/dlrm-small/$(basename $v); done
  sed -e '/^max_queue_delay_us = 500$/d' -e "s/^policy = \"static\"$/$2/" $REPO/dlrm-small/config.toml > $d/dlrm-small/config.toml
  echo $d
}
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
$NULL 127.0.0.1:18150 > $OUT/null.log 2>&1 & pids+=($!)
$BIN serve --model-repository $(mk none 'policy = "none"') --host 127.0.0.1 --http-port 18160 --grpc-port 18161 --device cpu > $OUT/none.log 2>&1 & pids+=($!)
$BIN serve --model-repository $(mk adaptive 'policy = "adaptive"\np99_target_ms = 10') --host 127.0.0.1 --http-port 18170 --grpc-port 18171 --device cpu > $OUT/adaptive.log 2>&1 & pids+=($!)
for p in 18150 18160 18170; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
for r in 1 2 3; do
  for s in null:18150 none:18160 adaptive:18170; do
    n=${s%%:*}; p=${s##*:}
    $BIN bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
      --p99-target 10 --search-start 2000 --warmup 0.5 --duration 2 --search-min-requests 300 \
      --search-retries 1 --no-progress --json $OUT/$n-r$r.json > $OUT/$n-r$r.txt 2>$OUT/$n-r$r.err
    python3 -c "
import json,sys; r=json.load(open('$OUT/$n-r$r.json'))['search']; b=r.get('best') or {'overall':{'throughput':0,'p99_ms':0,'p50_ms':0}}; o=b['overall']
print(f'r$r $n max {o[\"throughput\"]:.0f} req/s p50 {o[\"p50_ms\"]:.2f} p99 {o[\"p99_ms\"]:.2f} first fail {r[\"first_fail\"]}  load {open(\"/proc/loadavg\").read().split()[0]}')" | tee -a $OUT/summary.txt
  done
done
