"""Anchor for bench/train.sh: writes each data set's shared split, and trains LightGBM on it.

Usage:
  lgb_train.py split NAME CACHE OUT        write OUT/train.parquet and OUT/test.parquet for data set NAME
  lgb_train.py train NAME OUT THREADS      train LightGBM on them; prints "seconds metric peak_rss_mb"
"""
import resource
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, mean_poisson_deviance, mean_squared_error, roc_auc_score
from sklearn.model_selection import train_test_split

NANNY = "nannyml-0.13.1"
DATASETS = {
    # name: (file under the cache, target, columns dropped, task)
    "employment": (f"{NANNY}/employment_MA_reference.pq", "employed",
                   ["id", "year", "prediction", "predicted_probability"], "binary"),
    "credit-cards": (f"{NANNY}/mc_reference.csv", "y_true",
                     ["id", "timestamp", "y_pred", "y_pred_proba_prepaid_card", "y_pred_proba_highstreet_card",
                      "y_pred_proba_upmarket_card"], "multiclass"),
    "car-accidents": (f"{NANNY}/regression_synthetic_reference.csv", "accident_count",
                      ["id", "timestamp", "y_true", "y_pred"], "poisson"),
    "car-prices": (f"{NANNY}/regression_synthetic_reference.csv", "y_true",
                   ["id", "timestamp", "y_pred"], "regression"),
    "flights": ("vega-datasets-3.2.1/flights-3m.parquet", "late", [], "binary"),
}
# Keel's metric for each task, and how the anchor computes the same number.
METRIC = {"binary": "auc", "multiclass": "log_loss", "poisson": "poisson_deviance", "regression": "mse"}


def load(name, cache):
    path, target, drop, _ = DATASETS[name]
    full = f"{cache}/{path}"
    df = pd.read_parquet(full) if full.endswith((".pq", ".parquet")) else pd.read_csv(full)
    if name == "flights":
        # The binary task of the data set's description: delayed by more than 15 minutes. The date becomes
        # numbers both engines read the same way (no engine-specific date handling is measured).
        date = pd.to_datetime(df.pop("date"))
        df["late"] = (df.pop("delay") > 15).astype(int)
        df["month"] = date.dt.month
        df["day_of_week"] = date.dt.dayofweek
        df["hour"] = date.dt.hour + date.dt.minute / 60.0
    return df.drop(columns=drop), target


def split(name, cache, out):
    df, target = load(name, cache)
    task = DATASETS[name][3]
    strat = df[target] if task in ("binary", "multiclass") else None
    train, test = train_test_split(df, test_size=0.2, stratify=strat, random_state=0)
    train.to_parquet(f"{out}/train.parquet", index=False)
    test.to_parquet(f"{out}/test.parquet", index=False)


def train(name, work, threads):
    _, target, _, task = DATASETS[name]
    tr = pd.read_parquet(f"{work}/train.parquet")
    te = pd.read_parquet(f"{work}/test.parquet")
    ytr, yte = tr.pop(target), te.pop(target)
    for c in tr.columns:
        if tr[c].dtype == object or str(tr[c].dtype) in ("bool", "string"):
            cats = pd.CategoricalDtype(sorted(set(tr[c].astype(str))))
            tr[c] = tr[c].astype(str).astype(cats)
            te[c] = te[c].astype(str).astype(cats)
    params = dict(n_estimators=300, num_leaves=31, learning_rate=0.05, min_child_samples=20, max_bin=255,
                  num_threads=threads, verbose=-1)
    if task == "binary":
        model = lgb.LGBMClassifier(**params)
    elif task == "multiclass":
        labels = sorted(set(ytr))
        ytr = ytr.map({l: i for i, l in enumerate(labels)})
        yte = yte.map({l: i for i, l in enumerate(labels)})
        model = lgb.LGBMClassifier(objective="multiclass", **params)
    elif task == "poisson":
        model = lgb.LGBMRegressor(objective="poisson", **params)
    else:
        model = lgb.LGBMRegressor(objective="regression", **params)
    start = time.perf_counter()
    model.fit(tr, ytr)
    seconds = time.perf_counter() - start
    if task == "binary":
        metric = roc_auc_score(yte, model.predict_proba(te)[:, 1])
    elif task == "multiclass":
        metric = log_loss(yte, model.predict_proba(te))
    elif task == "poisson":
        metric = mean_poisson_deviance(yte, np.maximum(model.predict(te), 1e-12))
    else:
        metric = mean_squared_error(yte, model.predict(te))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(seconds, metric, rss_mb)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "split":
        split(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "train":
        train(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "meta":
        print(DATASETS[sys.argv[2]][1], DATASETS[sys.argv[2]][3], METRIC[DATASETS[sys.argv[2]][3]])
