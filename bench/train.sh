#!/usr/bin/env bash
# Training benchmark: Keel vs LightGBM on the same split of the 2015 employment data, single thread each.
# Appends AUC and training seconds of both to BENCHMARKS.md.
#
# Usage: bench/train.sh            (RUNS=3 by default; the median run of each is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
RUNS="${RUNS:-3}"
VENV="$CACHE/bench-venv"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-train.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

scripts/fetch-assets.sh nannyml
DATA="$CACHE/nannyml-0.13.1/employment_MA_reference.pq"

echo "== building keel (release)" >&2
cargo build --release -j2 -p keel-cli >&2
KEEL="$ROOT/target/release/keel"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the anchor virtualenv in $VENV" >&2
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'lightgbm==4.7.0' 'pandas>=2.2,<3' 'pyarrow>=15' 'scikit-learn>=1.5' >&2

echo "== writing the shared split" >&2
"$VENV/bin/python" bench/lgb_train.py split "$DATA" "$WORK"

for i in $(seq "$RUNS"); do
  echo "== run $i/$RUNS: keel" >&2
  KEEL_HOME="$WORK/home-$i" "$KEEL" train --data "$WORK/train.parquet" --test "$WORK/test.parquet" \
    --target employed --name bench --model gbdt --trees 300 --num-leaves 31 --learning-rate 0.05 --json \
    | "$VENV/bin/python" -c 'import json,sys; r=json.load(sys.stdin); print(r["train_seconds"], r["metrics"]["auc"])' >> "$WORK/keel.txt"
  echo "== run $i/$RUNS: lightgbm" >&2
  "$VENV/bin/python" bench/lgb_train.py train "$WORK" >> "$WORK/lgb.txt"
done

"$VENV/bin/python" - "$WORK" "$RUNS" <<'PY' | tee -a BENCHMARKS.md
import statistics, sys, platform, subprocess, datetime, lightgbm
work, runs = sys.argv[1], int(sys.argv[2])
def load(name):
    rows = [tuple(map(float, l.split())) for l in open(f"{work}/{name}") if l.strip()]
    secs = statistics.median(r[0] for r in rows)
    return secs, rows[0][1], [r[0] for r in rows]
k, l = load("keel.txt"), load("lgb.txt")
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), platform.processor())
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"\n## Training: employment 2015, 300 trees, 31 leaves, learning rate 0.05 ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; single thread for both. "
      f"Command: `bench/train.sh` (median of {runs} runs; same stratified 80/20 split, seed 0, written by the script).\n")
print("| engine | holdout ROC-AUC | training seconds (median) | all runs |")
print("|---|---|---|---|")
print(f"| Keel GBDT | {k[1]:.4f} | {k[0]:.3f} | {', '.join(f'{x:.3f}' for x in k[2])} |")
print(f"| LightGBM {lightgbm.__version__} | {l[1]:.4f} | {l[0]:.3f} | {', '.join(f'{x:.3f}' for x in l[2])} |")
print(f"\nAUC difference (Keel − LightGBM): {k[1]-l[1]:+.4f}; time ratio Keel/LightGBM: {k[0]/l[0]:.2f}")
PY
