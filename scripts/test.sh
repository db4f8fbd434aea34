#!/usr/bin/env bash
# Runs every test of the workspace: `cargo test --workspace`, with the peers it can
# provision here first — NVRTC (so every CUDA kernel is compile-checked to PTX without a
# GPU) and Triton's Python client (so wire compatibility is proven by a client this project
# did not write). Set COHOST_SKIP_PEERS=1 to run the Rust tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${COHOST_SKIP_PEERS:-0}" != 1 ]; then
    if nvrtc_dir="$(bash scripts/install-nvrtc.sh)"; then
        export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export COHOST_REQUIRE_NVRTC=1
    else
        echo "test.sh: NVRTC could not be installed; the kernel compile test will skip" >&2
    fi
    if [ -f scripts/triton-client-test.sh ] && [ "${COHOST_TRITON_TESTS:-1}" = 1 ]; then
        export COHOST_TRITON_TESTS=1
    fi
fi

cargo test --workspace "$@"
