#!/usr/bin/env bash
# Serving benchmark, one command: Keel vs `mlflow models serve` vs a bare axum JSON echo (the ceiling), same
# payload (one real employment row), same load generator (oha), same concurrency, on loopback. Also: Keel's p99
# at 80 % of its maximum rate, cold start (process start to first successful prediction), and the in-process
# criterion bench. Appends everything to BENCHMARKS.md.
#
# Usage: bench/serving.sh      (DURATION=10 seconds per run, CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
VENV="$CACHE/bench-venv"
OHA="$CACHE/tools/bin/oha"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-serving.XXXXXX")
PIDS=()
# Each server runs in its own process group (setsid), so stopping it stops its workers too.
stop() { kill -- "-$1" 2>/dev/null || kill "$1" 2>/dev/null || true; }
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/fetch-assets.sh nannyml
DATA="$CACHE/nannyml-0.13.1/employment_MA_reference.pq"

echo "== building keel and the echo server (release)" >&2
cargo build --release -j2 -p keel-cli >&2
cargo build --release -j2 -p keel-server --example echo >&2
KEEL="$ROOT/target/release/keel"
ECHO="$ROOT/target/release/examples/echo"

if [ ! -x "$OHA" ]; then
  echo "== installing oha (load generator) into $CACHE/tools" >&2
  cargo install oha --version 1.16.0 --locked --root "$CACHE/tools" >&2
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'lightgbm==4.7.0' 'pandas>=2.2,<3' 'pyarrow>=15' 'scikit-learn>=1.5' 'mlflow==3.17.2' >&2
PY="$VENV/bin/python"

echo "== training: Keel (200 trees) and LightGBM (200 trees, saved as an MLflow model)" >&2
export KEEL_HOME="$WORK/home"
"$KEEL" train --data "$DATA" --target employed --name employment --trees 200 \
  --drop id,year,prediction,predicted_probability --alias champion --json > "$WORK/train.json"
"$PY" bench/serving_anchor.py train "$DATA" "$WORK" >&2
KEY=$("$KEEL" keys create --role predictor --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
RECORD=$(cat "$WORK/record.json")

wait_http() { for _ in $(seq 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

setsid "$KEEL" serve --port 18181 > "$WORK/keel.log" 2>&1 & PIDS+=($!)
setsid "$KEEL" serve --port 18185 --no-monitoring > "$WORK/keel-off.log" 2>&1 & PIDS+=($!)
setsid "$KEEL" serve --port 18186 --prediction-log-rate 0.1 > "$WORK/keel-log10.log" 2>&1 & PIDS+=($!)
setsid "$ECHO" 18182 > "$WORK/echo.log" 2>&1 & PIDS+=($!)
PATH="$VENV/bin:$PATH" setsid "$VENV/bin/mlflow" models serve -m "$WORK/mlflow-model" --env-manager local --host 127.0.0.1 -p 18183 --workers 2 \
  > "$WORK/mlflow.log" 2>&1 & PIDS+=($!)
wait_http http://127.0.0.1:18181/readyz
wait_http http://127.0.0.1:18185/readyz
wait_http http://127.0.0.1:18186/readyz
wait_http http://127.0.0.1:18182/
wait_http http://127.0.0.1:18183/ping

load() { # NAME URL BODY [extra oha args...]
  local name=$1 url=$2 body=$3
  shift 3
  # Warm up, then measure.
  "$OHA" -z 2s -c "$CONNECTIONS" --no-tui -m POST -H 'content-type: application/json' -H "authorization: Bearer $KEY" \
    -d "$body" "$url" > /dev/null
  "$OHA" -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -H "authorization: Bearer $KEY" -d "$body" "$@" "$url" > "$WORK/$name.json"
}
echo "== load: echo" >&2
load echo http://127.0.0.1:18182/echo "$RECORD"
echo "== load: keel" >&2
load keel http://127.0.0.1:18181/v1/models/employment@champion/predict "$RECORD"
# Monitoring on vs off: five rounds, the order swapped every round, so drift in the machine's speed and any
# first-of-a-pair effect hit both alike; medians compared.
for round in 1 2 3 4 5; do
  echo "== load: keel monitoring off / on, round $round" >&2
  if [ $((round % 2)) = 1 ]; then
    load "off$round" http://127.0.0.1:18185/v1/models/employment@champion/predict "$RECORD"
    load "on$round" http://127.0.0.1:18181/v1/models/employment@champion/predict "$RECORD"
    load "log10_$round" http://127.0.0.1:18186/v1/models/employment@champion/predict "$RECORD"
  else
    load "log10_$round" http://127.0.0.1:18186/v1/models/employment@champion/predict "$RECORD"
    load "on$round" http://127.0.0.1:18181/v1/models/employment@champion/predict "$RECORD"
    load "off$round" http://127.0.0.1:18185/v1/models/employment@champion/predict "$RECORD"
  fi
done
echo "== load: mlflow" >&2
load mlflow http://127.0.0.1:18183/invocations "{\"dataframe_records\": [$RECORD]}"
# Sanity: every server answered 200 to the payload.
for s in echo keel mlflow; do
  "$PY" - "$WORK/$s.json" "$s" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
codes = r.get("statusCodeDistribution", {})
bad = {k: v for k, v in codes.items() if k != "200"}
if bad or not codes:
    raise SystemExit(f"{sys.argv[2]}: non-200 answers {codes}")
PY
done
MAXRATE=$("$PY" -c "import json; print(int(json.load(open('$WORK/keel.json'))['summary']['requestsPerSec']))")
RATE=$((MAXRATE * 8 / 10))
echo "== load: keel at 80 % of its max rate ($RATE req/s)" >&2
load keel80 http://127.0.0.1:18181/v1/models/employment@champion/predict "$RECORD" -q "$RATE"

for p in "${PIDS[@]}"; do stop "$p"; done
PIDS=()
echo "== cold start (5 runs)" >&2
for i in 1 2 3 4 5; do
  "$PY" bench/serving_anchor.py coldstart http://127.0.0.1:18184/v1/models/employment@champion/predict "$RECORD" "$KEY" \
    "$KEEL" serve --port 18184 >> "$WORK/cold.txt"
done

echo "== criterion: in-process inference" >&2
cargo bench -j2 -p keel-engine --bench predict 2>/dev/null | tee "$WORK/criterion.txt" >&2

"$PY" - "$WORK" "$DURATION" "$CONNECTIONS" <<'PY' | tee -a BENCHMARKS.md
import json, re, statistics, subprocess, sys, datetime
work, duration, conns = sys.argv[1], sys.argv[2], sys.argv[3]
def load(n):
    r = json.load(open(f"{work}/{n}.json"))
    p = r["latencyPercentiles"]
    return r["summary"]["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000
e, k, m, k80 = load("echo"), load("keel"), load("mlflow"), load("keel80")
on = [load(f"on{i}")[0] for i in (1, 2, 3, 4, 5)]
off = [load(f"off{i}")[0] for i in (1, 2, 3, 4, 5)]
log10 = [load(f"log10_{i}")[0] for i in (1, 2, 3, 4, 5)]
cold = [float(x) for x in open(f"{work}/cold.txt").read().split()]
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"\n## Serving: employment model, 200 trees, one row per request ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {nproc} cores shared by the server and the load generator. Command: `bench/serving.sh` "
      f"(oha, {conns} connections, {duration} s after a 2 s warm-up, loopback; Keel with API-key auth, the schema check and monitoring on; "
      f"MLflow 3.17.2 `models serve` with 2 workers on the same model trained by LightGBM).\n")
print("| server | req/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
for name, r in [("axum JSON echo (ceiling)", e), ("Keel", k), ("mlflow models serve", m)]:
    print(f"| {name} | {r[0]:,.0f} | {r[1]:.3f} | {r[2]:.3f} |")
print(f"\nKeel / MLflow: {k[0]/m[0]:.0f}× the throughput; Keel / echo: {100*k[0]/e[0]:.0f} % of the ceiling.")
print(f"Monitoring on (window profiles + the default 2 % prediction log) vs off, five rounds, order swapped each round: on "
      f"{', '.join(f'{x:,.0f}' for x in on)} req/s, off {', '.join(f'{x:,.0f}' for x in off)} req/s; "
      f"median on / median off = {100*statistics.median(on)/statistics.median(off):.0f} %.")
print(f"With a 10 % prediction log instead: {', '.join(f'{x:,.0f}' for x in log10)} req/s, "
      f"median / median off = {100*statistics.median(log10)/statistics.median(off):.0f} % "
      f"(the log's SQLite inserts share the two cores with the server and the load generator).")
print(f"Keel at 80 % of its max rate ({k80[0]:,.0f} req/s achieved): p50 {k80[1]:.3f} ms, p99 {k80[2]:.3f} ms.")
print(f"Cold start (process start to first successful prediction), 5 runs: median {statistics.median(cold):.1f} ms "
      f"({', '.join(f'{c:.1f}' for c in cold)}).")
crit = open(f"{work}/criterion.txt").read()
rows = re.findall(r"^(.+?)\s+time:\s+\[([^\]]+)\]", crit, re.M)
if rows:
    print("\nIn-process (criterion, `cargo bench -p keel-engine --bench predict`):\n")
    print("| path | time per row [low, estimate, high] |")
    print("|---|---|")
    for name, t in rows:
        print(f"| {name.strip()} | {t} |")
PY
