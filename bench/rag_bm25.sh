#!/usr/bin/env bash
# BM25 parity, one command: Keel's BM25 next to bm25s (the reference the retrieval issue names) on the same
# chunks — Keel's own chunks of the Python FAQ — for the 175 title-like FAQ questions (bench/faq_qrels.py) and
# the 40 hand-written paraphrased ones (bench/faq_paraphrased.qrels.jsonl); nDCG@10, recall@5 and MRR@10, both
# scored alike (each unit at its best chunk's rank). Also prints Keel's dense, hybrid and RRF figures and the
# chunk-length distribution. Only bm25s, PyStemmer, numpy and scipy are installed (no torch); appends to BENCHMARKS.md.
#
# Usage: bench/rag_bm25.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
VENV="$CACHE/rag-bm25-venv"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-bm25.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
scripts/fetch-assets.sh minilm pydocs >&2
cargo build -j2 -p keel-cli >&2
KEEL="$PWD/target/debug/keel"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'bm25s==0.2.14' 'PyStemmer==3.1.0' 'numpy==2.4.6' 'scipy==1.17.1' >&2
export KEEL_HOME="$WORK/home"
DOCS="$CACHE/python-3.11-docs"
"$KEEL" rag ingest "$DOCS/faq" --collection faq --json > "$WORK/ingest.json"
python3 bench/faq_qrels.py "$DOCS/faq" > "$WORK/faq.qrels.jsonl"
cp bench/faq_paraphrased.qrels.jsonl "$WORK/faq_paraphrased.qrels.jsonl"
"$KEEL" rag chunks --collection faq --json > "$WORK/chunks.jsonl"
for q in faq faq_paraphrased; do
  "$KEEL" eval retrieval --collection faq --qrels "$WORK/$q.qrels.jsonl" --json > "$WORK/keel-$q.json"
done
"$VENV/bin/python" bench/rag_anchor.py bm25 "$WORK/chunks.jsonl" "$WORK/faq.qrels.jsonl" \
  "$WORK/faq_paraphrased.qrels.jsonl" > "$WORK/bm25s.json"
python3 - "$WORK" >> BENCHMARKS.md <<'PY'
import datetime, json, subprocess, sys
w = sys.argv[1]
j = lambda n: json.load(open(f"{w}/{n}"))
ing, ref = j("ingest.json"), j("bm25s.json")
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?")
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
t = ing["chunk_lengths"]["tokens"]
print(f"\n## RAG: BM25 parity with bm25s on the same chunks ({datetime.date.today()}, keel {rev})\n")
ncpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"Hardware: {cpu}, {ncpu} cores (debug build; retrieval quality does not depend on the profile). Command: `bench/rag_bm25.sh` (bm25s 0.2.14: Lucene BM25, k1 1.5, b 0.75, English stop "
      f"words, Snowball English stemmer, passage = section title + text). Python FAQ: {ing['documents']} files, {ing['chunks']} chunks "
      f"(tokens: median {t['median']}, 10–90 % {t['p10']}–{t['p90']}, max {t['max']}).\n")
print("| questions | Keel BM25 nDCG@10 | bm25s nDCG@10 | Keel − bm25s | Keel dense | Keel hybrid | Keel RRF |")
print("|---|---|---|---|---|---|---|")
for q, label in [("faq", "175 FAQ section titles"), ("faq_paraphrased", "40 paraphrased, hand-written")]:
    k, r = j(f"keel-{q}.json"), ref[f"{q}.qrels.jsonl"]
    print(f"| {label} | {k['bm25']['ndcg@10']:.3f} | {r['ndcg@10']:.3f} | {k['bm25']['ndcg@10'] - r['ndcg@10']:+.3f} | "
          f"{k['dense']['ndcg@10']:.3f} | {k['hybrid']['ndcg@10']:.3f} | {k['rrf']['ndcg@10']:.3f} |")
PY
echo "== appended to BENCHMARKS.md" >&2
