"""Writes the ONNX import fixtures: models exported by skl2onnx (scikit-learn) and onnxmltools (LightGBM,
XGBoost), plus hand-built graphs covering every node mode (LEQ, LT, GTE, GT, EQ, NEQ, opset 5's MEMBER), both
settings of missing_value_tracks_true and a Scaler with a negative scale; and rows scored by ONNX Runtime
(one thread, so leaves are summed in tree order) as `<name>.rows.bin`: u32 rows, u32 features, then the
rows (f64, as Keel receives them; ONNX Runtime gets them rounded to f32), the raw score (the same graph with
post_transform NONE) and the output (probability of class 1, or the regression value), all little-endian f64.
Run by scripts/import-fixtures.sh; the outputs are committed."""
import math, struct, sys, warnings
import numpy as np
import onnx
from onnx import helper, TensorProto
import onnxruntime as ort

warnings.filterwarnings("ignore")
out = sys.argv[1]
rng = np.random.default_rng(20261206)
N_ROWS = 2500


def session(model_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def ensemble_node(m):
    return next(n for n in m.graph.node if n.op_type.startswith(("TreeEnsemble", "Linear")))


def thresholds(m, scaler_inverse=None):
    """Per feature, the split values of the first tree ensemble (mapped back through a Scaler if given)."""
    n = ensemble_node(m)
    at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    feats = at.get("nodes_featureids", [])
    vals = at.get("nodes_values")
    if vals is None and "nodes_splits" in at:
        vals = onnx.numpy_helper.to_array(at["nodes_splits"]).tolist()
    mem = []
    if "membership_values" in at:
        mem = [v for v in onnx.numpy_helper.to_array(at["membership_values"]).tolist() if not math.isnan(v)]
    out_ = {}
    for f, v in zip(feats, vals or []):
        out_.setdefault(f, set()).add(float(v))
    for v in mem:
        for f in set(feats):
            out_.setdefault(f, set()).add(float(v))
    if scaler_inverse:
        out_ = {f: {scaler_inverse(f, v) for v in vs} for f, vs in out_.items()}
    return out_


def edge_pool(th, n_features):
    pool = []
    specials = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-40, -1e-40, 1e39, -1e39, 3.4028235677973366e38,
                3.4028235e38, 1e300, -1e300]
    for j in range(n_features):
        vals = set(specials)
        ts = sorted(th.get(j, ()))
        if len(ts) > 40:  # a sample of the thresholds keeps the fixture small
            ts = [ts[int(i)] for i in rng.choice(len(ts), size=40, replace=False)]
        for t in ts:
            if math.isnan(t) or math.isinf(t):
                continue
            t32 = np.float32(t)
            for k in range(-2, 3):
                v = t32
                for _ in range(abs(k)):
                    v = np.nextafter(v, np.float32(math.inf if k > 0 else -math.inf))
                vals.add(float(v))
            # f64 values around the f32 rounding boundaries of t: the midpoints to each neighbour and theirs.
            for nb in (np.nextafter(t32, np.float32(math.inf)), np.nextafter(t32, np.float32(-math.inf))):
                mid = (float(t32) + float(nb)) / 2
                vals |= {mid, np.nextafter(mid, math.inf), np.nextafter(mid, -math.inf)}
            vals |= {float(t), np.nextafter(float(t), math.inf), np.nextafter(float(t), -math.inf)}
        pool.append(sorted(vals, key=lambda v: (math.isnan(v), 0.0 if math.isnan(v) else v)))
    return pool


def rows_for(pool, n_features, base):
    rows = []
    for i in range(N_ROWS):
        r = list(base[i % len(base)])
        for j in range(n_features):
            if rng.random() < 0.6:
                r[j] = pool[j][rng.integers(0, len(pool[j]))]
        rows.append(r)
    # Every pool value at least once per feature.
    for j in range(n_features):
        for v in pool[j]:
            r = list(base[len(rows) % len(base)])
            r[j] = v
            rows.append(r)
    return np.array(rows, dtype=np.float64)


def run(model, X):
    """The output a Keel user means: probability of class 1, or the value."""
    sess = session(model.SerializeToString())
    name = sess.get_inputs()[0].name
    res = sess.run(None, {name: X.astype(np.float32)})
    outs = {o.name: r for o, r in zip(sess.get_outputs(), res)}
    for key in ("probabilities", "output_probability", "probability_tensor"):
        if key in outs:
            v = outs[key]
            if isinstance(v, list):  # ZipMap: one dict per row
                label = sorted(v[0].keys())[1]
                return np.array([d[label] for d in v], dtype=np.float32)
            return np.asarray(v, dtype=np.float32)[:, 1]
    v = np.asarray(res[0], dtype=np.float32)
    return v.reshape(len(X), -1)[:, 0]


def raw_model(model):
    """The same graph with the ensemble's post_transform NONE and no Exp after it: ONNX Runtime's raw score."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    n = ensemble_node(m)
    for a in n.attribute:
        if a.name == "post_transform":
            if a.type == onnx.AttributeProto.STRING:
                a.s = b"NONE"
            else:
                a.i = 0
    for node in m.graph.node:
        if node.op_type == "Exp":
            node.op_type = "Identity"
    return m


def dump(name, X, raw, outp):
    """`<name>.rows.bin`: u32 rows, u32 features, the rows, the raw scores, the outputs (little-endian f64)."""
    with open(f"{out}/{name}.rows.bin", "wb") as f:
        f.write(struct.pack("<II", X.shape[0], X.shape[1]))
        f.write(X.astype("<f8").tobytes())
        f.write(np.asarray(raw, dtype="<f8").tobytes())
        f.write(np.asarray(outp, dtype="<f8").tobytes())


def canonical(model):
    """The converters list opsets in set order and name graphs by a random id; sorted and named, the files
    reproduce byte for byte."""
    model.graph.name = "keel_fixture"
    ops = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(ops)
    return model


def write(name, model, base, n_features, scaler_inverse=None):
    canonical(model)
    onnx.checker.check_model(model)
    with open(f"{out}/{name}.onnx", "wb") as f:
        f.write(model.SerializeToString())
    X = rows_for(edge_pool(thresholds(model, scaler_inverse), n_features), n_features, base)
    raw = run(raw_model(model), X).astype(np.float64)
    outp = run(model, X).astype(np.float64)
    dump(name, X, raw, outp)
    print(name, len(X), "rows")


from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skl2onnx import to_onnx
import lightgbm as lgb
import xgboost as xgb
from onnxmltools import convert_lightgbm, convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

n = 3000
X = rng.normal(size=(n, 4)).astype(np.float32)
y = ((X[:, 0] + X[:, 1] - X[:, 2] * X[:, 3]) > 0).astype(int)
yr = 2 * X[:, 0] - X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
base = rng.normal(size=(300, 4))
opts = dict(target_opset={"": 17, "ai.onnx.ml": 3})

# 1. scikit-learn GradientBoostingClassifier: LEQ, base value, LOGISTIC.
m = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=1).fit(X, y)
write("skl_gbc", to_onnx(m, X[:1], options={"zipmap": False}, **opts), base, 4)

# 2. A StandardScaler + GradientBoostingRegressor pipeline: the Scaler folds into the thresholds.
m = make_pipeline(StandardScaler(), GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=2))
m.fit(X * np.array([3, 0.5, 10, 1], dtype=np.float32) + 7, yr)
pipe = to_onnx(m, X[:1], **opts)
sc = m.steps[0][1]
write("skl_scaler_gbr", pipe, base * np.array([3, 0.5, 10, 1]) + 7, 4,
      lambda f, v: v * sc.scale_[f] + sc.mean_[f])

# 3. RandomForestClassifier trained with missing values (missing_value_tracks_true), ZipMap output.
Xn = X.copy()
Xn[rng.random(n) < 0.15, 1] = np.nan
m = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=3).fit(Xn, y)
write("skl_rf_nan", to_onnx(m, Xn[:1], **opts), base, 4)

# 4. LightGBM through onnxmltools (binary, NaN in training; a Mul by one after the ensemble).
Xl = X.astype(np.float64)
Xl[rng.random(n) < 0.1, 2] = np.nan
m = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1, random_state=4).fit(Xl, y)
write("onnx_lgb_binary", convert_lightgbm(m, initial_types=[("X", FloatTensorType([None, 4]))], zipmap=False,
                                          target_opset=15), base, 4)

# 5. XGBoost through onnxmltools: BRANCH_LT, base value, classifier and regressor.
m = xgb.XGBClassifier(n_estimators=40, max_depth=4, random_state=5).fit(Xl, y)
write("onnx_xgb_binary", convert_xgboost(m, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=15),
      base, 4)
m = xgb.XGBRegressor(n_estimators=40, max_depth=4, random_state=6).fit(Xl, yr)
write("onnx_xgb_regression",
      convert_xgboost(m, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=15), base, 4)


# LightGBM Poisson through onnxmltools: an Exp after the ensemble.
yp = rng.poisson(np.exp(0.5 * X[:, 0])).astype(float)
m = lgb.LGBMRegressor(objective="poisson", n_estimators=40, num_leaves=15, verbose=-1, random_state=7).fit(Xl, yp)
write("onnx_lgb_poisson", convert_lightgbm(m, initial_types=[("X", FloatTensorType([None, 4]))], target_opset=15),
      base, 4)

# Linear models (skl2onnx): a StandardScaler + LinearRegression pipeline, and a LogisticRegression (ZipMap).
from sklearn.linear_model import LinearRegression, LogisticRegression
Xw = np.concatenate([X, rng.normal(size=(n, 16)).astype(np.float32)], axis=1)
m = make_pipeline(StandardScaler(), LinearRegression()).fit(Xw * 3 + 1, yr)
write("skl_scaler_linreg", to_onnx(m, Xw[:1], **opts), rng.normal(size=(300, 20)) * 3 + 1, 20)
m = LogisticRegression(max_iter=500).fit(Xw, y)
write("skl_logreg", to_onnx(m, Xw[:1], **opts), rng.normal(size=(300, 20)), 20)

# Neural networks (scikit-learn MLPs through skl2onnx: MatMul, Add, Relu, Sigmoid), for the `onnx-runtime`
# build. Scored one row at a time, as Keel serves them (ONNX Runtime's single-row MatMul sums in another order
# than its batched one).
from sklearn.neural_network import MLPClassifier, MLPRegressor


def write_rowwise(name, model, base, n_features):
    canonical(model)
    with open(f"{out}/{name}.onnx", "wb") as f:
        f.write(model.SerializeToString())
    # Finite rows (NaN's bit pattern through a network is the runtime's business): ordinary and far out.
    X = np.concatenate([base, base * 1e3, base * 1e-6]).astype(np.float64)
    sess = session(model.SerializeToString())
    iname = sess.get_inputs()[0].name
    onames = [o.name for o in sess.get_outputs()]
    key = "probabilities" if "probabilities" in onames else onames[0]
    vals = []
    for r in X.astype(np.float32):
        v = np.asarray(sess.run([key], {iname: r.reshape(1, -1)})[0], dtype=np.float32).reshape(-1)
        vals.append(v[-1])
    outp = np.array(vals, dtype=np.float64)
    dump(name, X, outp, outp)
    print(name, len(X), "rows, one at a time")


m = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=400, random_state=9).fit(X, y)
write_rowwise("mlp_binary", to_onnx(m, X[:1], options={"zipmap": False}, **opts), base, 4)
m = MLPRegressor(hidden_layer_sizes=(16,), max_iter=400, random_state=10).fit(X, yr)
write_rowwise("mlp_regression", to_onnx(m, X[:1], **opts), base, 4)

# 6. Hand-built graphs: every mode, both missing settings, a Scaler with a negative scale, opset 5 MEMBER.
def graph(nodes, inputs_f=3, opset_ml=3, outputs=None, inits=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, inputs_f])],
                          outputs or [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
                          initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", opset_ml)])
    m.ir_version = 8 if opset_ml < 5 else 10
    return m


def random_tree_v3(tid, modes, depth, n_features, values):
    """A full tree of the given depth with random modes and thresholds; returns node and leaf attribute lists."""
    nodes, leaves = [], []
    counter = [0]

    def grow(d):
        nid = counter[0]
        counter[0] += 1
        if d == depth:
            nodes.append((tid, nid, 0, "LEAF", 0.0, 0, 0, 0))
            leaves.append((tid, nid, float(np.float32(rng.normal()))))
            return nid
        f = int(rng.integers(0, n_features))
        mode = modes[int(rng.integers(0, len(modes)))]
        v = float(values[f][int(rng.integers(0, len(values[f])))])
        idx = len(nodes)
        nodes.append(None)
        t = grow(d + 1)
        fl = grow(d + 1)
        nodes[idx] = (tid, nid, f, mode, v, t, fl, int(rng.integers(0, 2)))
        return nid

    grow(0)
    return nodes, leaves


values = [np.float32([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0]), np.float32([-0.3, 0.0, 0.7, 1.5]),
          np.float32([0.0, 1.0, 2.0, 3.0, 4.0])]
all_nodes, all_leaves = [], []
for tid in range(30):
    nd, lv = random_tree_v3(tid, ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"],
                            4, 3, values)
    all_nodes += nd
    all_leaves += lv
col = lambda rows, i: [r[i] for r in rows]
modes_reg = helper.make_node(
    "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1,
    nodes_treeids=col(all_nodes, 0), nodes_nodeids=col(all_nodes, 1), nodes_featureids=col(all_nodes, 2),
    nodes_modes=col(all_nodes, 3), nodes_values=col(all_nodes, 4), nodes_truenodeids=col(all_nodes, 5),
    nodes_falsenodeids=col(all_nodes, 6), nodes_missing_value_tracks_true=col(all_nodes, 7),
    target_treeids=col(all_leaves, 0), target_nodeids=col(all_leaves, 1), target_ids=[0] * len(all_leaves),
    target_weights=col(all_leaves, 2), base_values=[0.125], post_transform="NONE", aggregate_function="SUM")
base3 = np.concatenate([rng.normal(size=(300, 2)), rng.integers(0, 5, size=(300, 1)).astype(float)], axis=1)
write("onnx_modes", graph([modes_reg]), base3, 3)

# The same trees behind a Scaler with a negative scale, as a binary classifier with LOGISTIC.
scaler = helper.make_node("Scaler", ["X"], ["Xs"], domain="ai.onnx.ml", offset=[0.5, -1.25, 2.0],
                          scale=[-2.0, 0.75, 1.0])
cls = helper.make_node(
    "TreeEnsembleClassifier", ["Xs"], ["label", "probabilities"], domain="ai.onnx.ml",
    nodes_treeids=col(all_nodes, 0), nodes_nodeids=col(all_nodes, 1), nodes_featureids=col(all_nodes, 2),
    nodes_modes=col(all_nodes, 3), nodes_values=col(all_nodes, 4), nodes_truenodeids=col(all_nodes, 5),
    nodes_falsenodeids=col(all_nodes, 6), nodes_missing_value_tracks_true=col(all_nodes, 7),
    class_treeids=col(all_leaves, 0), class_nodeids=col(all_leaves, 1), class_ids=[0] * len(all_leaves),
    class_weights=[w * 0.2 for w in col(all_leaves, 2)], classlabels_strings=["no", "yes"],
    base_values=[-0.25], post_transform="LOGISTIC")
zm = helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                      classlabels_strings=["no", "yes"])
outs = [helper.make_tensor_value_info("label", TensorProto.STRING, [None]),
        helper.make_value_info("output_probability",
                               helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.STRING,
                                   helper.make_tensor_type_proto(TensorProto.FLOAT, [])))) ]
inv = lambda f, v: v / [-2.0, 0.75, 1.0][f] + [0.5, -1.25, 2.0][f]
write("onnx_scaler_cls", graph([scaler, cls, zm], outputs=outs), base3, 3, inv)

# 7. TreeEnsemble (ai.onnx.ml opset 5) with BRANCH_MEMBER sets and every other mode.
feat, splits, modes, tid_, tl, fid_, fl, mv, roots, leafw, members = [], [], [], [], [], [], [], [], [], [], []
for t in range(20):
    roots.append(len(feat))
    # A chain of 4 splits; each false side goes to the next split, each true side to a leaf; the last false to a leaf.
    for d in range(4):
        k = len(feat)
        mode = int(rng.integers(0, 7))
        f = 2 if mode == 6 else int(rng.integers(0, 3))
        feat.append(f)
        modes.append(mode)
        if mode == 6:
            s = sorted(set(int(v) for v in rng.integers(0, 5, size=int(rng.integers(1, 4)))))
            members += [float(v) for v in s] + [math.nan]
            splits.append(0.0)
        else:
            splits.append(float(values[f][int(rng.integers(0, len(values[f])))]))
        mv.append(int(rng.integers(0, 2)))
        leafw.append(float(np.float32(rng.normal())))
        tid_.append(len(leafw) - 1)
        tl.append(1)
        if d < 3:
            fid_.append(k + 1)
            fl.append(0)
        else:
            leafw.append(float(np.float32(rng.normal())))
            fid_.append(len(leafw) - 1)
            fl.append(1)
v5 = helper.make_node(
    "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, aggregate_function=1, post_transform=0,
    tree_roots=roots, nodes_featureids=feat,
    nodes_splits=helper.make_tensor("s", TensorProto.FLOAT, [len(splits)], splits),
    nodes_modes=helper.make_tensor("m", TensorProto.UINT8, [len(modes)], modes),
    nodes_truenodeids=tid_, nodes_trueleafs=tl, nodes_falsenodeids=fid_, nodes_falseleafs=fl,
    nodes_missing_value_tracks_true=mv, leaf_targetids=[0] * len(leafw),
    leaf_weights=helper.make_tensor("w", TensorProto.FLOAT, [len(leafw)], leafw),
    membership_values=helper.make_tensor("mv", TensorProto.FLOAT, [len(members)], members))
base3b = base3.copy()
base3b[:, 2] = rng.integers(-1, 6, size=300) + (rng.random(300) < 0.1) * 0.5
write("onnx_v5_member", graph([v5], opset_ml=5), base3b, 3)

# 8. The real employment data: a scikit-learn GradientBoostingClassifier trained on the same rows as
# lgb_employment (ids not a multiple of 5), exported by skl2onnx; ONNX Runtime's probabilities of the 3,000
# rows in employment_holdout.csv, for the end-to-end import test (features named by the reference data).
if len(sys.argv) > 2:
    import pandas as pd
    d = pd.read_parquet(sys.argv[2])
    features = [c for c in d.columns if c not in ("id", "employed", "year", "prediction", "predicted_probability")]
    train = d[d.id % 5 != 0]
    Xe = train[features].astype(np.float32).to_numpy()
    m = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=8).fit(Xe, train["employed"])
    model = canonical(to_onnx(m, Xe[:1], options={"zipmap": False}, **opts))
    with open(f"{out}/skl_employment.onnx", "wb") as f:
        f.write(model.SerializeToString())
    rest = pd.read_csv(f"{out}/employment_holdout.csv")
    p = run(model, rest[features].to_numpy(dtype=np.float64))
    with open(f"{out}/skl_employment.expected.txt", "w") as f:
        for v in p:
            f.write(struct.pack(">d", float(v)).hex() + "\n")
    print("skl_employment", len(rest), "rows")

# 9. Multiclass classifiers (three classes): scikit-learn's GradientBoostingClassifier (one tree per class per
# round, SOFTMAX) and RandomForestClassifier (every leaf weighs every class, NONE), LightGBM and XGBoost through
# onnxmltools. `<name>.multi.bin`, little-endian: u32 rows, u32 features, u32 classes, the rows (f64), the raw
# class scores (post_transform NONE) and the probabilities (rows × classes f64 each).
def run_multi(model, X):
    sess = session(model.SerializeToString())
    name = sess.get_inputs()[0].name
    res = sess.run(None, {name: X.astype(np.float32)})
    outs = {o.name: r for o, r in zip(sess.get_outputs(), res)}
    for key in ("probabilities", "output_probability", "probability_tensor"):
        if key in outs:
            v = outs[key]
            if isinstance(v, list):  # ZipMap: one dict per row, classes in label order
                labels = sorted(v[0].keys())
                return np.array([[d[l] for l in labels] for d in v], dtype=np.float32)
            return np.asarray(v, dtype=np.float32)
    raise SystemExit("no probability output")


def write_multi(name, model, base, n_features, k):
    canonical(model)
    onnx.checker.check_model(model)
    with open(f"{out}/{name}.onnx", "wb") as f:
        f.write(model.SerializeToString())
    X = rows_for(edge_pool(thresholds(model), n_features), n_features, base)
    raw = run_multi(raw_model(model), X).astype(np.float64)
    outp = run_multi(model, X).astype(np.float64)
    with open(f"{out}/{name}.multi.bin", "wb") as f:
        f.write(struct.pack("<III", X.shape[0], X.shape[1], k))
        f.write(X.astype("<f8").tobytes())
        f.write(raw.astype("<f8").reshape(-1).tobytes())
        f.write(outp.astype("<f8").reshape(-1).tobytes())
    print(name, len(X), "rows,", k, "classes")


ym = np.argmax(np.stack([X[:, 0], X[:, 1] - X[:, 3], X[:, 2] * X[:, 0]], axis=1)
               + rng.gumbel(size=(n, 3)), axis=1)
m = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=9).fit(X, ym)
write_multi("skl_gbc_multiclass", to_onnx(m, X[:1], options={"zipmap": False}, **opts), base, 4, 3)
m = RandomForestClassifier(n_estimators=15, max_depth=6, random_state=10).fit(Xn, ym)
write_multi("skl_rf_multiclass", to_onnx(m, Xn[:1], **opts), base, 4, 3)
m = lgb.LGBMClassifier(n_estimators=20, num_leaves=15, verbose=-1, random_state=11).fit(Xl, ym)
write_multi("onnx_lgb_multiclass", convert_lightgbm(m, initial_types=[("X", FloatTensorType([None, 4]))],
                                                    zipmap=False, target_opset=15), base, 4, 3)
m = xgb.XGBClassifier(n_estimators=20, max_depth=4, random_state=12).fit(Xl, ym)
write_multi("onnx_xgb_multiclass", convert_xgboost(m, initial_types=[("X", FloatTensorType([None, 4]))],
                                                   target_opset=15), base, 4, 3)
