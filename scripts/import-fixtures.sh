#!/usr/bin/env bash
# Regenerates the model-import fixtures (crates/keel-ml/tests/fixtures/import) with pinned libraries from
# PyPI in a cached virtual environment: LightGBM 4.7.0 and XGBoost 3.2.0 models and their outputs as bit patterns, a model
# trained on the real employment data (asset cache) with a CSV of rows it did not train on, and ONNX-ML tree ensembles
# (scikit-learn 1.9.1 via skl2onnx 1.20.0, LightGBM and XGBoost via onnxmltools 1.16.0, hand-built graphs) scored by
# ONNX Runtime 1.32.0.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
VENV="$CACHE/import-venv"
if ! "$VENV/bin/python" -c 'import lightgbm, xgboost, numpy, pandas, pyarrow, sklearn, skl2onnx, onnxmltools, onnxruntime' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check lightgbm==4.7.0 xgboost-cpu==3.2.0 numpy==2.4.6 \
    pandas==2.3.3 pyarrow==22.0.0 scikit-learn==1.9.1 skl2onnx==1.20.0 onnxmltools==1.16.0 onnxruntime==1.32.0 \
    onnx==1.23.2
fi
scripts/fetch-assets.sh nannyml >/dev/null
"$VENV/bin/python" scripts/import_fixtures.py crates/keel-ml/tests/fixtures/import \
  "$CACHE/nannyml-0.13.1/employment_MA_reference.pq"
"$VENV/bin/python" scripts/import_fixtures_onnx.py crates/keel-ml/tests/fixtures/import \
  "$CACHE/nannyml-0.13.1/employment_MA_reference.pq"
