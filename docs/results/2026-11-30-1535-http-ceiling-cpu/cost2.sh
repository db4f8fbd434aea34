#!/usr/bin/env bash
# CPU per request by thread group (client, server I/O threads, lanes) at fixed rates:
# null server vs cohost none / adaptive, dlrm-small batch-1 requests over HTTP JSON.
set -uo pipefail
BIN=${BIN:-/work/main/target/release/cohost}
NULL=/work/main/target/release/examples/null_server
OUT=/tmp/s8/ceiling; REPO=$OUT/repo
RATES=${RATES:-"2000 6000"}; ROUNDS=${ROUNDS:-2}; WIN=${WIN:-5}
pids=()
trap 'kill ${pids[@]} 2>/dev/null' EXIT
declare -A PID
$NULL 127.0.0.1:18150 > $OUT/null.log 2>&1 & PID[null]=$!; pids+=($!)
$BIN serve --model-repository $OUT/var-none --host 127.0.0.1 --http-port 18160 --grpc-port 18161 --device cpu > $OUT/none.log 2>&1 & PID[none]=$!; pids+=($!)
$BIN serve --model-repository $OUT/var-adaptive --host 127.0.0.1 --http-port 18170 --grpc-port 18171 --device cpu > $OUT/adaptive.log 2>&1 & PID[adaptive]=$!; pids+=($!)
for p in 18150 18160 18170; do for i in $(seq 100); do curl -sf http://127.0.0.1:$p/v2/health/ready >/dev/null && break; sleep 0.3; done; done
sleep 2
# threads PID: "name ticks" per thread (utime+stime, clock ticks)
threads() { for t in /proc/$1/task/*; do awk '{sub(/^[0-9]+ \(/,""); split($0,a,") "); split(a[2],f," "); print a[1], f[12]+f[13]}' $t/stat 2>/dev/null; done; }
for rate in $RATES; do for r in $(seq $ROUNDS); do
  for s in null:18150 none:18160 adaptive:18170; do
    n=${s%%:*}; p=${s##*:}
    $BIN bench --target http-json --url http://127.0.0.1:$p --model-repository $REPO --model dlrm-small \
      --rate $rate --warmup 1 --duration $WIN --no-progress --json $OUT/c2.json >/dev/null 2>&1 &
    bp=$!
    sleep 1; threads ${PID[$n]} > $OUT/t0.txt; threads $bp > $OUT/b0.txt
    [ -n "${PERF:-}" ] && [ "$n" != null ] && perf record -F 1999 -g -p ${PID[$n]} -o $OUT/perf-$n-$rate.data -- sleep $((WIN-1)) >/dev/null 2>&1 || sleep $((WIN-1))
    threads ${PID[$n]} > $OUT/t1.txt; threads $bp > $OUT/b1.txt
    wait $bp
    python3 - $OUT $n $r $rate $((WIN-1)) <<'PY'
import json, sys, collections, os
out, n, r, rate, win = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
hz = os.sysconf("SC_CLK_TCK")
def load(f):
    d = collections.Counter()
    for line in open(f"{out}/{f}"):
        name, t = line.rsplit(" ", 1); d[name.split("-")[0] + ("-lane" if "lane" in name else "")] += int(t)
    return d
def diff(a, b):
    a, b = load(a), load(b); return {k: (b[k] - a.get(k, 0)) / hz * 1e6 / (rate * win) for k in b}
s, c = diff("t0.txt", "t1.txt"), diff("b0.txt", "b1.txt")
o = json.load(open(f"{out}/c2.json"))["overall"]
sv = " ".join(f"{k} {v:5.1f}" for k, v in sorted(s.items()) if v > 0.5)
print(f"rate {rate:5.0f} r{r} {n:<8} p50 {o['p50_ms']:5.2f} p99 {o['p99_ms']:6.2f} | server us/req: total {sum(s.values()):5.1f} [{sv}] | client {sum(c.values()):5.1f}")
PY
  done
done; done
