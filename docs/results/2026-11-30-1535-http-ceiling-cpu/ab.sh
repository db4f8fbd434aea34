#!/usr/bin/env bash
# CPU-aware batching A/B: one binary, adaptive dlrm-small, with and without --fixed-lane-capacity.
# Fixed-rate windows (CPU per request by thread group, rows per batch), then interleaved peak searches.
set -uo pipefail
BIN=${BIN:-/tmp/s8/cohost-new}
OUT=/tmp/s8/ab; mkdir -p $OUT; REPO=/tmp/s8/ceiling/repo; VAR=/tmp/s8/ceiling/var-adaptive
RATES=${RATES:-"4000 6500"}; ROUNDS=${ROUNDS:-2}; WIN=${WIN:-5}; SEARCHES=${SEARCHES:-3}
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
declare -A PID
$BIN serve --model-repository $VAR --host 127.0.0.1 --http-port 18180 --grpc-port 18181 --device cpu --fixed-lane-capacity > $OUT/fixed.log 2>&1 & PID[fixed]=$!; pids+=($!)
$BIN serve --model-repository $VAR --host 127.0.0.1 --http-port 18190 --grpc-port 18191 --device cpu > $OUT/aware.log 2>&1 & PID[aware]=$!; pids+=($!)
for p in 18180 18190; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
sleep 2
threads() { for t in /proc/$1/task/*; do awk '{sub(/^[0-9]+ \(/,""); split($0,a,") "); split(a[2],f," "); print a[1], f[12]+f[13]}' $t/stat 2>/dev/null; done; }
stat() { curl -sf http://127.0.0.1:$1/v2/models/stats; }
for rate in $RATES; do for r in $(seq $ROUNDS); do
  for s in fixed:18180 aware:18190; do
    n=${s%%:*}; p=${s##*:}
    /tmp/s8/cohost-new bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
      --rate $rate --warmup 1 --duration $WIN --no-progress --json $OUT/w.json >/dev/null 2>&1 &
    bp=$!
    sleep 1; threads ${PID[$n]} > $OUT/t0.txt; threads $bp > $OUT/b0.txt; stat $p > $OUT/s0.json
    sleep $((WIN-1))
    threads ${PID[$n]} > $OUT/t1.txt; threads $bp > $OUT/b1.txt; stat $p > $OUT/s1.json
    cap=$(curl -sf http://127.0.0.1:$p/metrics | awk '/^cohost_lane_capacity/ {print $2}')
    wait $bp
    python3 - $OUT $n $r $rate $((WIN-1)) "${cap:-2}" <<'PY' | tee -a $OUT/summary.txt
import json, sys, collections, os
out, n, r, rate, win, cap = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
hz = os.sysconf("SC_CLK_TCK")
def load(f):
    d = collections.Counter()
    for line in open(f"{out}/{f}"):
        name, t = line.rsplit(" ", 1); d["lanes" if "lane" in name else "io"] += int(t)
    return d
def diff(a, b):
    a, b = load(a), load(b); return {k: (b[k] - a.get(k, 0)) / hz * 1e6 / (rate * win) for k in b}
s, c = diff("t0.txt", "t1.txt"), diff("b0.txt", "b1.txt")
def st(f): return {m["name"]: m for m in json.load(open(f"{out}/{f}"))["model_stats"]}
a, b = st("s0.json"), st("s1.json")
rows = sum(m["inference_count"] - a[k]["inference_count"] for k, m in b.items())
batches = sum(m["execution_count"] - a[k]["execution_count"] for k, m in b.items())
o = json.load(open(f"{out}/w.json"))["overall"]
print(f"rate {rate:5.0f} r{r} {n:<6} answered {o['throughput']:6.0f} p50 {o['p50_ms']:5.2f} p99 {o['p99_ms']:6.2f} | rows/batch {rows/max(batches,1):5.2f} capacity {float(cap):4.2f} | server us/req lanes {s.get('lanes',0):5.1f} io {s.get('io',0):5.1f} | client {sum(c.values()):5.1f}")
PY
  done
done; done
for r in $(seq $SEARCHES); do
  for s in fixed:18180 aware:18190; do
    n=${s%%:*}; p=${s##*:}
    /tmp/s8/cohost-new bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
      --p99-target 10 --search-start 2000 --warmup 0.5 --duration 2 --search-min-requests 300 \
      --search-retries 1 --no-progress --json $OUT/$n-search-r$r.json > $OUT/$n-search-r$r.txt 2>&1
    python3 -c "
import json; r=json.load(open('$OUT/$n-search-r$r.json'))['search']; b=r.get('best') or {'overall':{'throughput':0,'p99_ms':0,'p50_ms':0}}; o=b['overall']
sv=(b.get('server') or [{}])[0]
print(f'search r$r $n max {o[\"throughput\"]:.0f} req/s p50 {o[\"p50_ms\"]:.2f} p99 {o[\"p99_ms\"]:.2f} first fail {r[\"first_fail\"]} rows/batch {sv.get(\"rows_per_batch\",0):.2f}')" | tee -a $OUT/summary.txt
  done
done
