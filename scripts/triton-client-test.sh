#!/usr/bin/env bash
# Proves KServe v2 compatibility with a client this project did not write: Triton's
# Python client (tritonclient 2.51.0) over HTTP and gRPC against a real `cohost serve`.
#
# From a clean clone: creates a virtual environment (reused when it already has
# tritonclient), builds the server, generates a tiny repository (mlp-tiny + dlrm-tiny),
# starts `cohost serve` on free loopback ports and runs scripts/python/test_tritonclient.py.
#
# Environment:
#   COHOST_TRITON_VENV  venv folder (default: target/triton-venv)
#   COHOST_BIN          a prebuilt cohost binary (default: cargo build, target/debug/cohost)
#   PYTHON              interpreter used to create the venv (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/python/triton_common.sh"

triton_venv
cohost_bin

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohost-triton.XXXXXX")"
trap 'stop_cohost; rm -rf "$WORK"' EXIT
generate_tiny_repository "$WORK/repo"
start_cohost "$WORK/repo" "$WORK/server.log"

echo "== tritonclient $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tritonclient"))') against cohost (HTTP $HTTP_ADDR, gRPC $GRPC_ADDR)"
"$VENV/bin/python" "$ROOT/scripts/python/test_tritonclient.py" \
  --http "$HTTP_ADDR" --grpc "$GRPC_ADDR" --repository "$WORK/repo"
