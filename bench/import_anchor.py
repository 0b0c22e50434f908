"""Anchor for bench/import.sh.

train DATA WORK: the employment data (nannyml's ACS reference, categories as integer codes so every engine reads
the same numeric features), an 80/20 split; a 500-tree LightGBM and a 500-tree XGBoost model (one thread each),
saved in their own formats, converted to ONNX (onnxmltools), compiled by lleaves (LightGBM), saved as an MLflow
model (LightGBM); 10,000 test rows with each library's outputs (rows.bin, read by Keel's import_bench); one JSON
record for the HTTP runs.

time WORK: in-process µs per row at batch 1 (one call per row) and batch 1,000 for each library's own predict,
ONNX Runtime on the converted model and lleaves, all single-threaded; JSON on stdout.
"""
import json
import struct
import sys
import time

import numpy as np
import pandas as pd

DROP = ["id", "year", "prediction", "predicted_probability"]


def frame(data):
    df = pd.read_parquet(data).drop(columns=DROP)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].cat.codes.astype("float64").replace(-1, np.nan)
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


def write_rows(path, X, out):
    with open(path, "wb") as f:
        f.write(struct.pack("<II", X.shape[0], X.shape[1]))
        f.write(np.ascontiguousarray(X, dtype="<f8").tobytes())
        f.write(np.asarray(out, dtype="<f8").tobytes())


def train(data, work):
    import lightgbm as lgb
    import xgboost as xgb
    import mlflow.lightgbm
    import lleaves
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    df = frame(data)
    y = df.pop("employed").to_numpy()
    X = df.to_numpy(dtype=np.float64)
    cut = int(len(X) * 0.8)
    Xtr, ytr, Xte = X[:cut], y[:cut], X[cut:cut + 10000]
    names = list(df.columns)
    booster = lgb.train({"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "num_threads": 1,
                         "verbose": -1, "seed": 0}, lgb.Dataset(Xtr, ytr, feature_name=names), num_boost_round=500)
    booster.save_model(f"{work}/lgb.txt")
    write_rows(f"{work}/lgb.rows.bin", Xte, booster.predict(Xte))
    xb = xgb.train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.05, "nthread": 1, "seed": 0},
                   xgb.DMatrix(Xtr, ytr, feature_names=names), num_boost_round=500)
    xb.save_model(f"{work}/xgb.ubj")
    write_rows(f"{work}/xgb.rows.bin", Xte, xb.predict(xgb.DMatrix(Xte, feature_names=names)))
    kind = [("input", FloatTensorType([None, X.shape[1]]))]
    onx = onnxmltools.convert_lightgbm(booster, initial_types=kind, zipmap=False, target_opset=15)
    open(f"{work}/lgb.onnx", "wb").write(onx.SerializeToString())
    xb_plain = xgb.Booster(model_file=f"{work}/xgb.ubj")
    xb_plain.feature_names = None
    onx = onnxmltools.convert_xgboost(xb_plain, initial_types=kind, target_opset=15)
    open(f"{work}/xgb.onnx", "wb").write(onx.SerializeToString())
    ll = lleaves.Model(model_file=f"{work}/lgb.txt")
    ll.compile(cache=f"{work}/lgb.lleaves.so")
    mlflow.lightgbm.save_model(booster, f"{work}/mlflow-lgb")
    record = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, Xte[0])}
    json.dump(record, open(f"{work}/record.json", "w"))
    json.dump(names, open(f"{work}/names.json", "w"))


def per_row(fn, X, batch, seconds=0.5):
    """Best µs per row over 5 timed passes of at least `seconds`, calling fn on `batch` rows at a time."""
    best = float("inf")
    chunks = [X[i:i + batch] for i in range(0, len(X), batch)]
    for _ in range(5):
        start, rows = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for c in chunks:
                fn(c)
                rows += len(c)
        best = min(best, (time.perf_counter() - start) * 1e6 / rows)
    return best


def timing(work):
    import lightgbm as lgb
    import xgboost as xgb
    import lleaves
    import onnxruntime as ort

    out = {}
    names = json.load(open(f"{work}/names.json"))
    for lib in ("lgb", "xgb"):
        raw = open(f"{work}/{lib}.rows.bin", "rb").read()
        n, nf = struct.unpack("<II", raw[:8])
        X = np.frombuffer(raw[8:8 + 8 * n * nf], dtype="<f8").reshape(n, nf)
        X1 = X[:2000]
        X32 = X.astype(np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(f"{work}/{lib}.onnx", opts, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        onnx_fn = lambda c: sess.run(None, {iname: c})
        if lib == "lgb":
            b = lgb.Booster(model_file=f"{work}/lgb.txt")
            own = lambda c: b.predict(c, num_threads=1)
            ll = lleaves.Model(model_file=f"{work}/lgb.txt")
            ll.compile(cache=f"{work}/lgb.lleaves.so")
            out["lleaves"] = {"batch1": per_row(lambda c: ll.predict(c, n_jobs=1), X1, 1),
                              "batch1000": per_row(lambda c: ll.predict(c, n_jobs=1), X, 1000)}
            own_name = "lightgbm"
        else:
            b = xgb.Booster(model_file=f"{work}/xgb.ubj")
            b.set_param({"nthread": 1})
            own = lambda c: b.inplace_predict(c)
            own_name = "xgboost"
        out[own_name] = {"batch1": per_row(own, X1, 1), "batch1000": per_row(own, X, 1000)}
        out[f"onnxruntime ({own_name})"] = {"batch1": per_row(onnx_fn, X32[:2000], 1),
                                            "batch1000": per_row(onnx_fn, X32, 1000)}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3])
    else:
        timing(sys.argv[2])
