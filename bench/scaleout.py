"""The scale-out bench's driver (run by bench/scaleout.sh, which starts PostgreSQL and SeaweedFS and builds the
binaries): three `keel serve` replicas and one `keel worker` over PostgreSQL and S3, behind a loopback
round-robin balancer, under load from oha. Measures alias propagation, a replica killed under load, lease
takeover, a retrain run by the worker, and req/s for 1, 2, 3 replicas and the embedded SQLite mode.
Prints a Markdown section (stdout) for BENCHMARKS.md.

Environment: KEEL, OHA, BALANCER (binaries), DATA (employment parquet), WORK (scratch dir), PG_BASE
(postgres://…/test: a database to create the bench's database from), KEEL_TEST_S3_ENDPOINT, AWS_* credentials,
DURATION (seconds per throughput run), CONNECTIONS.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

KEEL = os.environ["KEEL"]
OHA = os.environ["OHA"]
BALANCER = os.environ["BALANCER"]
DATA = os.environ["DATA"]
WORK = os.environ["WORK"]
PG_BASE = os.environ["PG_BASE"]
S3 = os.environ["KEEL_TEST_S3_ENDPOINT"]
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
LEASE_TTL_MS = 6000
PROCS = []


def log(*a):
    print("scaleout:", *a, file=sys.stderr, flush=True)


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def psql(url, sql):
    out = subprocess.run(
        ["psql", "-qAt", url, "-c", sql], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


# A database of its own, on the server the tests use.
DB = f"keel_scaleout_{os.getpid()}"
psql(PG_BASE, f"CREATE DATABASE {DB}")
PG_URL = PG_BASE.rsplit("/", 1)[0] + "/" + DB
SCALE_ENV = dict(
    os.environ,
    KEEL_DATABASE_URL=PG_URL,
    KEEL_ARTIFACT_URL=f"s3://keel/scaleout-{os.getpid()}",
    KEEL_S3_ENDPOINT=S3,
    RUST_LOG="warn",
)
EMBEDDED_ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("KEEL_DATABASE_URL", "KEEL_ARTIFACT_URL", "KEEL_S3_ENDPOINT")
}
CONFIG = os.path.join(WORK, "keel.toml")
with open(CONFIG, "w") as f:
    f.write(
        f"""[serve]
refresh_interval_ms = 1000
lease_ttl_ms = {LEASE_TTL_MS}
prediction_log_rate = 0.02
"""
    )


def keel(args, env, home, **kw):
    return subprocess.run(
        [KEEL, "--home", home] + args, env=env, check=True, capture_output=True, text=True, **kw
    )


def http(method, url, body=None, key=None, timeout=5):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def wait_ready(port, deadline_s=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"replica on port {port} never became ready")


class Replica:
    def __init__(self, name, env, port=None):
        self.name, self.env = name, env
        self.port = port or free_port()
        self.home = os.path.join(WORK, name)
        self.proc = None

    def start(self, fresh_home=False):
        if fresh_home:
            subprocess.run(["rm", "-rf", self.home], check=True)
        os.makedirs(self.home, exist_ok=True)
        args = [KEEL, "--home", self.home, "serve", "--config", CONFIG, "--port", str(self.port)]
        if self.env is SCALE_ENV:
            args.append("--no-worker")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=open(self.home + ".log", "a"), stderr=subprocess.STDOUT
        )
        PROCS.append(self.proc)
        ready = wait_ready(self.port)
        self.cold_start_s = time.monotonic() - t0
        return ready

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait()


def oha(url, key, body, seconds, out):
    subprocess.run(
        [OHA, "-z", f"{seconds}s", "-c", str(CONNECTIONS), "--no-tui", "--output-format", "json",
         "-m", "POST", "-H", "content-type: application/json", "-H", f"authorization: Bearer {key}",
         "-d", json.dumps(body), url],
        check=True, stdout=open(out, "w"), stderr=subprocess.DEVNULL,
    )
    with open(out) as f:
        r = json.load(f)
    codes = r.get("statusCodeDistribution", {})
    # oha cancels the requests still in flight when its duration ends ("aborted due to deadline"): those are
    # the end of the run, not failures.
    errors = {k: v for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k}
    ok = int(codes.get("200", 0))
    failed = sum(int(v) for k, v in codes.items() if k != "200") + sum(int(v) for v in errors.values())
    return {"rps": r["summary"]["requestsPerSec"], "ok": ok, "failed": failed, "errors": errors,
            "codes": codes, "p99_ms": (r.get("latencyPercentiles", {}).get("p99") or 0) * 1000}


def record():
    import pyarrow.parquet as pq

    t = pq.read_table(DATA).slice(0, 1).to_pylist()[0]
    for k in ("id", "year", "prediction", "predicted_probability", "employed"):
        t.pop(k, None)
    return {k: v for k, v in t.items()}


def split_data():
    """80 % to train on, the last 20 % as the retrain gate's holdout (rows no version trained on)."""
    import pyarrow.parquet as pq

    t = pq.read_table(DATA)
    cut = int(t.num_rows * 0.8)
    train, holdout = os.path.join(WORK, "train.parquet"), os.path.join(WORK, "holdout.parquet")
    pq.write_table(t.slice(0, cut), train)
    pq.write_table(t.slice(cut), holdout)
    return train, holdout


def main():
    results = {}
    rec = record()
    train_file, holdout_file = split_data()
    trainer = os.path.join(WORK, "trainer")
    log("migrate (PostgreSQL) and train two versions into PostgreSQL + S3")
    keel(["migrate"], SCALE_ENV, trainer)
    train = ["train", "--data", train_file, "--target", "employed", "--name", "employment", "--trees", "60",
             "--drop", "id,year,prediction,predicted_probability", "--json"]
    keel(train + ["--alias", "champion"], SCALE_ENV, trainer)
    keel(train + ["--seed", "2"], SCALE_ENV, trainer)
    key = json.loads(keel(["keys", "create", "--role", "admin", "--json"], SCALE_ENV, trainer).stdout)["key"]

    replicas = [Replica(n, SCALE_ENV) for n in ("a", "b", "c")]
    for r in replicas:
        r.start()
        log(f"replica {r.name} ready on {r.port} after {r.cold_start_s:.2f} s (pid {r.proc.pid})")
    results["cold_start_s"] = [round(r.cold_start_s, 2) for r in replicas]
    worker = subprocess.Popen([KEEL, "--home", os.path.join(WORK, "worker"), "worker"], env=SCALE_ENV,
                              stdout=open(os.path.join(WORK, "worker.log"), "w"), stderr=subprocess.STDOUT)
    PROCS.append(worker)
    lb_port = free_port()
    control = os.path.join(WORK, "backends")
    with open(control, "w") as f:
        f.write(",".join(str(r.port) for r in replicas))
    PROCS.append(subprocess.Popen([BALANCER, str(lb_port), ",".join(str(r.port) for r in replicas), control],
                                  stderr=open(os.path.join(WORK, "balancer.log"), "w")))
    lb = f"http://127.0.0.1:{lb_port}/v1/models/employment/predict"
    time.sleep(0.2)
    http("POST", lb, rec, key)

    # (e) throughput through the balancer with 1, 2, 3 replicas.
    for n in (1, 2, 3):
        with open(control, "w") as f:
            f.write(",".join(str(r.port) for r in replicas[:n]))
        time.sleep(0.2)
        oha(lb, key, rec, 2, os.path.join(WORK, "warm.json"))
        results[f"rps_{n}"] = oha(lb, key, rec, DURATION, os.path.join(WORK, f"rps{n}.json"))
        log(f"{n} replica(s): {results[f'rps_{n}']['rps']:.0f} req/s")

    # (a) alias moves on A reach B and C, under load.
    def propagation(moves, label):
        bg = subprocess.Popen([OHA, "-z", "600s", "-c", "8", "--no-tui", "-m", "POST", "-H",
                               "content-type: application/json", "-H", f"authorization: Bearer {key}",
                               "-d", json.dumps(rec), lb], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat = []
        try:
            for i in range(moves):
                target = 2 if i % 2 == 0 else 1
                t0 = time.monotonic()
                http("PUT", f"http://127.0.0.1:{replicas[0].port}/v1/models/employment/aliases/champion",
                     {"version": target}, key)
                seen = {}
                while len(seen) < 2:
                    for r in replicas[1:]:
                        if r.name in seen:
                            continue
                        v = http("POST", f"http://127.0.0.1:{r.port}/v1/models/employment/predict", rec, key)["version"]
                        if v == target:
                            seen[r.name] = time.monotonic() - t0
                    if time.monotonic() - t0 > 30:
                        raise RuntimeError(f"{label}: alias move {i} not seen after 30 s")
                    time.sleep(0.002)
                lat.append(max(seen.values()))
                time.sleep(0.3)
        finally:
            bg.terminate()
            bg.wait()
        lat.sort()
        return {"moves": moves, "p50_s": statistics.median(lat), "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                "max_s": lat[-1]}

    results["alias"] = propagation(20, "alias")
    log(f"alias propagation: {results['alias']}")
    b_pid = replicas[1].proc.pid
    killed = psql(PG_URL, f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          f"WHERE application_name = 'keel-listen-{b_pid}'")
    results["listen_killed"] = int(killed or 0)
    results["alias_after_terminate"] = propagation(10, "after pg_terminate_backend")
    log(f"after terminating B's listen connection ({killed} killed): {results['alias_after_terminate']}")

    # (c) lease takeover: kill -9 the replica holding the single-writer lease.
    holder = psql(PG_URL, "SELECT holder || '|' || token || '|' || expires_ms FROM leases WHERE name = 'singletons'")
    h, token, expires = holder.split("|")
    victim = next(r for r in replicas if h.endswith(f"-{r.proc.pid}"))
    t_kill = time.time()
    victim.kill()
    while True:
        row = psql(PG_URL, "SELECT holder || '|' || token FROM leases WHERE name = 'singletons'")
        nh, ntoken = row.split("|")
        if nh != h:
            break
        if time.time() - t_kill > 3 * LEASE_TTL_MS / 1000:
            raise RuntimeError("no replica took the lease over")
        time.sleep(0.02)
    t_take = time.time()
    results["lease"] = {"ttl_s": LEASE_TTL_MS / 1000, "from_kill_s": t_take - t_kill,
                        "after_expiry_s": t_take - int(expires) / 1000, "token_before": int(token),
                        "token_after": int(ntoken), "victim": victim.name}
    takeovers = psql(PG_URL, "SELECT count(*) FROM audit_log WHERE action = 'lease.takeover'")
    results["lease"]["takeovers_audited"] = int(takeovers)
    log(f"lease: {results['lease']}")
    victim.start()

    # (b) kill -9 one replica under load through the balancer; restart it on a fresh home (a new pod).
    with open(control, "w") as f:
        f.write(",".join(str(r.port) for r in replicas))
    time.sleep(0.2)
    victim = replicas[2]
    out = os.path.join(WORK, "kill.json")
    t = threading.Thread(target=lambda: results.__setitem__("kill_load", oha(lb, key, rec, DURATION, out)))
    t.start()
    time.sleep(DURATION / 3)
    victim.kill()
    t.join()
    t0 = time.monotonic()
    victim.start(fresh_home=True)
    results["restart_ready_s"] = time.monotonic() - t0
    log(f"kill -9 under load: {results['kill_load']['failed']} failed of "
        f"{results['kill_load']['ok'] + results['kill_load']['failed']}; restart ready in {results['restart_ready_s']:.2f} s")

    # (d) a retrain queued over HTTP, run by the worker.
    t0 = time.monotonic()
    job = http("POST", f"http://127.0.0.1:{lb_port}/v1/models/employment/retrain",
               {"data": train_file, "holdout": holdout_file, "trees": 60}, key)
    jid = job["id"]
    while True:
        j = http("GET", f"http://127.0.0.1:{lb_port}/v1/jobs/{jid}", None, key)
        if j["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() - t0 > 600:
            raise RuntimeError("retrain did not finish in 10 minutes")
        time.sleep(0.2)
    results["retrain"] = {"state": j["state"], "worker": j.get("worker"), "seconds": time.monotonic() - t0,
                          "worker_pid": worker.pid, "message": j.get("message", "")}
    log(f"retrain: {results['retrain']}")

    for r in replicas:
        r.kill(signal.SIGTERM)

    # (e, cont.) the embedded default on this machine: SQLite and files, one process.
    emb_home = os.path.join(WORK, "embedded")
    keel(train + ["--alias", "champion"], EMBEDDED_ENV, emb_home)
    emb_key = json.loads(keel(["keys", "create", "--role", "admin", "--json"], EMBEDDED_ENV, emb_home).stdout)["key"]
    emb = Replica("embedded", EMBEDDED_ENV)
    emb.start()
    url = f"http://127.0.0.1:{emb.port}/v1/models/employment/predict"
    oha(url, emb_key, rec, 2, os.path.join(WORK, "warm.json"))
    results["rps_embedded"] = oha(url, emb_key, rec, DURATION, os.path.join(WORK, "emb.json"))
    emb.kill(signal.SIGTERM)
    log(f"embedded: {results['rps_embedded']['rps']:.0f} req/s")
    json.dump(results, open(os.path.join(WORK, "results.json"), "w"), indent=1, default=str)
    print(report(results))


def report(r):
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    cores = os.cpu_count()
    a, t, l, k, rt = r["alias"], r["alias_after_terminate"], r["lease"], r["kill_load"], r["retrain"]
    lines = [
        f"## Scale-out: replicas over PostgreSQL + S3 ({time.strftime('%Y-%m-%d')})",
        "",
        f"`bench/scaleout.sh` on {cpu}, {cores} vCPUs: PostgreSQL 15, SeaweedFS 4.48 (S3), 3 `keel serve` replicas, "
        f"1 `keel worker`, a loopback round-robin balancer, oha with {CONNECTIONS} connections for {DURATION} s per "
        "run; every process shares the same cores, so more replicas cannot add CPU here: the figures show the cost "
        "of the shared state, not a cluster's capacity.",
        "",
        "| measurement | result |",
        "|---|---|",
        f"| cold start per replica (process start → ready, champion downloaded from S3) | {', '.join(f'{x:.2f} s' for x in r['cold_start_s'])} |",
        f"| alias move on A seen by B and C (20 moves, under load) | p50 {a['p50_s']*1000:.0f} ms, p99 {a['p99_s']*1000:.0f} ms, max {a['max_s']*1000:.0f} ms |",
        f"| … after `pg_terminate_backend` of B's LISTEN connection ({r['listen_killed']} killed; 10 moves) | p50 {t['p50_s']*1000:.0f} ms, p99 {t['p99_s']*1000:.0f} ms, max {t['max_s']*1000:.0f} ms |",
        f"| kill -9 of one replica under load | {k['failed']} failed of {k['ok'] + k['failed']} requests ({', '.join(f'{n}: {c}' for n, c in k['errors'].items()) or 'no transport errors'}); the balancer skips it for new connections |",
        f"| that replica restarted on an empty home (a new pod) | ready in {r['restart_ready_s']:.2f} s |",
        f"| lease holder ({l['victim']}) killed, TTL {l['ttl_s']:.0f} s | taken over {l['from_kill_s']:.2f} s after the kill, {l['after_expiry_s']*1000:.0f} ms after the lease expired; token {l['token_before']} → {l['token_after']}; {l['takeovers_audited']} takeovers audited |",
        f"| retrain queued over HTTP | {rt['state']} in {rt['seconds']:.1f} s by worker `{rt['worker']}` |",
        f"| req/s, 1 replica (Postgres + S3) | {r['rps_1']['rps']:.0f} (p99 {r['rps_1']['p99_ms']:.1f} ms) |",
        f"| req/s, 2 replicas | {r['rps_2']['rps']:.0f} (p99 {r['rps_2']['p99_ms']:.1f} ms) |",
        f"| req/s, 3 replicas | {r['rps_3']['rps']:.0f} (p99 {r['rps_3']['p99_ms']:.1f} ms) |",
        f"| req/s, embedded (SQLite + files, no balancer) | {r['rps_embedded']['rps']:.0f} (p99 {r['rps_embedded']['p99_ms']:.1f} ms) |",
        "",
    ]
    return "\n".join(lines)


try:
    main()
finally:
    for p in PROCS:
        try:
            p.kill()
        except Exception:
            pass
    try:
        psql(PG_BASE, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    except Exception:
        pass
