"""Abuse benchmark: floods and hostile bodies against a live `keel serve` on loopback, each next to legitimate
traffic. For every scenario: legitimate throughput and p99 during the abuse vs the baseline, the slowest
`/healthz` answer, and the server's peak RSS. Standard library only.

Usage: python3 bench/abuse.py ADDR PID PREDICTOR_KEY ADMIN_KEY  (bench/abuse.sh starts the server and calls this)
"""

import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import threading
import time

ADDR, PID, KEY, ADMIN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
HOST, PORT = ADDR.split(":")[0], int(ADDR.split(":")[1])
SECONDS = float(os.environ.get("ABUSE_SECONDS", "10"))
LEGIT_THREADS = int(os.environ.get("LEGIT_THREADS", "4"))
RECORD = json.dumps({"AGEP": 40, "SCHL": "21", "MAR": "1", "RELP": "0", "DIS": "2", "ESP": "0", "CIT": "1",
                     "MIG": "1", "MIL": "4", "ANC": "1", "NATIVITY": "1", "DEAR": "2", "DEYE": "2", "DREM": "2",
                     "SEX": "1", "RAC1P": "1"})


def rss(field="VmHWM"):
    for line in open(f"/proc/{PID}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def legit(stop, latencies, errors):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    while not stop.is_set():
        t = time.perf_counter()
        try:
            conn.request("POST", "/v1/models/employment/predict", RECORD, headers)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                latencies.append(time.perf_counter() - t)
            else:
                errors.append(r.status)
        except Exception as e:  # noqa: BLE001 - a refused connection counts as an error
            errors.append(type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection(HOST, PORT, timeout=30)


def health(stop, worst):
    while not stop.is_set():
        t = time.perf_counter()
        try:
            c = http.client.HTTPConnection(HOST, PORT, timeout=5)
            c.request("GET", "/healthz")
            c.getresponse().read()
            c.close()
            worst.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001
            worst.append(5.0)
        time.sleep(0.05)


def run(name, abuse=None):
    stop, lat, err, hl = threading.Event(), [], [], []
    threads = [threading.Thread(target=legit, args=(stop, lat, err)) for _ in range(LEGIT_THREADS)]
    threads.append(threading.Thread(target=health, args=(stop, hl)))
    extra = []
    if abuse:
        extra = abuse(stop)
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads + extra:
        t.join(timeout=30)
    rps = len(lat) / SECONDS
    p99 = statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) > 100 else float("nan")
    return {"scenario": name, "req_s": round(rps, 1), "p99_ms": round(p99, 2), "errors": len(err),
            "healthz_max_ms": round(max(hl) * 1000, 1) if hl else None, "peak_rss_mib": rss() >> 20}


def _flood(key_id, deadline):
    bad = f"keel_{key_id}_{'x' * 40}"
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    while time.time() < deadline:
        try:
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {bad}"})
            conn.getresponse().read()
        except Exception:  # noqa: BLE001
            conn.close()
            conn = http.client.HTTPConnection(HOST, PORT, timeout=30)


def wrong_secret_flood(stop, procs=8):
    # Separate processes, so the flood does not share the legitimate clients' interpreter lock.
    key_id = KEY.split("_")[1]
    deadline = time.time() + SECONDS
    ps = [multiprocessing.Process(target=_flood, args=(key_id, deadline)) for _ in range(procs)]
    for p in ps:
        p.start()
    return ps


def slowloris(stop, n=200):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, PORT), timeout=5)
            socks.append(s)
        except OSError:
            break

    def dribble():
        line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 4000
        i = 0
        while not stop.is_set() and i < len(line):
            for s in list(socks):
                try:
                    s.send(line[i:i + 1])
                except OSError:
                    socks.remove(s)
            i += 1
            stop.wait(2.0)
        for s in socks:
            s.close()
    t = threading.Thread(target=dribble)
    t.start()
    return [t]


def idle(stop, n=2000):
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection((HOST, PORT), timeout=5))
        except OSError:
            break

    def hold():
        stop.wait()
        for s in socks:
            s.close()
    t = threading.Thread(target=hold)
    t.start()
    return [t]


def hostile_bodies():
    rng = random.Random(7)
    out = []

    def post(path, ctype, body, key=KEY):
        before = rss("VmRSS")
        peak_before = rss()
        c = http.client.HTTPConnection(HOST, PORT, timeout=120)
        t = time.perf_counter()
        try:
            c.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": ctype})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before reading the whole body; its answer is still there to read
        try:
            r = c.getresponse()
            r.read()
            status = r.status
        except Exception as e:  # noqa: BLE001
            status = type(e).__name__
        ms = (time.perf_counter() - t) * 1000
        return status, round(ms, 1), max(0, rss() - max(peak_before, before)) >> 20

    for cols in (2000, 100_000):
        head = ",".join(f"c{i}" for i in range(cols)) + "\n" + ",".join("1" for _ in range(cols)) + "\n"
        s, ms, grew = post("/v1/models/employment/predict", "text/csv", head.encode())
        out.append({"body": f"CSV with {cols} columns", "status": s, "ms": ms, "peak_rss_growth_mib": grew})
    junk = bytes(rng.getrandbits(8) for _ in range(4096))
    s, ms, grew = post("/v1/models/employment/predict", "application/vnd.apache.arrow.stream", junk)
    out.append({"body": "random bytes as Arrow IPC", "status": s, "ms": ms, "peak_rss_growth_mib": grew})
    big = json.dumps({"role": "reader", "description": "x" * (50 << 20)}).encode()
    s, ms, grew = post("/v1/keys", "application/json", big, key=ADMIN)
    out.append({"body": "50 MiB key description", "status": s, "ms": ms, "peak_rss_growth_mib": grew})
    deep = b"[" * 100_000
    s, ms, grew = post("/v1/models/employment/predict", "application/json", deep)
    out.append({"body": "JSON nested 100,000 deep", "status": s, "ms": ms, "peak_rss_growth_mib": grew})
    return out


base = run("baseline")
results = [base]
results.append(run("wrong-secret flood (8 clients)", wrong_secret_flood))
results.append(run("slow headers (200 connections, a byte per 2 s)", slowloris))
results.append(run("idle connections (2,000)", idle))
bodies = hostile_bodies()
print(json.dumps({"scenarios": results, "bodies": bodies, "baseline_req_s": base["req_s"]}, indent=1))
