"""The answer check through any Keel build that has `rag query --json` (bench/rag.sh, KEEL_BEFORE): the
expected-span rate, answered share and refusals, computed as `keel eval answers` computes them."""
import json
import subprocess
import sys


def norm(s):
    return " ".join(s.split()).lower()


keel, files = sys.argv[1], sys.argv[2:]
rows = [json.loads(line) for f in files for line in open(f) if line.strip()]
out = []
for r in rows:
    a = json.loads(subprocess.run([keel, "rag", "query", "--collection", "faq", "--json", "--question", r["query"]],
                                  capture_output=True, text=True, check=True).stdout)
    spans = r.get("answers", [])
    out.append({"answerable": bool(spans), "confident": a["confident"],
                "correct": bool(spans) and a["confident"] and any(norm(s) in norm(a["answer"]) for s in spans)})
n = sum(o["answerable"] for o in out)
print(json.dumps({"answerable": n, "unanswerable": len(out) - n,
                  "span_rate": sum(o["correct"] for o in out) / n,
                  "answered": sum(o["answerable"] and o["confident"] for o in out) / n,
                  "refused": sum(not o["answerable"] and not o["confident"] for o in out) / max(len(out) - n, 1)}))
