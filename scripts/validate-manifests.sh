#!/usr/bin/env bash
# Validates every Kubernetes and KServe object under deploy/, strictly (an unknown or
# misspelt field fails): Kubernetes' kinds with kubernetes-validate's strict schemas
# (Kubernetes 1.30 and 1.37), KServe's with the kserve package's own models, the
# ServiceMonitor with the Prometheus Operator's CRD models; then a self-test that
# validates deliberately broken copies of deploy/ and requires each to fail.
# See scripts/python/validate_manifests.py and docs/DEPLOY.md § Validation.
#
# From a clean clone: creates a virtual environment (reused when it already has the pinned
# versions; creating it took 62 s and 570 MB here, most of it kserve's dependencies).
#
# Exit status: 0 all valid and the self-test passed; 1 a manifest is invalid or the
# self-test failed; 3 the validators could not be installed (nothing was checked).
#
# Environment:
#   COHOST_DEPLOY_VENV  venv folder (default: target/deploy-venv)
#   PYTHON              interpreter used to create the venv (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COHOST_DEPLOY_VENV:-$ROOT/target/deploy-venv}"
# Versions that install together on CPython 3.11 (pip check is clean).
PINS=(
  "kubernetes-validate==1.37.0"
  "kserve==0.21.0"
  "cloudcoil-models-prometheus-operator==0.80.1.0"
)

# True when the venv has exactly the pinned versions.
venv_current() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "${PINS[@]}" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    if m.version(name) != version:
        sys.exit(1)
PY
}

if ! venv_current; then
  echo "== creating $VENV with ${PINS[*]}"
  start=$SECONDS
  if ! { "${PYTHON:-python3}" -m venv "$VENV" &&
    "$VENV/bin/python" -m pip install -q --upgrade pip &&
    "$VENV/bin/python" -m pip install -q "${PINS[@]}"; }; then
    echo "validate-manifests: cannot install ${PINS[*]}; nothing was validated" >&2
    exit 3
  fi
  echo "== installed in $((SECONDS - start)) s"
fi

cd "$ROOT"
echo "== validating deploy/"
"$VENV/bin/python" scripts/python/validate_manifests.py --repo "$ROOT" deploy
echo "== self-test: broken copies of deploy/ must fail"
"$VENV/bin/python" scripts/python/validate_manifests.py --repo "$ROOT" --self-test deploy
