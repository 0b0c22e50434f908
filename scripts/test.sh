#!/usr/bin/env bash
# Keel's test suite: fetch the pinned assets the tests read, check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh nannyml minilm smollm2 pydocs
cargo fmt --all -- --check
cargo clippy -j2 --workspace --all-targets -- -D warnings
cargo test -j2 --workspace
