"""Anchors for bench/serving.sh.

  train DATA OUT     trains the 200-tree LightGBM model and saves it as an MLflow model in OUT; writes OUT/record.json
                     (one real row, categories as their integer codes: the payload every server gets)
  coldstart CMD...   starts CMD (a keel serve command line), posts the payload until a prediction succeeds, and
                     prints the milliseconds from process start to the first successful prediction
"""
import json
import subprocess
import sys
import time
import urllib.request

DROP = ["id", "year", "prediction", "predicted_probability", "employed"]


def train(data, out):
    import lightgbm as lgb
    import mlflow.lightgbm
    import pandas as pd

    df = pd.read_parquet(data)
    y = df["employed"]
    x = df.drop(columns=DROP)
    cats = [c for c in x.columns if str(x[c].dtype) == "category"]
    for c in cats:
        x[c] = x[c].astype(str).astype(int)
    model = lgb.LGBMClassifier(n_estimators=200, num_leaves=31, learning_rate=0.05, verbose=-1)
    model.fit(x, y, categorical_feature=cats)
    mlflow.lightgbm.save_model(model, f"{out}/mlflow-model", input_example=x.head(2))
    record = {c: (int(v) if c in cats else float(v)) for c, v in x.iloc[7].items()}
    json.dump(record, open(f"{out}/record.json", "w"))


def coldstart(url, body, key, cmd):
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - start > 30:
                raise SystemExit("keel serve did not answer within 30 s")
            time.sleep(0.0005)
        print(f"{(time.perf_counter() - start) * 1000:.1f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    else:
        coldstart(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
