"""Python anchors for bench/rag.sh, run on the same inputs as Keel.

  rag_anchor.py retrieval CHUNKS.jsonl QRELS.jsonl MINILM_DIR   -> JSON: bm25s, sentence-transformers + hnswlib,
                                                                   their RRF, and embedding throughput
  rag_anchor.py ann-data FASHION_DIR OUT_DIR                    -> base.f32, query.f32, gt.u32 (brute force)
  rag_anchor.py ann OUT_DIR M EF_CONSTRUCTION EF[,EF...]        -> JSON: hnswlib single-thread recall@10 and qps

Chunks come from `keel rag chunks --json`; each is indexed as Keel indexes it (section title, newline, text).
"""
import gzip
import json
import math
import os
import sys
import time

import numpy as np


def judged(ranked, chunks, relevant):
    """Keel's evaluation (keel_rag::eval::judged): distinct units at their best chunk's rank (MaxP) — a chunk
    that matches a relevant ID stands for it, any other for its document; repeats are dropped."""
    rel, seen_hits, seen_misses, out = set(relevant), set(), set(), []
    for i in ranked:
        c = chunks[i]
        with_section = f"{c['document']}#{c['section']}"
        hit = with_section if with_section in rel else (c["document"] if c["document"] in rel else None)
        if hit is not None:
            if hit not in seen_hits:
                seen_hits.add(hit)
                out.append(hit)
        elif c["document"] not in seen_misses:
            seen_misses.add(c["document"])
            out.append(None)
    return out


def score(j, n_rel):
    n = max(n_rel, 1)
    rec5 = sum(1 for x in j[:5] if x) / n
    mrr = next((1.0 / (i + 1) for i, x in enumerate(j[:10]) if x), 0.0)
    dcg = sum(1.0 / math.log2(i + 2) for i, x in enumerate(j[:10]) if x)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(n, 10)))
    return rec5, mrr, dcg / idcg


def mean(rows):
    if not rows:
        return {"recall@5": 0, "mrr@10": 0, "ndcg@10": 0, "queries": 0}
    a = np.array(rows).mean(axis=0)
    return {"recall@5": float(a[0]), "mrr@10": float(a[1]), "ndcg@10": float(a[2]), "queries": len(rows)}


def tokenize(texts):
    """bm25s's tokenizer with English stop words and the Snowball English stemmer (PyStemmer)."""
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)


def retrieval(chunks_path, qrels_path, model_dir):
    import bm25s
    import hnswlib
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(os.cpu_count() or 1)
    chunks = [json.loads(l) for l in open(chunks_path)]
    texts = [(c["section"] + "\n" + c["text"]) if c["section"] else c["text"] for c in chunks]
    qrels = [json.loads(l) for l in open(qrels_path)]
    queries = [q["query"] for q in qrels]

    # BM25 (bm25s: Lucene variant, k1 1.5, b 0.75, English stop words and the Snowball English stemmer).
    t = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    bm25_index_s = time.perf_counter() - t
    res, bm25_scores = retriever.retrieve(tokenize(queries), k=50, show_progress=False)
    bm25_runs = [list(map(int, r)) for r in res]

    # Dense: the same MiniLM model in sentence-transformers, vectors in hnswlib (M 16, ef_construction 200).
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256  # the model's published setting, and Keel's truncation
    model.encode(texts[:64], batch_size=32)  # warm-up
    t = time.perf_counter()
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
    embed_s = time.perf_counter() - t
    index = hnswlib.Index(space="cosine", dim=vecs.shape[1])
    index.init_index(max_elements=len(texts), M=16, ef_construction=200, random_seed=42)
    index.add_items(vecs, np.arange(len(texts)))
    index.set_ef(64)
    qv = model.encode(queries, batch_size=32, normalize_embeddings=True)
    labels, dists = index.knn_query(qv, k=50)
    dense_runs = [list(map(int, r)) for r in labels]

    def rrf(a, b, k=60.0):
        s = {}
        for run in (a, b):
            for rank, i in enumerate(run):
                s[i] = s.get(i, 0.0) + 1.0 / (k + rank + 1)
        return [i for i, _ in sorted(s.items(), key=lambda x: (-x[1], x[0]))]

    def convex(ids_a, sc_a, ids_b, sc_b, w=0.5):
        """Min-max normalised scores, w on the dense side (a chunk missing from a list scores 0 there)."""
        def norm(ids, sc):
            sc = [float(x) for x in sc]
            lo, hi = min(sc), max(sc)
            return {int(i): (x - lo) / max(hi - lo, 1e-9) for i, x in zip(ids, sc)}
        a, b = norm(ids_a, sc_a), norm(ids_b, sc_b)
        s = {i: (1 - w) * a.get(i, 0.0) + w * b.get(i, 0.0) for i in set(a) | set(b)}
        return [i for i, _ in sorted(s.items(), key=lambda x: (-x[1], x[0]))]

    convex_runs = [convex(a, sa, b, [1.0 - d for d in db])
                   for a, sa, b, db in zip(bm25_runs, bm25_scores, dense_runs, dists)]
    out = {}
    for name, runs in [("bm25", bm25_runs), ("dense", dense_runs),
                       ("rrf", [rrf(a, b) for a, b in zip(bm25_runs, dense_runs)]),
                       ("convex", convex_runs)]:
        out[name] = mean([score(judged(r, chunks, q["relevant"]), len(q["relevant"]))
                          for r, q in zip(runs, qrels)])
    out["embedding"] = {"texts": len(texts), "seconds": embed_s, "per_second": len(texts) / embed_s,
                        "threads": torch.get_num_threads()}
    out["bm25_index_seconds"] = bm25_index_s
    print(json.dumps(out))


def bm25_only(chunks_path, *qrels_paths):
    """bm25s alone (no torch): for the BM25 parity bench, bench/rag_bm25.sh."""
    import bm25s

    chunks = [json.loads(l) for l in open(chunks_path)]
    texts = [(c["section"] + "\n" + c["text"]) if c["section"] else c["text"] for c in chunks]
    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    out = {}
    for path in qrels_paths:
        qrels = [json.loads(l) for l in open(path)]
        res, _ = retriever.retrieve(tokenize([q["query"] for q in qrels]), k=50, show_progress=False)
        out[os.path.basename(path)] = mean([score(judged(list(map(int, r)), chunks, q["relevant"]), len(q["relevant"]))
                                            for r, q in zip(res, qrels)])
    print(json.dumps(out))


def dense_only(chunks_path, model_dir, max_seq, *qrels_paths):
    """sentence-transformers alone over the same chunks, exact cosine, plus its convex and RRF hybrids with
    bm25s: for the second local model (all-mpnet-base-v2 at 384 tokens)."""
    import bm25s
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(os.cpu_count() or 1)
    chunks = [json.loads(l) for l in open(chunks_path)]
    texts = [(c["section"] + "\n" + c["text"]) if c["section"] else c["text"] for c in chunks]
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = int(max_seq)
    t = time.perf_counter()
    vecs = model.encode(texts, batch_size=16, normalize_embeddings=True)
    embed_s = time.perf_counter() - t
    retriever = bm25s.BM25()
    retriever.index(tokenize(texts), show_progress=False)
    out = {"embedding": {"texts": len(texts), "seconds": embed_s, "per_second": len(texts) / embed_s}}
    for path in qrels_paths:
        qrels = [json.loads(l) for l in open(path)]
        queries = [q["query"] for q in qrels]
        qv = model.encode(queries, batch_size=16, normalize_embeddings=True)
        sims = qv @ vecs.T
        dense_runs = [list(np.argsort(-row, kind="stable")[:50]) for row in sims]
        dense_scores = [[float(row[i]) for i in run] for row, run in zip(sims, dense_runs)]
        res, bm25_scores = retriever.retrieve(tokenize(queries), k=50, show_progress=False)
        bm25_runs = [list(map(int, r)) for r in res]

        def norm(ids, sc):
            lo, hi = min(sc), max(sc)
            return {int(i): (float(x) - lo) / max(hi - lo, 1e-9) for i, x in zip(ids, sc)}

        def convex(i):
            a, b = norm(bm25_runs[i], bm25_scores[i]), norm(dense_runs[i], dense_scores[i])
            s = {k: 0.5 * a.get(k, 0.0) + 0.5 * b.get(k, 0.0) for k in set(a) | set(b)}
            return [k for k, _ in sorted(s.items(), key=lambda x: (-x[1], x[0]))]

        def rrf(i, k=60.0):
            s = {}
            for run in (bm25_runs[i], dense_runs[i]):
                for rank, d in enumerate(run):
                    s[int(d)] = s.get(int(d), 0.0) + 1.0 / (k + rank + 1)
            return [d for d, _ in sorted(s.items(), key=lambda x: (-x[1], x[0]))]

        runs = {"dense": [list(map(int, r)) for r in dense_runs],
                "convex": [convex(i) for i in range(len(qrels))],
                "rrf": [rrf(i) for i in range(len(qrels))]}
        out[os.path.basename(path)] = {
            name: mean([score(judged(r, chunks, q["relevant"]), len(q["relevant"])) for r, q in zip(rs, qrels)])
            for name, rs in runs.items()}
    print(json.dumps(out))


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def ann_data(src, out):
    os.makedirs(out, exist_ok=True)
    base = idx(os.path.join(src, "train-images-idx3-ubyte.gz")).reshape(60000, -1).astype(np.float32)
    query = idx(os.path.join(src, "t10k-images-idx3-ubyte.gz")).reshape(10000, -1).astype(np.float32)
    base.tofile(os.path.join(out, "base.f32"))
    query.tofile(os.path.join(out, "query.f32"))
    # Exact top 10 by squared L2, in blocks.
    bn = (base.astype(np.float64) ** 2).sum(1)
    gt = np.empty((len(query), 10), dtype=np.uint32)
    for s in range(0, len(query), 500):
        q = query[s:s + 500].astype(np.float64)
        d = bn[None, :] - 2 * q @ base.astype(np.float64).T
        part = np.argpartition(d, 10, axis=1)[:, :10]
        order = np.take_along_axis(d, part, 1).argsort(1)
        gt[s:s + 500] = np.take_along_axis(part, order, 1)
    gt.tofile(os.path.join(out, "gt.u32"))
    print(json.dumps({"base": base.shape, "query": query.shape}))


def ann(out, m, efc, efs):
    import hnswlib

    base = np.fromfile(os.path.join(out, "base.f32"), dtype=np.float32).reshape(60000, -1)
    query = np.fromfile(os.path.join(out, "query.f32"), dtype=np.float32).reshape(10000, -1)
    gt = np.fromfile(os.path.join(out, "gt.u32"), dtype=np.uint32).reshape(10000, 10)
    index = hnswlib.Index(space="l2", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=m, ef_construction=efc, random_seed=42)
    index.set_num_threads(1)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=1)
    build = time.perf_counter() - t
    runs = []
    for ef in efs:
        index.set_ef(ef)
        # All queries in one call on one thread: no Python overhead per query counts against hnswlib. Best of
        # three passes, as for Keel.
        s = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            labels, _ = index.knn_query(query, k=10, num_threads=1)
            s = min(s, time.perf_counter() - t)
        recall = np.mean([len(set(labels[i]) & set(gt[i])) / 10 for i in range(len(query))])
        runs.append({"ef": ef, "recall@10": float(recall), "qps": len(query) / s})
    print(json.dumps({"build_seconds": build, "runs": runs}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "retrieval":
        retrieval(*sys.argv[2:5])
    elif cmd == "bm25":
        bm25_only(*sys.argv[2:])
    elif cmd == "dense":
        dense_only(*sys.argv[2:])
    elif cmd == "ann-data":
        ann_data(*sys.argv[2:4])
    elif cmd == "ann":
        ann(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(x) for x in sys.argv[5].split(",")])
    else:
        sys.exit(f"unknown command {cmd}")
