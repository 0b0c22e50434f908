#!/usr/bin/env bash
# Regenerates the model-import fixtures (crates/keel-ml/tests/fixtures/import) with pinned libraries from
# PyPI in a cached virtual environment: LightGBM 4.7.0 and XGBoost 3.2.0 models and their outputs as bit patterns, and a model
# trained on the real employment data (asset cache) with a CSV of rows it did not train on.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
VENV="$CACHE/import-venv"
if ! "$VENV/bin/python" -c 'import lightgbm, xgboost, numpy, pandas, pyarrow' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check lightgbm==4.7.0 xgboost-cpu==3.2.0 numpy==2.4.6 \
    pandas==2.3.3 pyarrow==22.0.0
fi
scripts/fetch-assets.sh nannyml >/dev/null
"$VENV/bin/python" scripts/import_fixtures.py crates/keel-ml/tests/fixtures/import \
  "$CACHE/nannyml-0.13.1/employment_MA_reference.pq"
