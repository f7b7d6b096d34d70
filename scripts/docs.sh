#!/usr/bin/env bash
# Build the documentation site into _docs/ (no Quarto): nbdev processes nbs/*.ipynb into _proc/ (show_doc entries,
# hidden cells dropped; only exported, import and show_doc cells run), mkdocs-material + mkdocs-jupyter render it.
# Navigation follows nbs/*.ipynb sorted by name; nbs/index.ipynb (the README) is the home page.
# Open _docs/index.html directly, or serve it: python -m http.server -d _docs 8000 --bind 127.0.0.1
# `bash scripts/docs.sh --keep-going` still builds when a notebook's show_doc cells fail (those pages lose their
# API entries and say why). Needs `bash scripts/setup.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
"$PY" -c "import mkdocs_jupyter, material, nbdev" 2>/dev/null || {
  echo "docs: mkdocs-material, mkdocs-jupyter or nbdev missing: run 'bash scripts/setup.sh dev'" >&2; exit 1; }
exec "$PY" scripts/docs.py "$@"
