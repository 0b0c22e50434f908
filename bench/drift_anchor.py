"""Anchors for bench/drift.sh: NannyML and Evidently on the same files Keel reads.

  drift_anchor.py nannyml|evidently REFERENCE CURRENT

prints {"seconds": s, "flagged": [column, ...]}; seconds include reading both Parquet files with pandas, as
Keel's include reading them.
"""
import json
import os
import sys
import time

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import pandas as pd  # noqa: E402


def nannyml(ref, cur):
    import nannyml as nml

    cats = [c for c in ref.columns if ref[c].dtype == object or str(ref[c].dtype) == "category"]
    calc = nml.UnivariateDriftCalculator(
        column_names=list(ref.columns),
        treat_as_categorical=cats,
        continuous_methods=["kolmogorov_smirnov", "jensen_shannon"],
        categorical_methods=["chi2", "jensen_shannon"],
        chunk_size=100_000,
    )
    calc.fit(ref)
    df = calc.calculate(cur).filter(period="analysis").to_df()
    flagged = set()
    for col in df.columns:
        if len(col) == 3 and col[2] == "alert" and df[col].fillna(False).astype(bool).any():
            flagged.add(col[0])
    return sorted(flagged)


def evidently(ref, cur):
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snap = Report([DataDriftPreset()]).run(cur, ref)
    flagged = []
    for m in snap.dict()["metrics"]:
        cfg = m.get("config", {})
        if not cfg.get("type", "").endswith("ValueDrift"):
            continue
        v, t = m["value"], cfg["threshold"]
        drifted = v < t if "p_value" in cfg["method"] else v >= t
        if drifted:
            flagged.append(cfg["column"])
    return sorted(flagged)


def main():
    tool, ref_path, cur_path = sys.argv[1:4]
    start = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    flagged = {"nannyml": nannyml, "evidently": evidently}[tool](ref, cur)
    print(json.dumps({"seconds": time.perf_counter() - start, "flagged": flagged}))


if __name__ == "__main__":
    main()
