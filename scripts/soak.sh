#!/usr/bin/env bash
# Soak (issue 18 item 8): one `cohost serve` with a mix of models (mlp-tiny, dlrm-tiny,
# mlp-small) under open-loop load at ~70% of the capacity measured first, for MINUTES
# minutes (default 10). Each minute prints the server's RSS, the Prometheus series count,
# the minute's errors and its P99, and at the end the RSS growth after the first minute
# (warm-up) and the total errors. Exit status 1 when any request failed or RSS grew 5% or
# more after warm-up.
#
#   scripts/soak.sh          # 10 minutes
#   scripts/soak.sh 2        # 2 minutes
#
# Environment (defaults in brackets):
#   PROFILE     cargo profile of the binaries: debug or release [debug]; built unless NO_BUILD=1
#   LOAD        fraction of the measured capacity offered [0.7]
#   TARGET      http-json, http-binary or grpc [http-json]
#   PORT        HTTP port; gRPC is PORT+1 [18400]
#   OUT         folder for the repository, logs and per-minute JSON [target/soak]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES="${1:-10}"
PROFILE="${PROFILE:-debug}"
LOAD="${LOAD:-0.7}"
TARGET="${TARGET:-http-json}"
PORT="${PORT:-18400}"
OUT="${OUT:-$ROOT/target/soak}"
BIN="$ROOT/target/$PROFILE"
MODELS=(--model mlp-tiny:2 --model dlrm-tiny:2 --model mlp-small:1)

if [ "${NO_BUILD:-0}" != 1 ]; then
  flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  cargo build "${flag[@]}" -p cohost-server -p cohost-bench
fi

rm -rf "$OUT"
mkdir -p "$OUT"
for preset in mlp-tiny dlrm-tiny mlp-small; do
  "$BIN/cohost" gen --out "$OUT/repo" --preset "$preset" --seed 7 >/dev/null
done

"$BIN/cohost" serve --model-repository "$OUT/repo" --http-port "$PORT" \
  --grpc-port $((PORT + 1)) --device cpu >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
URL="http://127.0.0.1:$PORT"
[ "$TARGET" = grpc ] && BENCH_URL="http://127.0.0.1:$((PORT + 1))" || BENCH_URL="$URL"
for _ in $(seq 600); do
  curl -sf "$URL/v2/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "$URL/v2/health/ready" >/dev/null || { echo "soak: the server did not start" >&2; cat "$OUT/server.log" >&2; exit 1; }

bench() {
  "$BIN/cohost-bench" --target "$TARGET" --url "$BENCH_URL" --model-repository "$OUT/repo" \
    "${MODELS[@]}" --no-progress "$@" >/dev/null
}
field() { # FILE EXPR: a number from a bench JSON report
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER/status"; }
series() { curl -sf "$URL/metrics" | grep -vc '^#'; }

echo "== capacity: 8 closed-loop clients, 20 s"
bench --concurrency 8 --warmup 3 --duration 20 --json "$OUT/capacity.json"
CAPACITY=$(field "$OUT/capacity.json" "r['overall']['throughput']")
RATE=$(python3 -c "print(round($CAPACITY * $LOAD, 1))")
echo "capacity $CAPACITY req/s; offering $RATE req/s ($LOAD) for $MINUTES minute(s)"
echo "started $(date -u +%FT%TZ) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

printf '%6s %10s %8s %8s %8s %9s %9s\n' minute rss_MiB series ok errors p99_ms req_per_s
FIRST_RSS=""
LAST_RSS=""
ERRORS=0
for m in $(seq 1 "$MINUTES"); do
  bench --rate "$RATE" --warmup 0 --duration 60 --json "$OUT/minute-$m.json"
  rss=$(rss_kib)
  n=$(series)
  ok=$(field "$OUT/minute-$m.json" "r['overall']['ok']")
  errors=$(field "$OUT/minute-$m.json" "r['overall']['errors']")
  p99=$(field "$OUT/minute-$m.json" "round(r['overall']['p99_ms'], 2)")
  thr=$(field "$OUT/minute-$m.json" "round(r['overall']['throughput'], 1)")
  printf '%6s %10.1f %8s %8s %8s %9s %9s\n' "$m" "$(echo "$rss / 1024" | bc -l)" "$n" "$ok" "$errors" "$p99" "$thr"
  [ -z "$FIRST_RSS" ] && FIRST_RSS=$rss
  LAST_RSS=$rss
  ERRORS=$((ERRORS + errors))
done

GROWTH=$(python3 -c "print(round(100 * ($LAST_RSS - $FIRST_RSS) / $FIRST_RSS, 2))")
echo "RSS after warm-up (minute 1) $((FIRST_RSS / 1024)) MiB, at the end $((LAST_RSS / 1024)) MiB: growth $GROWTH%; errors $ERRORS"
echo "finished $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"

kill -TERM "$SERVER"
wait "$SERVER" || true
trap - EXIT
python3 -c "import sys; sys.exit(0 if $ERRORS == 0 and $GROWTH < 5 else 1)"
