#!/usr/bin/env bash
# Abuse benchmark: `keel serve` (release) on loopback with the employment model and API keys, then floods
# (wrong secrets, slow headers, idle connections) each next to legitimate traffic, and hostile bodies one by
# one (wide CSV, garbage Arrow, a 50 MiB key description, deep JSON). Prints a table and appends it to
# BENCHMARKS.md. Python standard library only.
#
# Usage: bench/abuse.sh            (ABUSE_SECONDS=10 per scenario, LEGIT_THREADS=4)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/live-server.sh abuse
KEY=$("$KEEL" keys create --role predictor --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
ADMIN=$("$KEEL" keys create --role admin --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
ulimit -n 20000 2>/dev/null || true
start_server
python3 bench/abuse.py "$ADDR" "$PID" "$KEY" "$ADMIN" > "$WORK/abuse.json"
python3 - "$WORK/abuse.json" <<'PY' | tee -a BENCHMARKS.md
import json, sys, subprocess, datetime, platform
r = json.load(open(sys.argv[1]))
cpu = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), platform.processor())
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
print(f"\n## Abuse: floods and hostile bodies next to legitimate traffic ({datetime.date.today()}, keel {rev})\n")
print(f"Hardware: {cpu}, {cores} cores; server and load generator on the same machine. Command: `bench/abuse.sh` "
      "(release build; 4 legitimate keep-alive clients predicting one record each, Python threads; the wrong-secret "
      "flood is 8 separate Python processes; `/healthz` probed every 50 ms; each scenario 10 s).\n")
print("| scenario | legitimate req/s | vs baseline | p99 ms | errors | slowest /healthz ms | server peak RSS MiB |")
print("|---|---|---|---|---|---|---|")
b = r["baseline_req_s"]
for s in r["scenarios"]:
    print(f"| {s['scenario']} | {s['req_s']} | {100 * s['req_s'] / b:.0f} % | {s['p99_ms']} | {s['errors']} | {s['healthz_max_ms']} | {s['peak_rss_mib']} |")
print("\n| hostile body | status | ms | server peak RSS growth MiB |")
print("|---|---|---|---|")
for x in r["bodies"]:
    print(f"| {x['body']} | {x['status']} | {x['ms']} | {x['peak_rss_growth_mib']} |")
PY
