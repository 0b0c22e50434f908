"""Builds the drift benchmark's files (seeded, so every run sees the same data).

  drift_data.py OUT ROWS

writes OUT/reference.parquet, OUT/current_same.parquet (a second sample of the same distribution) and
OUT/current_shift.parquet (the same distribution with known shifts in six columns), each ROWS x 30 columns:
num_00 .. num_19 (numeric: normal, log-normal, uniform, exponential, integer counts, some with missing values)
and cat_00 .. cat_09 (categorical strings with 3 to 40 levels). OUT/shifts.json names the shifted columns.
"""
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHIFTED = {
    "num_00": "mean +0.5 sd",
    "num_05": "scale x1.5",
    "num_10": "20 % of values from a second mode",
    "num_15": "missing rate 2 % -> 15 %",
    "cat_00": "level frequencies 50/30/20 -> 30/30/40",
    "cat_05": "a new level at 15 %",
}


def numeric(rng, j, n, shift):
    kind = j % 5
    if kind == 0:
        x = rng.normal(10.0, 2.0, n)
        if shift and j == 0:
            x += 1.0
    elif kind == 1:
        x = rng.lognormal(1.0, 0.5, n)
    elif kind == 2:
        x = rng.uniform(-5.0, 5.0, n)
    elif kind == 3:
        x = rng.exponential(3.0, n)
    else:
        x = rng.poisson(4.0, n).astype(np.float64)
    if shift and j == 5:
        x = x.mean() + (x - x.mean()) * 1.5
    if shift and j == 10:
        k = rng.random(n) < 0.2
        x[k] = rng.normal(4.0, 0.5, k.sum())
    missing = 0.02 if j % 3 == 0 else 0.0
    if shift and j == 15:
        missing = 0.15
    if missing:
        x[rng.random(n) < missing] = np.nan
    return pa.array(x, mask=np.isnan(x))


def categorical(rng, j, n, shift):
    k = [3, 5, 8, 12, 40][j % 5]
    levels = [f"L{i:02d}" for i in range(k)]
    if j == 0:
        p = np.array([0.5, 0.3, 0.2])
        if shift:
            p = np.array([0.3, 0.3, 0.4])
    else:
        w = 1.0 / np.arange(1, k + 1)
        p = w / w.sum()
    if shift and j == 5:
        levels = levels + ["NEW"]
        p = np.append(p * 0.85, 0.15)
    idx = rng.choice(len(levels), size=n, p=p)
    return pa.DictionaryArray.from_arrays(pa.array(idx, type=pa.int32()), pa.array(levels)).cast(pa.string())


def table(seed, n, shift):
    rng = np.random.default_rng(seed)
    cols = {f"num_{j:02d}": numeric(rng, j, n, shift) for j in range(20)}
    cols.update({f"cat_{j:02d}": categorical(rng, j, n, shift) for j in range(10)})
    return pa.table(cols)


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    pq.write_table(table(1, n, False), f"{out}/reference.parquet")
    pq.write_table(table(2, n, False), f"{out}/current_same.parquet")
    pq.write_table(table(3, n, True), f"{out}/current_shift.parquet")
    json.dump(SHIFTED, open(f"{out}/shifts.json", "w"), indent=1)


if __name__ == "__main__":
    main()
