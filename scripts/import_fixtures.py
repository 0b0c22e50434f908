"""Writes the model-import fixtures: small LightGBM models (text format v4) trained here with pinned
libraries, rows that probe every split (thresholds, their float neighbours, NaN, ±inf, negative, huge and
unseen category codes), and the library's own outputs as IEEE-754 bit patterns (hex), so Keel's import is
tested bit for bit against the source library. Run by scripts/import-fixtures.sh; the outputs are committed."""
import json, math, struct, sys
import numpy as np
import lightgbm as lgb

out = sys.argv[1]
rng = np.random.default_rng(7)

def bits(x):
    return struct.pack(">d", float(x)).hex()

def edge_rows(model, n_features, categorical):
    """Rows on and around every numeric threshold, plus NaN/inf/category edge values, plus random rows."""
    dump = model.dump_model()
    thresholds = {i: set() for i in range(n_features)}
    def walk(node):
        if "split_feature" in node:
            if node.get("decision_type") == "<=":
                thresholds[node["split_feature"]].add(float(node["threshold"]))
            walk(node["left_child"]); walk(node["right_child"])
    for t in dump["tree_info"]:
        walk(t["tree_structure"])
    rows = []
    base = rng.normal(size=(400, n_features))
    for j in categorical:
        base[:, j] = rng.integers(0, 6, size=400)
    rows.extend(base.tolist())
    kz = float(np.float32(1e-35))
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-36, -1e-36, 1e300, kz, -kz,
                np.nextafter(kz, math.inf), np.nextafter(-kz, -math.inf), 1e-30, -1e-30]
    for j in range(n_features):
        vals = set(specials)
        if j in categorical:
            vals |= {-1.0, -3.0, -0.5, 0.5, 5.0, 6.0, 63.0, 64.0, 1000.0, 2.5, 1e12}
        for t in sorted(thresholds[j]):
            vals |= {t, np.nextafter(t, math.inf), np.nextafter(t, -math.inf),
                     float(np.float32(t)), float(np.nextafter(np.float32(t), np.float32(math.inf)))}
        # Sorted (NaN last): a set's order of NaN depends on object identity, and the fixtures must reproduce.
        for v in sorted(vals, key=lambda v: (math.isnan(v), 0.0 if math.isnan(v) else v)):
            r = list(base[len(rows) % 400])
            r[j] = v
            rows.append(r)
    return rows

def write(name, model, rows, objective):
    X = np.array(rows, dtype=np.float64)
    raw = model.predict(X, raw_score=True)
    out_ = model.predict(X)
    model.save_model(f"{out}/{name}.txt")
    with open(f"{out}/{name}.rows.jsonl", "w") as f:
        for r, m, p in zip(rows, raw, out_):
            f.write(json.dumps({"x": [bits(v) for v in r], "raw": bits(m), "out": bits(p)}) + "\n")
    print(name, len(rows), "rows", objective)

# 1. Binary, numeric, NaN in training (missing type NaN, learned default directions).
n = 3000
X = rng.normal(size=(n, 4))
X[rng.random(n) < 0.1, 1] = np.nan
y = ((X[:, 0] + np.nan_to_num(X[:, 1], nan=1.5) - X[:, 2] * X[:, 3]) > 0).astype(int)
m = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 1},
              lgb.Dataset(X, y), num_boost_round=40)
write("lgb_binary_nan", m, edge_rows(m, 4, []), "binary")

# 2. Regression, no missing values in training (missing type None: NaN reads as 0).
X = rng.normal(size=(n, 3))
y = 2 * X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
m = lgb.train({"objective": "regression", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 2},
              lgb.Dataset(X, y), num_boost_round=40)
write("lgb_regression_none", m, edge_rows(m, 3, []), "regression")

# 3. Binary with a categorical feature (integer codes; bitsets send listed codes left).
X = rng.normal(size=(n, 3))
X[:, 2] = rng.integers(0, 6, size=n)
y = ((X[:, 0] + np.isin(X[:, 2], [1, 4]) * 2 - 1) > 0).astype(int)
m = lgb.train({"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 3,
               "min_data_per_group": 5, "cat_smooth": 1},
              lgb.Dataset(X, y, categorical_feature=[2]), num_boost_round=40)
write("lgb_binary_categorical", m, edge_rows(m, 3, [2]), "binary")

# 4. Regression with zero_as_missing (missing type Zero: NaN and values within 1e-35 of zero are missing).
X = rng.normal(size=(n, 3))
X[rng.random(n) < 0.15, 0] = 0.0
y = np.where(X[:, 0] == 0.0, 3.0, X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=n)
m = lgb.train({"objective": "regression", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 4,
               "zero_as_missing": True},
              lgb.Dataset(X, y), num_boost_round=40)
write("lgb_regression_zero", m, edge_rows(m, 3, []), "regression")

# 5. Poisson regression (exp link) with NaN in training.
X = rng.normal(size=(n, 3))
X[rng.random(n) < 0.1, 2] = np.nan
lam = np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1])
y = rng.poisson(lam)
m = lgb.train({"objective": "poisson", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "seed": 5},
              lgb.Dataset(X, y), num_boost_round=40)
write("lgb_poisson", m, edge_rows(m, 3, []), "poisson")

# 6. The real employment data (nannyml's ACS employment reference, 2015) with pandas categories: trained on
# the rows whose id is not a multiple of 5; 3,000 of the others are written as a CSV with LightGBM's
# probabilities, for the end-to-end import test (labels in, categories by name, bit-exact outputs).
if len(sys.argv) > 2:
    import pandas as pd
    d = pd.read_parquet(sys.argv[2])
    features = [c for c in d.columns if c not in ("id", "employed", "year", "prediction", "predicted_probability")]
    train = d[d.id % 5 != 0]
    rest = d[d.id % 5 == 0].head(3000)
    m = lgb.train({"objective": "binary", "num_leaves": 31, "learning_rate": 0.1, "verbose": -1, "seed": 6,
                   "min_data_per_group": 20},
                  lgb.Dataset(train[features], train["employed"]), num_boost_round=60)
    m.save_model(f"{out}/lgb_employment.txt")
    rest[features + ["employed"]].to_csv(f"{out}/employment_holdout.csv", index=False)
    p = m.predict(rest[features])
    with open(f"{out}/lgb_employment.expected.txt", "w") as f:
        for v in p:
            f.write(bits(v) + "\n")
    print("lgb_employment", len(rest), "rows")

# XGBoost 3.2.0 (JSON and UBJSON): inputs are rounded to f32, `x < split_condition`, margins summed in f32.
import xgboost as xgb

def xgb_rows(model, n_features, categorical):
    """Rows on and around every split condition: the f32 value, its f32 neighbours, and the f64 midpoints
    between it and its f32 neighbours (where f32 rounding flips) with their f64 neighbours."""
    j = json.loads(model.save_raw("json"))
    conds = {i: set() for i in range(n_features)}
    gb = j["learner"]["gradient_booster"]
    for t in gb.get("gbtree", gb)["model"]["trees"]:
        for k, l in enumerate(t["left_children"]):
            if l != -1 and t["split_type"][k] == 0:
                conds[t["split_indices"][k]].add(float(np.float32(t["split_conditions"][k])))
    rows = []
    base = rng.normal(size=(300, n_features))
    for c in categorical:
        base[:, c] = rng.integers(0, 6, size=300)
    rows.extend(base.tolist())
    specials = [math.nan, 0.0, -0.0, 1e-40, -1e-40, 1e-50, -1e-50, 3e38, -3e38]
    for f in range(n_features):
        vals = set(specials)
        if f in categorical:
            vals |= {-1.0, -0.5, -1e-50, 0.5, 2.9999999999, 3.0000001, 5.0, 6.0, 63.0, 64.0, 1000.0,
                     16777215.0, 16777216.0, 16777217.0, 1e12}
        for t in sorted(conds[f]):
            t32 = np.float32(t)
            lo = np.nextafter(t32, np.float32(-np.inf))
            hi = np.nextafter(t32, np.float32(np.inf))
            for a, b in ((lo, t32), (t32, hi)):
                mid = (float(a) + float(b)) / 2
                vals |= {mid, np.nextafter(mid, math.inf), np.nextafter(mid, -math.inf)}
            vals |= {float(t32), float(lo), float(hi)}
        for v in sorted(vals, key=lambda v: (math.isnan(v), 0.0 if math.isnan(v) else v)):
            r = list(base[len(rows) % 300])
            r[f] = v
            rows.append(r)
    return rows

def write_xgb(name, model, rows, categorical, n_features):
    X = np.array(rows, dtype=np.float64)
    types = ["c" if i in categorical else "q" for i in range(n_features)]
    d = xgb.DMatrix(X, feature_types=types, enable_categorical=bool(categorical))
    raw = model.predict(d, output_margin=True)
    out_ = model.predict(d)
    model.save_model(f"{out}/{name}.json")
    model.save_model(f"{out}/{name}.ubj")
    with open(f"{out}/{name}.rows.jsonl", "w") as f:
        for r, m, p in zip(rows, raw, out_):
            f.write(json.dumps({"x": [bits(v) for v in r], "raw": bits(float(m)), "out": bits(float(p))}) + "\n")
    print(name, len(rows), "rows")

# 7. Binary with NaN in two features (learned default directions both ways).
X = rng.normal(size=(n, 4))
X[rng.random(n) < 0.15, 1] = np.nan
X[rng.random(n) < 0.15, 3] = np.nan
y = ((X[:, 0] + np.nan_to_num(X[:, 1], nan=-2.0) - np.nan_to_num(X[:, 3], nan=2.0) * X[:, 2]) > 0).astype(int)
m = xgb.train({"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 7},
              xgb.DMatrix(X, y), num_boost_round=30)
write_xgb("xgb_binary_nan", m, xgb_rows(m, 4, []), [], 4)

# 8. Regression and Poisson.
X = rng.normal(size=(n, 3))
y = 2 * X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
m = xgb.train({"objective": "reg:squarederror", "max_depth": 4, "seed": 8}, xgb.DMatrix(X, y), num_boost_round=30)
write_xgb("xgb_regression", m, xgb_rows(m, 3, []), [], 3)
y = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 1]))
m = xgb.train({"objective": "count:poisson", "max_depth": 4, "seed": 9}, xgb.DMatrix(X, y), num_boost_round=30)
write_xgb("xgb_poisson", m, xgb_rows(m, 3, []), [], 3)

# 9. A categorical feature (codes; sets in the node go right, unseen and invalid codes left).
X = rng.normal(size=(n, 3))
X[:, 2] = rng.integers(0, 6, size=n)
X[rng.random(n) < 0.1, 2] = np.nan
y = ((X[:, 0] + np.isin(X[:, 2], [1, 4]) * 2 - 1) > 0).astype(int)
m = xgb.train({"objective": "binary:logistic", "max_depth": 4, "seed": 10, "max_cat_to_onehot": 1},
              xgb.DMatrix(X, y, feature_types=["q", "q", "c"], enable_categorical=True), num_boost_round=30)
write_xgb("xgb_categorical", m, xgb_rows(m, 3, [2]), [2], 3)

# 10. Property sets: 10,000 rows per model whose every cell is drawn at random from that feature's edge values
# (split points and their f32/f64 neighbours and midpoints, NaN, ±0, tiny, huge, negative, fractional and unseen
# codes) or a random value, pre-scored by the library. Little-endian binary: u32 rows, u32 features, the rows
# (f64), the raw margins (f64), the outputs (f64).
def property_set(name, model, edge, n_features, categorical, predict_raw, predict_out):
    pool = [sorted({v for r in edge for v in [r[f]] if not math.isnan(v)}) + [math.nan] for f in range(n_features)]
    rows = []
    for _ in range(10000):
        r = []
        for f in range(n_features):
            u = rng.random()
            if u < 0.7:
                r.append(pool[f][rng.integers(0, len(pool[f]))])
            elif f in categorical:
                r.append(float(rng.integers(-3, 70)) + (0.5 if u > 0.95 else 0.0))
            else:
                r.append(float(rng.normal() * 3))
        rows.append(r)
    X = np.array(rows, dtype=np.float64)
    raw = np.asarray(predict_raw(X), dtype=np.float64)
    outp = np.asarray(predict_out(X), dtype=np.float64)
    with open(f"{out}/{name}.property.bin", "wb") as f:
        f.write(struct.pack("<II", len(rows), n_features))
        f.write(X.astype("<f8").tobytes())
        f.write(raw.astype("<f8").tobytes())
        f.write(outp.astype("<f8").tobytes())
    print(name, "property set", len(rows))

lgb_cat = lgb.Booster(model_file=f"{out}/lgb_binary_categorical.txt")
lgb_edge = [[struct.unpack(">d", bytes.fromhex(x))[0] for x in json.loads(l)["x"]]
            for l in open(f"{out}/lgb_binary_categorical.rows.jsonl")]
property_set("lgb_binary_categorical", lgb_cat, lgb_edge, 3, [2],
             lambda X: lgb_cat.predict(X, raw_score=True), lambda X: lgb_cat.predict(X))
xgb_cat = xgb.Booster(model_file=f"{out}/xgb_categorical.ubj")
xgb_edge = [[struct.unpack(">d", bytes.fromhex(x))[0] for x in json.loads(l)["x"]]
            for l in open(f"{out}/xgb_categorical.rows.jsonl")]
xgb_dm = lambda X: xgb.DMatrix(X, feature_types=["q", "q", "c"], enable_categorical=True)
property_set("xgb_categorical", xgb_cat, xgb_edge, 3, [2],
             lambda X: xgb_cat.predict(xgb_dm(X), output_margin=True), lambda X: xgb_cat.predict(xgb_dm(X)))

# 11. XGBoost dart (leaves scaled by each tree's weight at prediction).
X = rng.normal(size=(n, 3))
y = ((X[:, 0] - X[:, 1] * X[:, 2]) > 0).astype(int)
m = xgb.train({"objective": "binary:logistic", "booster": "dart", "max_depth": 4, "rate_drop": 0.3, "seed": 11},
              xgb.DMatrix(X, y), num_boost_round=30)
write_xgb("xgb_dart", m, xgb_rows(m, 3, []), [], 3)

# 12. Multiclass: LightGBM softmax (with a categorical feature and NaN) and one-vs-all, XGBoost softprob (one
# intercept per class, tree_info naming each tree's class). `<name>.multi.bin`, little-endian: u32 rows, u32
# features, u32 classes, the rows (f64), the raw class scores and the outputs (rows × classes f64 each).
def write_multi(name, X, raw, outp, k):
    X = np.asarray(X, dtype=np.float64)
    with open(f"{out}/{name}.multi.bin", "wb") as f:
        f.write(struct.pack("<III", X.shape[0], X.shape[1], k))
        f.write(X.astype("<f8").tobytes())
        f.write(np.asarray(raw, dtype="<f8").reshape(-1).tobytes())
        f.write(np.asarray(outp, dtype="<f8").reshape(-1).tobytes())
    print(name, X.shape[0], "rows,", k, "classes")

X = rng.normal(size=(n, 4))
X[rng.random(n) < 0.1, 1] = np.nan
X[:, 3] = rng.integers(0, 5, size=n)
s = np.stack([X[:, 0], np.nan_to_num(X[:, 1], nan=1.0) + (X[:, 3] == 2) * 1.5, X[:, 2] - X[:, 0]], axis=1)
y = np.argmax(s + rng.gumbel(size=s.shape), axis=1)
for obj, seed in (("multiclass", 12), ("multiclassova", 13)):
    m = lgb.train({"objective": obj, "num_class": 3, "num_leaves": 15, "learning_rate": 0.1, "verbose": -1,
                   "seed": seed, "min_data_per_group": 5, "cat_smooth": 1},
                  lgb.Dataset(X, y, categorical_feature=[3]), num_boost_round=25)
    name = f"lgb_{obj}"
    m.save_model(f"{out}/{name}.txt")
    R = np.array(edge_rows(m, 4, [3]), dtype=np.float64)
    write_multi(name, R, m.predict(R, raw_score=True), m.predict(R), 3)
m = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 4, "eta": 0.3, "seed": 14},
              xgb.DMatrix(X[:, :3], y), num_boost_round=20)
m.save_model(f"{out}/xgb_multiclass.json")
m.save_model(f"{out}/xgb_multiclass.ubj")
R = np.array(xgb_rows(m, 3, []), dtype=np.float64)
d = xgb.DMatrix(R)
write_multi("xgb_multiclass", R, m.predict(d, output_margin=True), m.predict(d), 3)
