#!/usr/bin/env bash
# Imported models, one command: a 500-tree LightGBM and a 500-tree XGBoost model trained in Python on the
# employment data, imported into Keel; in-process µs/row at batch 1 and 1,000 for Keel, the library's own
# predict, ONNX Runtime on the onnxmltools conversion and lleaves (LightGBM), all single-threaded; then HTTP
# req/s of `keel serve` vs `mlflow models serve` on the same LightGBM model. Keel's outputs are checked bit
# for bit against the libraries' on 10,000 test rows. Appends the results to BENCHMARKS.md.
#
# Usage: bench/import.sh      (DURATION=10 seconds per HTTP run, CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
VENV="$CACHE/import-bench-venv"
OHA="$CACHE/tools/bin/oha"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-import.XXXXXX")
PIDS=()
stop() { kill -- "-$1" 2>/dev/null || kill "$1" 2>/dev/null || true; }
cleanup() { for p in "${PIDS[@]}"; do stop "$p"; done; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/fetch-assets.sh nannyml >&2
DATA="$CACHE/nannyml-0.13.1/employment_MA_reference.pq"
echo "== building keel and the in-process bench (release)" >&2
cargo build --release -j2 -p keel-cli >&2
cargo build --release -j2 -p keel-ml --example import_bench >&2
KEEL="$ROOT/target/release/keel"
if [ ! -x "$OHA" ]; then
  cargo install oha --version 1.16.0 --locked --root "$CACHE/tools" >&2
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check lightgbm==4.7.0 xgboost-cpu==3.2.0 numpy==2.4.6 \
  pandas==2.3.3 pyarrow==22.0.0 onnxruntime==1.32.0 onnx==1.23.2 onnxmltools==1.16.0 skl2onnx==1.20.0 lleaves==1.3.0 llvmlite==0.44.0 \
  mlflow==3.17.2 >&2
PY="$VENV/bin/python"

echo "== training LightGBM and XGBoost (500 trees each), converting to ONNX, compiling lleaves" >&2
"$PY" bench/import_anchor.py train "$DATA" "$WORK" >&2
echo "== in-process: Keel" >&2
"$ROOT/target/release/examples/import_bench" "$WORK/lgb.txt" "$WORK/lgb.rows.bin" > "$WORK/keel-lgb.json"
"$ROOT/target/release/examples/import_bench" "$WORK/xgb.ubj" "$WORK/xgb.rows.bin" > "$WORK/keel-xgb.json"
echo "== in-process: the libraries, ONNX Runtime, lleaves" >&2
"$PY" bench/import_anchor.py time "$WORK" > "$WORK/anchors.json"

echo "== HTTP: keel serve vs mlflow models serve on the imported LightGBM model" >&2
export KEEL_HOME="$WORK/home"
"$KEEL" models import "$WORK/lgb.txt" --name lgb --alias champion --json > "$WORK/import.json"
KEY=$("$KEEL" keys create --role predictor --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
RECORD=$(cat "$WORK/record.json")
wait_http() { for _ in $(seq 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
setsid "$KEEL" serve --port 18191 > "$WORK/keel.log" 2>&1 & PIDS+=($!)
PATH="$VENV/bin:$PATH" setsid "$VENV/bin/mlflow" models serve -m "$WORK/mlflow-lgb" --env-manager local \
  --host 127.0.0.1 -p 18193 --workers 2 > "$WORK/mlflow.log" 2>&1 & PIDS+=($!)
wait_http http://127.0.0.1:18191/readyz
wait_http http://127.0.0.1:18193/ping
load() { # NAME URL BODY
  "$OHA" -z 2s -c "$CONNECTIONS" --no-tui -m POST -H 'content-type: application/json' -H "authorization: Bearer $KEY" \
    -d "$3" "$2" > /dev/null
  "$OHA" -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json -m POST -H 'content-type: application/json' \
    -H "authorization: Bearer $KEY" -d "$3" "$2" > "$WORK/$1.json"
}
load keel http://127.0.0.1:18191/v1/models/lgb/predict "$RECORD"
load mlflow http://127.0.0.1:18193/invocations "{\"dataframe_records\": [$RECORD]}"

"$PY" - "$WORK" "$DURATION" "$CONNECTIONS" <<'PY' | tee -a BENCHMARKS.md
import json, subprocess, sys, datetime
work, duration, conns = sys.argv[1:4]
k = {lib: json.load(open(f"{work}/keel-{lib}.json")) for lib in ("lgb", "xgb")}
a = json.load(open(f"{work}/anchors.json"))
for lib, r in k.items():
    if r["mismatches"]:
        raise SystemExit(f"Keel disagrees with the library on {r['mismatches']} rows ({lib})")
def http(n):
    r = json.load(open(f"{work}/{n}.json"))
    codes = r.get("statusCodeDistribution", {})
    if set(codes) != {"200"}:
        raise SystemExit(f"{n}: non-200 answers {codes}")
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p50"] * 1000, r["latencyPercentiles"]["p99"] * 1000
hk, hm = http("keel"), http("mlflow")
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"\n## Imported models: 500-tree LightGBM and XGBoost on the employment data ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {nproc} cores. Command: `bench/import.sh`. In process: single-threaded, rows already as "
      f"numbers (16 features, categories as integer codes), best of 5 passes of ≥ 0.5 s; batch 1 is one call per row. "
      f"Keel's outputs equal each library's bit for bit on 10,000 test rows (checked in the run).\n")
print("| engine | model | µs/row, batch 1 | µs/row, batch 1,000 |")
print("|---|---|---|---|")
rows = [("Keel (imported, " + k["lgb"]["layout"] + ")", "LightGBM", k["lgb"]["us_per_row_batch1"], k["lgb"]["us_per_row_batch1000"]),
        ("lightgbm 4.7.0 `predict`", "LightGBM", a["lightgbm"]["batch1"], a["lightgbm"]["batch1000"]),
        ("lleaves (compiled)", "LightGBM", a["lleaves"]["batch1"], a["lleaves"]["batch1000"]),
        ("ONNX Runtime 1.32.0 (onnxmltools)", "LightGBM", a["onnxruntime (lightgbm)"]["batch1"], a["onnxruntime (lightgbm)"]["batch1000"]),
        ("Keel (imported, " + k["xgb"]["layout"] + ")", "XGBoost", k["xgb"]["us_per_row_batch1"], k["xgb"]["us_per_row_batch1000"]),
        ("xgboost 3.2.0 `inplace_predict`", "XGBoost", a["xgboost"]["batch1"], a["xgboost"]["batch1000"]),
        ("ONNX Runtime 1.32.0 (onnxmltools)", "XGBoost", a["onnxruntime (xgboost)"]["batch1"], a["onnxruntime (xgboost)"]["batch1000"])]
for e, m, b1, b1000 in rows:
    print(f"| {e} | {m} | {b1:.2f} | {b1000:.3f} |")
print(f"\nHTTP, one row per request, the imported LightGBM model (oha, {conns} connections, {duration} s after a 2 s warm-up; "
      f"Keel with API-key auth, the schema check and monitoring on; MLflow 3.17.2 `models serve`, 2 workers, the same booster):\n")
print("| server | req/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
print(f"| keel serve | {hk[0]:.0f} | {hk[1]:.2f} | {hk[2]:.2f} |")
print(f"| mlflow models serve | {hm[0]:.0f} | {hm[1]:.2f} | {hm[2]:.2f} |")
print(f"\nKeel / MLflow: {hk[0] / hm[0]:.0f}× the requests per second.")
PY
