#!/usr/bin/env bash
# Writes the `cohost import` test fixtures (models/tests/fixtures/import/) from the real
# PyTorch code: a virtualenv with torch (PyPI's build; it runs on the CPU), TorchRec and
# FBGEMM's CPU build, then scripts/python/make_import_fixtures.py. The reference DLRM
# (dlrm_s_pytorch.py) is not a package: the Python rebuilds its DLRM_Net with torch.nn
# under the same module names; TorchRec's DLRM and DLRM_DCN are TorchRec's own classes.
# CI does not run this: the fixtures are committed, and the Rust tests need no torch.
#
#   scripts/make-import-fixtures.sh [OUT_DIR]
# VENV (default target/torch-venv, ignored by git) is where the virtualenv goes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-target/torch-venv}
OUT=${1:-models/tests/fixtures/import}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# FBGEMM's wheels are built against one torch release and do not load with another, and
# torchrec pulls in fbgemm-gpu (the CUDA build, which needs libnvidia-ml to load) that
# shares the fbgemm_gpu folder with fbgemm-gpu-cpu: pin the pair, keep the CPU build alone.
TORCH=${TORCH:-2.14.1}
FBGEMM=${FBGEMM:-1.9.0}
TORCHREC=${TORCHREC:-1.9.2}
if ! "$VENV/bin/python" -c 'import torch, torchrec, safetensors' 2>/dev/null; then
  "$VENV/bin/pip" install --no-cache-dir "torch==$TORCH" "torchrec==$TORCHREC" safetensors
  "$VENV/bin/pip" uninstall -y fbgemm-gpu fbgemm-gpu-cpu
  "$VENV/bin/pip" install --no-cache-dir --no-deps "fbgemm-gpu-cpu==$FBGEMM"
fi
"$VENV/bin/python" scripts/python/make_import_fixtures.py "$OUT"
