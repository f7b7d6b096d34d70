#!/usr/bin/env bash
# The test command (CI runs exactly this after `bash scripts/setup.sh dev`):
# 1. notebooks are clean and the library is exported from them (nbdev_clean / nbdev_export change nothing),
# 2. README.md is the rendering of nbs/index.ipynb,
# 3. the library, scripts and tests are pyflakes-clean (no unused imports or names),
# 4. every notebook runs (nbdev_test, 2 workers; `slow` and `gpu` cells are skipped unless flagged in),
# 5. pytest tests/ (end to end: CLI, installed wheel, assets, robustness, the docs site in a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$(pwd)/.venv/bin:$PATH"
snapshot() { git status --porcelain --untracked-files=all -- nbs reclm_nb README.md; git diff -- nbs reclm_nb README.md; }
before=$(snapshot | sha256sum)
nbdev_clean
nbdev_export
python scripts/make_readme.py
if [ "$before" != "$(snapshot | sha256sum)" ]; then
  echo "FAIL: nbdev_clean, nbdev_export or make_readme.py changed files; commit the cleaned/exported versions:" >&2
  git status --porcelain -- nbs reclm_nb README.md >&2
  exit 1
fi
echo "notebooks clean, library and README in sync"
python -m pyflakes reclm_nb scripts tests
echo "pyflakes clean"
nbdev_test --n_workers 2 --timing ${NBDEV_TEST_FLAGS:+--flags "$NBDEV_TEST_FLAGS"}
python -m pytest tests/ -q -p no:cacheprovider --timeout 1500
