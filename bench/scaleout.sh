#!/usr/bin/env bash
# Scale-out benchmark, one command: PostgreSQL + SeaweedFS (S3) + 3 `keel serve` replicas behind a loopback
# round-robin balancer + 1 `keel worker`, under load from oha. Measures (a) how fast an alias move made on one
# replica is served by the others (also after killing a replica's LISTEN connection), (b) a replica killed -9
# under load, (c) the single-writer lease's takeover when its holder is killed, (d) a retrain run by the worker,
# (e) req/s for 1, 2 and 3 replicas and for the embedded SQLite mode in the same run. Appends to BENCHMARKS.md.
#
# Usage: bench/scaleout.sh      (DURATION=10 seconds per throughput run, CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
export DURATION="${DURATION:-10}" CONNECTIONS="${CONNECTIONS:-32}"
VENV="$CACHE/bench-venv"
OHA="$CACHE/tools/bin/oha"
source scripts/services.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-scaleout.XXXXXX")
trap 'keel_services_stop; rm -rf "$WORK"' EXIT

scripts/fetch-assets.sh nannyml
echo "== building keel and the balancer (release)" >&2
# One invocation, so both share one feature resolution (two would rebuild keel-server in turn).
cargo build --release -j2 -p keel-cli -p keel-server --bin keel --example balancer >&2
if [ ! -x "$OHA" ]; then
  echo "== installing oha (load generator) into $CACHE/tools" >&2
  cargo install oha --version 1.16.0 --locked --root "$CACHE/tools" >&2
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'pyarrow>=15' >&2

KEEL="$ROOT/target/release/keel" BALANCER="$ROOT/target/release/examples/balancer" OHA="$OHA" WORK="$WORK" \
  DATA="$CACHE/nannyml-0.13.1/employment_MA_reference.pq" PG_BASE="$KEEL_TEST_POSTGRES_URL" \
  "$VENV/bin/python" bench/scaleout.py > "$WORK/section.md"
cat "$WORK/section.md"
{ echo; cat "$WORK/section.md"; } >> BENCHMARKS.md
echo "== appended to BENCHMARKS.md" >&2
