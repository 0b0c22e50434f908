#!/usr/bin/env bash
# Drift benchmark, one command: Keel vs NannyML vs Evidently on the same 1M-row x 30-column Parquet files (a
# reference, a second sample of the same distribution, and a copy with six known shifts), in one run.
# Appends seconds and flagged columns for each tool and each pair to BENCHMARKS.md.
#
# Usage: bench/drift.sh        (ROWS=1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
ROWS="${ROWS:-1000000}"
VENV="$CACHE/drift-venv"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-drift.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "== building keel (release)" >&2
cargo build --release -j2 -p keel-cli >&2
KEEL="$PWD/target/release/keel"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  'nannyml==0.13.1' 'evidently==0.7.23' 'pandas>=2.2,<3' 'pyarrow>=15' >&2
PY="$VENV/bin/python"

echo "== data: $ROWS rows x 30 columns (seeded)" >&2
"$PY" bench/drift_data.py "$WORK" "$ROWS"

for pair in same shift; do
  echo "== keel: reference vs current_$pair" >&2
  # Exit status 1 means "drift found"; that is an answer, not a failure.
  "$KEEL" monitor drift --reference "$WORK/reference.parquet" --current "$WORK/current_$pair.parquet" --json \
    > "$WORK/keel_$pair.json" || [ $? -eq 1 ]
  for tool in nannyml evidently; do
    echo "== $tool: reference vs current_$pair" >&2
    "$PY" bench/drift_anchor.py "$tool" "$WORK/reference.parquet" "$WORK/current_$pair.parquet" \
      > "$WORK/${tool}_$pair.json"
  done
done

"$PY" - "$WORK" "$ROWS" <<'PY' | tee -a BENCHMARKS.md
import datetime, json, subprocess, sys
work, rows = sys.argv[1], int(sys.argv[2])
shifts = json.load(open(f"{work}/shifts.json"))
def keel(pair):
    r = json.load(open(f"{work}/keel_{pair}.json"))
    return r["seconds"], sorted(c["name"] for c in r["columns"] if c["drifted"])
def anchor(tool, pair):
    r = json.load(open(f"{work}/{tool}_{pair}.json"))
    return r["seconds"], r["flagged"]
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"\n## Drift: {rows:,} rows x 30 columns, Keel vs NannyML vs Evidently ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {nproc} cores. Command: `bench/drift.sh` (seeded files from `bench/drift_data.py`; seconds include "
      "reading both Parquet files; NannyML 0.13.1 univariate drift with KS + JS / chi2 + JS, 100k-row chunks; "
      "Evidently 0.7.23 `DataDriftPreset` defaults).\n")
print("Injected shifts: " + "; ".join(f"`{k}` {v}" for k, v in shifts.items()) + ".\n")
print("| tool | same distribution: seconds | flagged (of 30) | shifted: seconds | flagged | injected shifts caught | false alarms |")
print("|---|---|---|---|---|---|---|")
res = {"Keel": (keel("same"), keel("shift"))}
for tool, name in [("nannyml", "NannyML"), ("evidently", "Evidently")]:
    res[name] = (anchor(tool, "same"), anchor(tool, "shift"))
for name, ((s1, f1), (s2, f2)) in res.items():
    caught = len(set(f2) & set(shifts))
    false = len(set(f2) - set(shifts))
    print(f"| {name} | {s1:.2f} | {len(f1)} | {s2:.2f} | {len(f2)} | {caught}/{len(shifts)} | {false} |")
k = res["Keel"]
for name in ["NannyML", "Evidently"]:
    a = res[name]
    print(f"\nKeel vs {name}: {a[0][0] / k[0][0]:.0f}x faster (same), {a[1][0] / k[1][0]:.0f}x faster (shifted).", end="")
print("\n")
for name, ((_, f1), (_, f2)) in res.items():
    print(f"- {name} flagged on the same-distribution pair: {', '.join(f1) or 'none'}; on the shifted pair: {', '.join(f2) or 'none'}")
PY
