#!/usr/bin/env bash
# Training benchmark: Keel vs LightGBM 4.7.0 with the same settings (300 trees, 31 leaves, learning rate 0.05,
# 20 rows per leaf, 255 bins) on the same 80/20 split of five data sets from registry packages, with 1 and 2
# threads each:
#   employment     US Census 2015, Massachusetts (binary `employed`; nannyml 0.13.1)
#   credit-cards   synthetic credit-card products (3 classes; nannyml 0.13.1 mc_reference)
#   car-accidents  accident counts of used cars (Poisson; nannyml 0.13.1 regression_synthetic)
#   car-prices     used-car prices (L2 regression; the same file's `y_true`)
#   flights        3,000,000 US flights, delay > 15 minutes (binary; npm vega-datasets 3.2.1)
# Reports each engine's holdout metric (AUC; log loss, Poisson deviance, MSE: lower is better), its training
# seconds (the boosting alone: Keel's `train_seconds`, LightGBM's `fit`) and the peak RSS of the whole process,
# and appends the table to BENCHMARKS.md.
#
# Usage: bench/train.sh [DATASET ...]      (default: all five; RUNS=N repeats each and reports the median)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
RUNS="${RUNS:-1}"
VENV="$CACHE/bench-venv"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-train.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
DATASETS=("$@")
[ ${#DATASETS[@]} -eq 0 ] && DATASETS=(employment credit-cards car-accidents car-prices flights)

scripts/fetch-assets.sh nannyml flights

echo "== building keel (release)" >&2
cargo build --release -j2 -p keel-cli >&2
KEEL="$ROOT/target/release/keel"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the anchor virtualenv in $VENV" >&2
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'lightgbm==4.7.0' 'pandas>=2.2,<3' 'pyarrow>=15' 'scikit-learn>=1.5' >&2
PY="$VENV/bin/python"

for ds in "${DATASETS[@]}"; do
  mkdir -p "$WORK/$ds"
  echo "== $ds: writing the shared split" >&2
  "$PY" bench/lgb_train.py split "$ds" "$CACHE" "$WORK/$ds"
  read -r target task metric < <("$PY" bench/lgb_train.py meta "$ds")
  case "$task" in
    binary) objective=binary ;;
    multiclass) objective=multiclass ;;
    poisson) objective=poisson ;;
    *) objective=regression ;;
  esac
  rows=$("$PY" -c 'import sys, pyarrow.parquet as pq; print(pq.ParquetFile(sys.argv[1]).metadata.num_rows)' "$WORK/$ds/train.parquet")
  for threads in 1 2; do
    for i in $(seq "$RUNS"); do
      echo "== $ds, $threads thread(s), run $i/$RUNS: keel" >&2
      /usr/bin/time -f '%M' -o "$WORK/rss" env KEEL_HOME="$WORK/home-$ds-$threads-$i" "$KEEL" train \
        --data "$WORK/$ds/train.parquet" --test "$WORK/$ds/test.parquet" --target "$target" --objective "$objective" \
        --name "bench-$ds" --model gbdt --trees 300 --num-leaves 31 --learning-rate 0.05 --min-data-in-leaf 20 \
        --max-bins 255 --threads "$threads" --json > "$WORK/out.json"
      "$PY" - "$WORK/out.json" "$metric" "$(cat "$WORK/rss")" <<'PY' | sed "s/^/$ds $task $rows $threads keel /" >> "$WORK/results.txt"
import json, sys
r = json.load(open(sys.argv[1]))
m = sys.argv[2]
value = r["metrics"]["rmse"] ** 2 if m == "mse" else r["metrics"][m]
print(r["train_seconds"], value, int(sys.argv[3]) / 1024)
PY
      echo "== $ds, $threads thread(s), run $i/$RUNS: lightgbm" >&2
      "$PY" bench/lgb_train.py train "$ds" "$WORK/$ds" "$threads" | sed "s/^/$ds $task $rows $threads lightgbm /" >> "$WORK/results.txt"
    done
  done
done

"$PY" - "$WORK/results.txt" "$RUNS" <<'PY' | tee -a BENCHMARKS.md
import collections, datetime, platform, statistics, subprocess, sys, lightgbm
rows = collections.defaultdict(list)
meta = {}
for line in open(sys.argv[1]):
    ds, task, n, threads, engine, secs, metric, rss = line.split()
    rows[(ds, int(threads), engine)].append((float(secs), float(metric), float(rss)))
    meta[ds] = (task, int(n))
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), platform.processor())
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"\n## Training: Keel vs LightGBM {lightgbm.__version__} on five data sets, 1 and 2 threads ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {cores} vCPUs. Command: `bench/train.sh` (median of {sys.argv[2]} run(s)). Same 80/20 split "
      "(stratified for classification, seed 0), 300 trees, 31 leaves, learning rate 0.05, 20 rows per leaf, 255 bins. "
      "Seconds: the boosting alone. Peak RSS: the whole process (Keel's includes reading, the linear baseline, "
      "evaluation with bootstrap intervals and SHAP; LightGBM's includes pandas).\n")
print("| data set | task | train rows | threads | metric | Keel | LightGBM | Keel − LightGBM | Keel s | LightGBM s | time ratio | Keel peak MB | LightGBM peak MB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
names = {"binary": "AUC", "multiclass": "log loss", "poisson": "Poisson deviance", "regression": "MSE"}
for (ds, threads, engine) in sorted(k for k in rows if k[2] == "keel"):
    task, n = meta[ds]
    k = rows[(ds, threads, "keel")]
    l = rows[(ds, threads, "lightgbm")]
    med = lambda xs, j: statistics.median(x[j] for x in xs)
    km, lm = k[0][1], l[0][1]
    diff = f"{km - lm:+.4f}" if task == "binary" else f"{(km - lm) / lm * 100:+.2f} %"
    print(f"| {ds} | {task} | {n:,} | {threads} | {names[task]} | {km:.4f} | {lm:.4f} | {diff} | {med(k, 0):.2f} | "
          f"{med(l, 0):.2f} | {med(k, 0) / med(l, 0):.2f} | {med(k, 2):.0f} | {med(l, 2):.0f} |")
PY
