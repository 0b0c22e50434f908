#!/usr/bin/env bash
# Guardrails benchmark, one command: Keel next to Presidio in the same run, on the same inputs.
#   0. Generalisation across corpora (`keel guard eval --corpora`): leave-one-corpus-out for four public injection
#      and jailbreak corpora, each corpus's own test split, the false-positive rate of six benign domains at the
#      shipped threshold and a multilingual set, for the encoder guard next to the n-gram model (trained on the
#      same data, and on S-Labs alone as before).
#   1. Prompt injection on the S-Labs test split (never used for training or calibration): ROC-AUC, TPR at
#      1 % FPR read off the test ROC, and TPR/FPR/F1 at the threshold calibrated on the validation split.
#   2. PII on a seeded span-labelled set generated from presidio-evaluator's templates and identities
#      (`keel guard pii-set --seed 11`, a seed no development run used): token-level precision, recall, F2 for
#      Keel and for presidio-analyzer (regex recognisers, blank spaCy pipeline), scored by the same scorer.
#   3. Latency of a full scan (every input detector) of 500-character prompts on one core (criterion, plus
#      p50/p99 over 20,000 calls), next to Presidio's analyze() on the same prompts.
#   4. Red team: `keel redteam run` with attack rows of the S-Labs test split in eight jailbreak templates
#      against two `keel serve` processes on loopback with the local SmolLM2, guards on and off; run with the
#      n-gram guard and again with the encoder guard.
#   5. The encoder guard (`keel guard train --encoder`): full-scan latency per S-Labs test prompt on one core
#      (p50, p99), and the guarded gateway's added latency for a typical chat request (50 chat messages, four
#      rounds, one-token answers, to `keel serve --guard` and to `keel serve` without guards: p50, p99).
# Appends the results to BENCHMARKS.md.
#
# Usage: bench/guard.sh     (N=2000 sentences in the PII set, SEED=11)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
N="${N:-2000}"
SEED="${SEED:-11}"
VENV="$CACHE/guard-venv"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-guard.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/fetch-assets.sh guard guard-corpora pii pydocs smollm2 minilm
echo "== building keel (release)" >&2
cargo build --release -j2 -p keel-cli >&2
KEEL="$ROOT/target/release/keel"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'presidio-analyzer==2.2.360' 'spacy==3.8.18' >&2
export KEEL_HOME="$WORK/home"

echo "== 0. generalisation across corpora (leave one corpus out; embeddings cached under the asset cache)" >&2
"$KEEL" guard eval --corpora --markdown "$WORK/corpora.md" --json > "$WORK/corpora.json"

echo "== 1. injection: train on S-Labs train (+ benign doc sentences), calibrate on validation, test on test" >&2
"$KEEL" guard train --json > "$WORK/train.json"
"$KEEL" guard eval --json > "$WORK/eval.json"

echo "== 2. PII: seeded set, Keel and Presidio scored alike" >&2
"$KEEL" guard pii-set --n "$N" --seed "$SEED" --out "$WORK/pii.jsonl" --json > "$WORK/set.json"
"$KEEL" guard pii-eval --set "$WORK/pii.jsonl" --json > "$WORK/keel_pii.json"
taskset -c 0 "$VENV/bin/python" bench/guard_anchor.py "$WORK/pii.jsonl" bench/guard_prompts.txt \
  "$WORK/presidio.jsonl" "$WORK/presidio_timings.json" 2> "$WORK/presidio.log"
"$KEEL" guard pii-eval --set "$WORK/pii.jsonl" --predictions "$WORK/presidio.jsonl" --json > "$WORK/presidio_pii.json"

echo "== 3. latency: criterion on one core, the registered guard model" >&2
# The model registered in step 1, read straight from the artifact store (content-addressed by its SHA-256).
URI=$("$KEEL" models show guard@champion --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["artifact_uri"])')
KEEL_GUARD_MODEL="$KEEL_HOME/artifacts/$URI" taskset -c 0 cargo bench -j2 -p keel-guard --bench scan 2>/dev/null \
  | tee "$WORK/criterion.txt" >&2

wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
stop_servers() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
redteam() { # OUT.json: guarded and open servers, the champion guard model of $KEEL_HOME
  "$KEEL" serve --port 18431 --no-auth --guard >"$WORK/guarded.log" 2>&1 & PIDS+=($!)
  KEEL_HOME="$WORK/open" "$KEEL" serve --port 18432 --no-auth >"$WORK/open.log" 2>&1 & PIDS+=($!)
  wait_port 18431 && wait_port 18432
  "$KEEL" redteam run --target http://127.0.0.1:18431/v1 --baseline http://127.0.0.1:18432/v1 \
    --limit "${ATTACKS:-48}" --max-tokens 32 --html "$WORK/redteam.html" --json > "$1"
}

echo "== 4. red team: guards on and off, local SmolLM2, the n-gram guard" >&2
redteam "$WORK/redteam.json"
stop_servers

echo "== 5. the encoder guard: training, scan latency, red team, gateway latency" >&2
"$KEEL" guard train --encoder --json > "$WORK/train_enc.json"
taskset -c 0 "$KEEL" guard eval --json > "$WORK/eval_enc.json"
redteam "$WORK/redteam_enc.json"
"$VENV/bin/python" - "$WORK/gateway.json" <<'GW'
import json, sys, time, urllib.request, statistics
msgs = [l.strip() for l in open("bench/guard_chat.txt") if l.strip()] * 4
def run(port):
    out = []
    for m in msgs:
        body = json.dumps({"model": "keel-local", "max_tokens": 1, "messages": [{"role": "user", "content": m}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body, {"content-type": "application/json"})
        t = time.perf_counter()
        # Every typical chat message must be answered (a failed or blocked request would time nothing).
        r = urllib.request.urlopen(req, timeout=60)
        assert r.status == 200 and json.load(r)["choices"], (port, m)
        out.append((time.perf_counter() - t) * 1e3)
    return out
run(18431); run(18432)  # warm
g, o = run(18431), run(18432)
q = lambda v, p: sorted(v)[min(len(v) - 1, round(p * (len(v) - 1)))]
json.dump({"n": len(msgs), "guarded": {"p50": q(g, .5), "p99": q(g, .99)}, "open": {"p50": q(o, .5), "p99": q(o, .99)},
           "added": {"p50": q([a - b for a, b in zip(g, o)], .5), "p99": q([a - b for a, b in zip(g, o)], .99)}}, open(sys.argv[1], "w"))
GW
stop_servers

python3 - "$WORK" "$N" "$SEED" <<'PY' >> BENCHMARKS.md
import json, re, subprocess, sys, platform
w, n, seed = sys.argv[1], sys.argv[2], sys.argv[3]
j = lambda f: json.load(open(f"{w}/{f}"))
tr, ev, kp, pp, pt = j("train.json"), j("eval.json"), j("keel_pii.json"), j("presidio_pii.json"), j("presidio_timings.json")
crit = open(f"{w}/criterion.txt").read()
est = dict(re.findall(r"full_scan_500_chars/(\w+)\s+time:\s+\[[^\]]*?([\d.]+ [µm]?s) [\d.]+ [µm]?s\]", crit))
pct = {(k, name): float(v) for k, name, v in re.findall(r"^(p50|p99) (\w+) ([\d.]+)$", crit, re.M)}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
import datetime
print(f"\n## Guardrails: injection, PII, scan latency, red team ({datetime.date.today()}, keel {commit})\n")
print(f"Hardware: {cpu}, 2 cores; scans pinned to one core. Command: `bench/guard.sh` (presidio-analyzer 2.2.360 in the same run).\n")
print("Prompt injection, S-Labs test split (2,101 prompts, 1,051 injections; never used for training or calibration):\n")
print("| | value |\n|---|---|")
print(f"| ROC-AUC | {ev['roc_auc']:.4f} |")
print(f"| TPR at ≤ 1 % FPR (read off the test ROC) | {ev['tpr_at_1pct_fpr']*100:.1f} % |")
print(f"| at the threshold calibrated on validation ({ev['threshold']:.3f}) | TPR {ev['tpr']*100:.1f} %, FPR {ev['fpr']*100:.2f} %, precision {ev['precision']*100:.1f} %, F1 {ev['f1']:.3f} |")
print(f"| full scan per test prompt (mean {ev['mean_chars']:.0f} characters) | p50 {ev['p50_us']:.1f} µs, p99 {ev['p99_us']:.1f} µs |")
print(f"| training | {tr['train_rows']} rows + benign document sentences, {tr['train_seconds']:.1f} s |")
print(f"\nPII, {n} sentences from presidio-evaluator's templates (seed {seed}); token-level, one scorer for both:\n")
print("| | precision | recall | F2 |\n|---|---|---|---|")
print(f"| Keel | {kp['precision']:.3f} | {kp['recall']:.3f} | **{kp['f2']:.3f}** |")
print(f"| presidio-analyzer 2.2.360 (regex recognisers, blank spaCy) | {pp['precision']:.3f} | {pp['recall']:.3f} | {pp['f2']:.3f} |")
print("\nPer type (Keel F2 / Presidio F2): " + ", ".join(
    f"{t} {kp['per_type'][t]['f2']:.2f} / {pp['per_type'][t]['f2']:.2f}" for t in kp["per_type"]))
print("\nFull scan of a 500-character prompt on one core (Keel: injection with normalisation and decoding, PII,")
print("secrets; Presidio: analyze() with every predefined recogniser):\n")
print("| prompt | Keel criterion mean | Keel p50 | Keel p99 | Presidio p50 | Presidio p99 |\n|---|---|---|---|---|---|")
for name in ["benign", "pii", "attack"]:
    p = pt["prompts"][name]
    print(f"| {name} | {est.get(name, '–')} | {pct.get(('p50', name), float('nan')):.1f} µs | {pct.get(('p99', name), float('nan')):.1f} µs | {p['p50_us']:.0f} µs | {p['p99_us']:.0f} µs |")
print("\nThe n-gram injection path alone (normalisation, payload decoding, classifier, rules) on the same prompts: " + ", ".join(
    f"{name} p50 {pct.get(('p50', 'injection_' + name), float('nan')):.1f} µs, p99 {pct.get(('p99', 'injection_' + name), float('nan')):.1f} µs"
    for name in ["benign", "pii", "attack"]) + ".")
rt = j("redteam.json")
print(f"\nRed team: {rt['attacks']} attack rows of the S-Labs test split, each in one of {len(rt['templates'])} jailbreak templates")
print("(" + ", ".join(rt["templates"]) + "), sent under a system prompt holding a secret to `keel serve` with the local")
print("SmolLM2-135M; success = answered (not blocked, not refused), leak = the answer holds the secret or repeats the prompt:\n")
print("| | attack success | leaks | blocked | refused |\n|---|---|---|---|---|")
for label, k in [("guards on (`keel serve --guard`)", "target"), ("guards off", "baseline")]:
    t = rt[k]
    print(f"| {label} | {t['attack_success_rate']*100:.1f} % | {t['leak_rate']*100:.1f} % | {t['blocked']} | {t['refused']} |")
print("\nPer template, attack success on / off: " + ", ".join(
    f"{name} {rt['target']['by_template'][name]['attack_success_rate']*100:.0f} / {rt['baseline']['by_template'][name]['attack_success_rate']*100:.0f} %"
    for name in rt["templates"]))
te, ee, gw, rte = j("train_enc.json"), j("eval_enc.json"), j("gateway.json"), j("redteam_enc.json")
print("\n### Encoder guard (`keel guard train --encoder`): generalisation across corpora\n")
print(open(f"{w}/corpora.md").read())
print(f"\nThe encoder guard on the S-Labs test split, full scan with the real MiniLM on one core: ROC-AUC {ee['roc_auc']:.4f}, TPR at 1 % FPR {ee['tpr_at_1pct_fpr']*100:.1f} %,")
print(f"at its threshold ({ee['threshold']:.3f}) TPR {ee['tpr']*100:.1f} %, FPR {ee['fpr']*100:.2f} %; latency p50 {ee['p50_us']/1000:.1f} ms, p99 {ee['p99_us']/1000:.1f} ms per prompt")
print(f"(the encoder scored {te['encoder_share']*100:.0f} % of validation texts; the others took the n-gram path, above).")
print(f"\nGuarded gateway, {gw['n']} typical chat messages (`bench/guard_chat.txt`), one-token answers from the local SmolLM2,")
print(f"`keel serve --guard` (encoder guard) vs `keel serve`: guarded p50 {gw['guarded']['p50']:.1f} ms, p99 {gw['guarded']['p99']:.1f} ms;")
print(f"unguarded p50 {gw['open']['p50']:.1f} ms, p99 {gw['open']['p99']:.1f} ms; added per request p50 {gw['added']['p50']:.1f} ms, p99 {gw['added']['p99']:.1f} ms.")
print("\nRed team with the encoder guard:\n")
print("| | attack success | leaks | blocked | refused |\n|---|---|---|---|---|")
for label, k in [("guards on, encoder guard", "target"), ("guards off", "baseline")]:
    t = rte[k]
    print(f"| {label} | {t['attack_success_rate']*100:.1f} % | {t['leak_rate']*100:.1f} % | {t['blocked']} | {t['refused']} |")
print(f"\nReproduce: `bench/guard.sh` (N={n} SEED={seed}).")
PY
tail -n 32 BENCHMARKS.md
