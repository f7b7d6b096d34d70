#!/usr/bin/env bash
# Create .venv and install reclm_nb into it (editable). `bash scripts/setup.sh dev` adds the development tools, and
# Debian's chromium (with apt-get, when it is missing) for the test that opens the docs site in a headless browser.
# torch is installed first on its own (default `torch==2.13.0`, the CPU build; set RECLM_NB_TORCH to choose another,
# e.g. RECLM_NB_TORCH=torch on a GPU machine) so that no other package pulls in a different build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "${RECLM_NB_TORCH:-torch==2.13.0}"
fi
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
.venv/bin/python -m pip install --quiet -e ".${extra}"
if [ "${1:-}" = "dev" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "note: no chromium and no apt-get: install Chromium yourself for tests/test_docs.py (or deselect it: -m 'not docs')" >&2
  fi
fi
echo "reclm_nb installed in $(pwd)/.venv"
