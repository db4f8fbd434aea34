#!/usr/bin/env bash
# CPU per request of server and client at a fixed rate: null server vs cohost none/adaptive.
set -uo pipefail
BIN=${BIN:-/work/main/target/release/cohost}
NULL=/work/main/target/release/examples/null_server
OUT=/tmp/s8/ceiling; REPO=$OUT/repo
RATE=${RATE:-5000}; ROUNDS=${ROUNDS:-2}
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
declare -A PID
$NULL 127.0.0.1:18150 > $OUT/null.log 2>&1 & PID[null]=$!; pids+=($!)
$BIN serve --model-repository $OUT/var-none --host 127.0.0.1 --http-port 18160 --grpc-port 18161 --device cpu > $OUT/none.log 2>&1 & PID[none]=$!; pids+=($!)
$BIN serve --model-repository $OUT/var-adaptive --host 127.0.0.1 --http-port 18170 --grpc-port 18171 --device cpu > $OUT/adaptive.log 2>&1 & PID[adaptive]=$!; pids+=($!)
for p in 18150 18160 18170; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
sleep 2
for r in $(seq $ROUNDS); do
  for s in null:18150 none:18160 adaptive:18170; do
    n=${s%%:*}; p=${s##*:}
    perf stat -e task-clock,context-switches -p ${PID[$n]} -o $OUT/perf-s.txt -- sleep 6 >/dev/null 2>&1 &
    pp=$!
    perf stat -e task-clock,context-switches -o $OUT/perf-c.txt -- $BIN bench --target http-json --url http://127.0.0.1:$p \
      --model-repository $REPO --model dlrm-small --rate $RATE --warmup 1 --duration 5 --no-progress --json $OUT/cost.json >/dev/null 2>&1
    wait $pp
    python3 - $OUT $n $r $RATE <<'PY'
import json, re, sys
out, n, r, rate = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def c(f, name):
    m = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + name, open(f).read()); return float(m.group(1).replace(",", "")) if m else float("nan")
o = json.load(open(f"{out}/cost.json"))["overall"]
req = rate * 6
print(f"r{r} {n:<9} answered {o['throughput']:7.0f}/s p50 {o['p50_ms']:5.2f} p99 {o['p99_ms']:6.2f}  server {c(out+'/perf-s.txt','task-clock')*1000/req:6.1f} us/req {c(out+'/perf-s.txt','context-switches')/req:4.2f} cs/req  client {c(out+'/perf-c.txt','task-clock')*1000/req:6.1f} us/req {c(out+'/perf-c.txt','context-switches')/req:4.2f} cs/req")
PY
  done
done
