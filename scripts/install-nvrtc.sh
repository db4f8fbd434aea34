#!/usr/bin/env bash
# Installs NVRTC (the CUDA run-time compiler) from the PyPI wheel `nvidia-cuda-nvrtc-cu12`
# into target/nvrtc, so the NVRTC compile test can turn every kernel in kernels/cuda/ into
# PTX on a machine with no GPU and no CUDA toolkit.
#
# Usage:
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
#   COHOST_REQUIRE_NVRTC=1 cargo test -p cohost-kernels --test nvrtc_compile
#
# stdout: exactly one line, the directory holding libnvrtc.so.12 (for LD_LIBRARY_PATH).
# stderr: progress, and the `export` line to copy.
# Idempotent: when the library is already there it only prints the directory.
#
# Environment:
#   COHOST_NVRTC_DIR      install folder (default: <repo>/target/nvrtc)
#   COHOST_NVRTC_VERSION  pip version spec (default: 12.8.*, matching cudarc's cuda-12080)
#   PYTHON                the Python used to run pip (default: python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${COHOST_NVRTC_DIR:-$repo/target/nvrtc}"
version="${COHOST_NVRTC_VERSION:-12.8.*}"
python="${PYTHON:-python3}"
libdir="$dest/nvidia/cuda_nvrtc/lib"

if [ ! -e "$libdir/libnvrtc.so.12" ]; then
    echo "install-nvrtc: installing nvidia-cuda-nvrtc-cu12==$version into $dest" >&2
    mkdir -p "$dest"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --upgrade \
        --target "$dest" "nvidia-cuda-nvrtc-cu12==$version" >&2
fi

if [ ! -e "$libdir/libnvrtc.so.12" ]; then
    echo "install-nvrtc: libnvrtc.so.12 not found under $libdir after install" >&2
    exit 1
fi

# cudarc's dynamic loader tries libnvrtc.so first and libnvrtc.so.12 later; the wheel ships
# only the versioned name. The versioned name is enough, but a plain symlink also serves
# tools that ask for the unversioned one.
if [ ! -e "$libdir/libnvrtc.so" ]; then
    ln -s libnvrtc.so.12 "$libdir/libnvrtc.so"
fi

echo "install-nvrtc: ready; use: export LD_LIBRARY_PATH=\"$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"" >&2
echo "$libdir"
