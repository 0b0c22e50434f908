#!/usr/bin/env bash
# Schemathesis (PyPI, pinned) against a live `keel serve` on loopback with the committed openapi.json and an
# admin key, every check on: prints the case count and exits non-zero on any 5xx or any response the spec
# does not allow. The home holds the employment quickstart model and a guard-free default configuration.
#
# Usage: scripts/schemathesis.sh            (MAX_EXAMPLES=30 per operation by default)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
VENV="$CACHE/schemathesis-venv"
MAX_EXAMPLES="${MAX_EXAMPLES:-30}"
if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
fi
. scripts/live-server.sh schemathesis
KEY=$("$KEEL" keys create --role admin --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
# Short generations, so chat requests (the local SmolLM2) answer within the client's time limit.
printf '[serve.llm]\nmax_tokens = 16\n' > "$WORK/keel.toml"
start_server --config "$WORK/keel.toml"
set +e
"$VENV/bin/st" run openapi.json --url "http://$ADDR" -H "Authorization: Bearer $KEY" \
  --checks all --max-examples "$MAX_EXAMPLES" --workers 2 --phases examples,coverage,fuzzing \
  --suppress-health-check all --request-timeout 120 --max-response-time 120 2>&1 | tee "$WORK/st.out"
code=${PIPESTATUS[0]}
set -e
echo "== keel serve logged $(grep -c ' ERROR ' "$WORK/serve.err" || true) error lines" >&2
exit "$code"
