#!/usr/bin/env bash
# Regenerates the model-import fixtures (crates/keel-ml/tests/fixtures/import) with pinned libraries from
# PyPI in a cached virtual environment: LightGBM 4.7.0 models and their outputs as bit patterns.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
VENV="$CACHE/import-venv"
if ! "$VENV/bin/python" -c 'import lightgbm, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check lightgbm==4.7.0 numpy==2.4.6
fi
"$VENV/bin/python" scripts/import_fixtures.py crates/keel-ml/tests/fixtures/import
