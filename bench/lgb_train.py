"""Anchor for bench/train.sh: writes the shared split, and trains LightGBM on it (single thread)."""
import sys
import time

import lightgbm as lgb
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

DROP = ["id", "year", "prediction", "predicted_probability"]


def split(data, out):
    df = pd.read_parquet(data).drop(columns=DROP)
    train, test = train_test_split(df, test_size=0.2, stratify=df["employed"], random_state=0)
    train.to_parquet(f"{out}/train.parquet", index=False)
    test.to_parquet(f"{out}/test.parquet", index=False)


def train(work):
    tr = pd.read_parquet(f"{work}/train.parquet")
    te = pd.read_parquet(f"{work}/test.parquet")
    ytr, yte = tr.pop("employed"), te.pop("employed")
    start = time.perf_counter()
    model = lgb.LGBMClassifier(n_estimators=300, num_leaves=31, learning_rate=0.05, num_threads=1, verbose=-1)
    model.fit(tr, ytr)
    seconds = time.perf_counter() - start
    auc = roc_auc_score(yte, model.predict_proba(te)[:, 1])
    print(seconds, auc)


if __name__ == "__main__":
    {"split": lambda: split(sys.argv[2], sys.argv[3]), "train": lambda: train(sys.argv[2])}[sys.argv[1]]()
