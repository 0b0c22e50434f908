#!/usr/bin/env bash
# Keel's test suite: fetch the pinned assets the tests read, start the services the store contract tests run
# against (PostgreSQL, SeaweedFS; scripts/services.sh), check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh nannyml minilm mpnet smollm2 pydocs guard guard-corpora pii onnxruntime
# The stock OpenAI Python client (the gateway's compatibility test) and `requests` (the tracking test), pinned;
# PyPI only.
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
if [ ! -x "$CACHE/openai-venv/bin/python" ] || ! "$CACHE/openai-venv/bin/python" -c 'import openai, requests' 2>/dev/null; then
  python3 -m venv "$CACHE/openai-venv"
  "$CACHE/openai-venv/bin/pip" install --quiet --disable-pip-version-check openai==1.109.1 requests==2.32.5
fi
# PostgreSQL (127.0.0.1:5432 when it answers, else a throw-away cluster) and SeaweedFS (S3) on loopback; both
# throw-away services stop when this script exits.
source scripts/services.sh
# The test runner (each test in its own process, binaries in parallel); crates.io only.
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
cargo fmt --all -- --check
cargo clippy -j2 --workspace --all-targets -- -D warnings
cargo clippy -j2 -p keel-engine -p keel-cli --all-targets --features keel-cli/onnx-runtime -- -D warnings
cargo nextest run -j2 --workspace --no-fail-fast
# The optional ONNX Runtime build (imported neural networks): the runtime's own tests and the end-to-end import.
cargo nextest run -j2 -p keel-engine -p keel-cli --features keel-cli/onnx-runtime --no-fail-fast -E 'binary(onnxrt) | test(neural)'
# The Python client (clients/python): a cached venv from its lock file, the package installed from the path,
# its generated models checked against openapi.json, mypy --strict, pytest against a real `keel serve`.
clients/python/test.sh
# The Helm chart: lint --strict, schema validation of the rendered manifests, and its invariants (offline).
deploy/test-chart.sh
