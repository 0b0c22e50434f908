#!/usr/bin/env bash
# Fuzzes the model importers with cargo-fuzz (libFuzzer, nightly): each target runs for SECONDS (default 600),
# its corpus seeded from the import fixtures and kept outside the repository ($KEEL_CACHE/fuzz-corpus).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]   (targets: lightgbm xgboost_json xgboost_ubj onnx)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(lightgbm xgboost_json xgboost_ubj onnx)
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
FIX=crates/keel-ml/tests/fixtures/import
for t in "${TARGETS[@]}"; do
  corpus="$CACHE/fuzz-corpus/$t"
  mkdir -p "$corpus"
  case "$t" in
    lightgbm) cp -n "$FIX"/lgb_*.txt "$corpus"/ ;;
    xgboost_json) cp -n "$FIX"/xgb_*.json "$corpus"/ ;;
    xgboost_ubj) cp -n "$FIX"/xgb_*.ubj "$corpus"/ ;;
    onnx) cp -n "$FIX"/*.onnx "$corpus"/ ;;
  esac
  echo "fuzz: $t for ${SECONDS_EACH}s"
  (cd fuzz && cargo +nightly fuzz run "$t" "$corpus" -- -max_total_time="$SECONDS_EACH" -max_len=1048576 \
    -rss_limit_mb=2048 -timeout=10 2>&1 | grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|panicked|SUMMARY|Done" | tail -3)
done
