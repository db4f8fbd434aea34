#!/usr/bin/env bash
# Runs every test of the workspace: `cargo test --workspace`, with the peers it can
# provision here first — NVRTC (so every CUDA kernel is compile-checked to PTX without a
# GPU) and Triton's Python client (so wire compatibility is proven by a client this project
# did not write) — and validates the deploy/ manifests (scripts/validate-manifests.sh). Set
# COHOST_SKIP_PEERS=1 to run the Rust tests alone.
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
    # The deploy/ manifests, strictly, against Kubernetes' and KServe's schemas: an invalid
    # manifest fails the run; validators that cannot be installed (3) only warn.
    manifests=0
    bash scripts/validate-manifests.sh || manifests=$?
    if [ "$manifests" = 3 ]; then
        echo "test.sh: the manifest validators could not be installed; deploy/ is unchecked" >&2
    elif [ "$manifests" != 0 ]; then
        echo "test.sh: deploy/ manifests are invalid (scripts/validate-manifests.sh)" >&2
        exit 1
    fi
fi

# No module may import a module that imports it back (issue 17): a cycle fails the run.
python3 scripts/module-cycles.py

cargo test --workspace "$@"
