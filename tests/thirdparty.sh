#!/usr/bin/env bash
# Third-party client conformance checks for rcsim: real Rocket.Chat client libraries
# (pypi rocketchat_API + rocketchat-async, npm @rocket.chat/ddp-client) against the
# rcsim binary. See tests/py and tests/js.
#
# Usage: tests/thirdparty.sh            (from anywhere; paths are relative to the repo root)
# Env:   RCSIM_BIN   rcsim binary (default target/debug/rcsim, relative to the repo root)
#        PYTHON      python used to create the venv (default python3)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

RCSIM_BIN="${RCSIM_BIN:-target/debug/rcsim}"
case "$RCSIM_BIN" in
  /*) ;;
  *) RCSIM_BIN="$REPO_ROOT/$RCSIM_BIN" ;;
esac
if [[ ! -x "$RCSIM_BIN" ]]; then
  echo "thirdparty.sh: rcsim binary not found or not executable: $RCSIM_BIN" >&2
  echo "thirdparty.sh: build it first (cargo build -p rcsim) or set RCSIM_BIN" >&2
  exit 1
fi
export RCSIM_BIN

VENV="$REPO_ROOT/target/venv-thirdparty"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "==> creating venv $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
echo "==> pip install -r tests/py/requirements.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r tests/py/requirements.txt

# Run both suites even if the first fails, so one run reports every deviation.
py_rc=0
echo "==> pytest tests/py (rcsim: $RCSIM_BIN)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/py || py_rc=$?

js_rc=0
echo "==> node --test tests/js"
cd "$REPO_ROOT/tests/js"
npm ci --no-audit --no-fund
node --test || js_rc=$?

if (( py_rc != 0 || js_rc != 0 )); then
  echo "thirdparty.sh: FAILED (pytest exit $py_rc, node --test exit $js_rc)" >&2
  exit 1
fi
echo "thirdparty.sh: all third-party client checks passed"
