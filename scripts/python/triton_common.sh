# Shell helpers shared by scripts/triton-client-test.sh and scripts/perf-analyzer.sh
# (sourced, not run): the tritonclient venv, the cohost binary, a tiny repository, a server.
# Expects ROOT to be the repository root.

TRITONCLIENT_VERSION=2.51.0
VENV="${COHOST_TRITON_VENV:-$ROOT/target/triton-venv}"
COHOST_PID=""

# Creates (or reuses) the venv with tritonclient[all]==2.51.0 and numpy.
triton_venv() {
  local py="${PYTHON:-python3}"
  if [ -x "$VENV/bin/python" ] &&
    "$VENV/bin/python" -c "import tritonclient.grpc, tritonclient.http, numpy" 2>/dev/null &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tritonclient"))')" = "$TRITONCLIENT_VERSION" ]; then
    return
  fi
  echo "== creating $VENV with tritonclient[all]==$TRITONCLIENT_VERSION"
  "$py" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "tritonclient[all]==$TRITONCLIENT_VERSION" numpy
  if ! "$VENV/bin/python" -c "import tomllib" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q tomli
  fi
}

# Sets COHOST to a built cohost binary.
cohost_bin() {
  if [ -n "${COHOST_BIN:-}" ]; then
    COHOST="$COHOST_BIN"
  else
    echo "== cargo build -p cohost-server"
    (cd "$ROOT" && cargo build -q -p cohost-server)
    COHOST="$ROOT/target/debug/cohost"
  fi
}

# A free loopback TCP port.
free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Generates one mlp-tiny and one dlrm-tiny model into $1.
generate_tiny_repository() {
  "$COHOST" gen --out "$1" --preset mlp-tiny --seed 7 >/dev/null
  "$COHOST" gen --out "$1" --preset dlrm-tiny --seed 11 >/dev/null
}

# Starts `cohost serve` on repository $1 (log $2) on free ports; sets HTTP_ADDR, GRPC_ADDR.
# Extra arguments are passed to `cohost serve`.
start_cohost() {
  local repo="$1" log="$2"
  shift 2
  local http grpc
  http="$(free_port)"
  grpc="$(free_port)"
  while [ "$grpc" = "$http" ]; do grpc="$(free_port)"; done
  HTTP_ADDR="127.0.0.1:$http"
  GRPC_ADDR="127.0.0.1:$grpc"
  "$COHOST" serve --model-repository "$repo" --host 127.0.0.1 --http-port "$http" \
    --grpc-port "$grpc" --device cpu --lanes "${COHOST_LANES:-2}" "$@" >"$log" 2>&1 &
  COHOST_PID=$!
  for _ in $(seq 1 300); do
    if "$VENV/bin/python" - "$HTTP_ADDR" <<'EOF' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/v2/health/ready", timeout=1).read()
EOF
      return
    fi
    if ! kill -0 "$COHOST_PID" 2>/dev/null; then
      echo "cohost serve exited early:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo "cohost serve did not become ready in 60 s:" >&2
  cat "$log" >&2
  exit 1
}

# Stops the server started by start_cohost (SIGTERM: graceful) and waits for it.
stop_cohost() {
  if [ -n "$COHOST_PID" ] && kill -0 "$COHOST_PID" 2>/dev/null; then
    kill -TERM "$COHOST_PID" 2>/dev/null || true
    wait "$COHOST_PID" 2>/dev/null || true
  fi
  COHOST_PID=""
}
