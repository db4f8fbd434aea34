#!/usr/bin/env bash
# Runs every test of the workspace: `cargo test --workspace`, with the peers it can
# provision here first — NVRTC (so every CUDA kernel is compile-checked to PTX without a
# GPU), Triton's Python client (so wire compatibility is proven by a client this project
# did not write) and xds-protos (so are the ORCA load reports) — and validates the deploy/ manifests (scripts/validate-manifests.sh). Set
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
    # ORCA reports decoded by Python's xds-protos (tests/tests/orca_xds_protos.rs).
    export COHOST_ORCA_TESTS="${COHOST_ORCA_TESTS:-1}"
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

# The fuzz targets (fuzz/, issue 18): a short run of each, so that a decoder regression
# shows up; where nightly or cargo-fuzz is missing the step is skipped, and says so.
# A new machine has nightly but not cargo-fuzz: install it (a few minutes) so that CI runs
# the targets; if that fails the step is skipped below, and says so.
if [ "${COHOST_SKIP_FUZZ:-0}" != 1 ] && cargo +nightly --version >/dev/null 2>&1 \
    && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz >&2 || echo "test.sh: cargo-fuzz could not be installed" >&2
fi
if [ "${COHOST_SKIP_FUZZ:-0}" = 1 ]; then
    echo "test.sh: COHOST_SKIP_FUZZ=1; the fuzz targets are not run" >&2
elif cargo +nightly fuzz --version >/dev/null 2>&1; then
    bash scripts/fuzz.sh all "${COHOST_FUZZ_SECONDS:-10}"
else
    echo "test.sh: SKIPPED the fuzz targets: the nightly toolchain or cargo-fuzz is missing (cargo install cargo-fuzz)" >&2
fi

cargo test --workspace "$@"
