#!/usr/bin/env bash
# The embedded default, before and after a change: two `keel` binaries side by side on this machine,
# `keel quickstart` wall time and `keel serve` req/s (oha, one employment row, API key, monitoring on), in
# alternating rounds so drift in the machine's speed hits both alike. Prints a Markdown table.
#
# Usage: bench/ab_embedded.sh OLD_KEEL NEW_KEEL     (ROUNDS=3, DURATION=8, CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2
ROUNDS="${ROUNDS:-3}" DURATION="${DURATION:-8}" CONNECTIONS="${CONNECTIONS:-32}"
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
OHA="$CACHE/tools/bin/oha"
[ -x "$OHA" ] || cargo install oha --version 1.16.0 --locked --root "$CACHE/tools" >&2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-ab.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
unset KEEL_DATABASE_URL KEEL_ARTIFACT_URL
# The first row of employment_MA_reference.pq (the quickstart's data), as the serving bench sends it.
RECORD='{"AGEP": 62.0, "SCHL": "16", "MAR": "1", "RELP": "17", "DIS": "1", "ESP": "0", "CIT": "1", "MIG": "1", "MIL": "4", "ANC": "2", "NATIVITY": "1", "DEAR": "2", "DEYE": "2", "DREM": "2", "SEX": "2", "RAC1P": "1"}'
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A QS RPS
for round in $(seq "$ROUNDS"); do
  order=(old new); [ $((round % 2)) = 0 ] && order=(new old)
  for which in "${order[@]}"; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    home="$WORK/$which-$round"
    t0=$(date +%s.%N)
    KEEL_HOME="$home" "$bin" quickstart --json >/dev/null
    t1=$(date +%s.%N)
    QS[$which]+="$(python3 -c "print(round($t1-$t0, 2))") "
    key=$(KEEL_HOME="$home" "$bin" keys create --role predictor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    p=$(port)
    KEEL_HOME="$home" "$bin" serve --port "$p" >"$WORK/$which.log" 2>&1 & PIDS+=($!)
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
    url="http://127.0.0.1:$p/v1/models/employment/predict"
    "$OHA" -z 2s -c "$CONNECTIONS" --no-tui -m POST -H 'content-type: application/json' -H "authorization: Bearer $key" -d "$RECORD" "$url" >/dev/null
    rps=$("$OHA" -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json -m POST -H 'content-type: application/json' \
      -H "authorization: Bearer $key" -d "$RECORD" "$url" | python3 -c 'import json,sys; r=json.load(sys.stdin); c=r["statusCodeDistribution"]; assert list(c)==["200"], c; print(round(r["summary"]["requestsPerSec"]))')
    RPS[$which]+="$rps "
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
    echo "ab: round $round $which: rps $rps, quickstart times so far ${QS[$which]}" >&2
  done
done
med() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
echo "| binary | quickstart s (each round) | median | req/s (each round) | median |"
echo "|---|---|---|---|---|"
for which in old new; do
  echo "| $which | ${QS[$which]} | $(med "${QS[$which]}") | ${RPS[$which]} | $(med "${RPS[$which]}") |"
done
