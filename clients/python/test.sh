#!/usr/bin/env bash
# The Python client's checks: a cached virtualenv from requirements-dev.lock (PyPI only), the package installed
# from this path, generated models compared with openapi.json, mypy --strict, black and isort, then pytest against a real
# `keel serve` (KEEL_BIN, default target/debug/keel) on a loopback port with a temporary home.
# Needs the nannyml, pydocs and minilm assets (scripts/fetch-assets.sh); run by scripts/test.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
LOCK_HASH="$(sha256sum "$HERE/requirements-dev.lock" | cut -c1-12)"
VENV="$CACHE/client-venv-$LOCK_HASH"
if ! "$VENV/bin/python" -c 'import pytest, mypy, pandas, pyarrow, openai, datamodel_code_generator' 2>/dev/null; then
  echo "client tests: creating $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements-dev.lock"
fi
# Installed (not editable) from the repository path, as a user would: proves the package builds.
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$HERE"
export KEEL_BIN="${KEEL_BIN:-$REPO/target/debug/keel}"
[ -x "$KEEL_BIN" ] || (cd "$REPO" && cargo build -j2 -p keel-cli)
cd "$HERE"
"$VENV/bin/python" generate.py --check
"$VENV/bin/mypy" --strict src/keel_client
"$VENV/bin/black" --check --quiet src tests generate.py
"$VENV/bin/isort" --check-only --quiet src tests generate.py
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT
# Run from tests/ against the installed package (not the source tree).
"$VENV/bin/python" -m pytest -p no:cacheprovider --rootdir "$HERE" -c "$HERE/pyproject.toml" \
  --junitxml="$REPORT" "$@" "$HERE/tests"
COLLECTED="$("$VENV/bin/python" -c 'import sys, xml.etree.ElementTree as E; r=E.parse(sys.argv[1]).getroot(); s=r if r.tag=="testsuite" else r[0]; print(int(s.get("tests")) - int(s.get("skipped", 0)))' "$REPORT")"
if [ "$COLLECTED" -lt 1 ]; then
  echo "client tests: pytest ran no test" >&2
  exit 1
fi
echo "client tests: $COLLECTED passed" >&2
