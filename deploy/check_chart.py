"""Invariants of Keel's rendered Helm chart (run by deploy/test-chart.sh on each values file's output).

Every failure names the resource and what is wrong; exit status 1 on any.
"""
import sys

import yaml

name, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
problems = []
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def where(d):
    return f"{d['kind']}/{d['metadata']['name']}"


def pod_spec(d):
    if d["kind"] in ("Deployment", "Job"):
        return d["spec"]["template"]["spec"]
    return None


SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL", "ACCESS_KEY")

for d in docs:
    spec = pod_spec(d)
    if spec is None:
        continue
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            problems.append(f"{where(d)}: volume {v['name']} is a hostPath")
    for c in spec["containers"]:
        res = c.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
            problems.append(f"{where(d)}: container {c['name']} has no cpu and memory requests")
        if not res.get("limits", {}).get("memory"):
            problems.append(f"{where(d)}: container {c['name']} has no memory limit")
        for e in c.get("env", []):
            if any(w in e["name"] for w in SECRET_WORDS) and "value" in e:
                problems.append(f"{where(d)}: {e['name']} is inline; it must come from a secretKeyRef")
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and not ref.get("name"):
                problems.append(f"{where(d)}: {e['name']} refers to a Secret without a name")
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where(d)}: container {c['name']} may escalate privileges")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problems.append(f"{where(d)}: pods may run as root")

for d in by_kind.get("Secret", []):
    problems.append(f"{where(d)}: the chart must not render Secrets (it refers to existing ones)")

serves = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"].endswith("-serve")]
if len(serves) != 1:
    problems.append(f"expected one serve Deployment, found {len(serves)}")
for d in serves:
    spec = pod_spec(d)
    c = spec["containers"][0]
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append(f"{where(d)}: readinessProbe must GET /readyz")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"{where(d)}: livenessProbe must GET /healthz")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    drain = 20
    if grace <= drain:
        problems.append(f"{where(d)}: terminationGracePeriodSeconds {grace} must exceed the drain ({drain} s)")

scale = name.startswith("values-scale")
jobs = {d["metadata"]["name"]: d for d in by_kind.get("Job", [])}
migrate = [d for n, d in jobs.items() if n.endswith("-migrate")]
if scale:
    if len(migrate) != 1:
        problems.append("scale mode: expected one migration Job")
    for d in migrate:
        ann = d["metadata"].get("annotations", {})
        hooks = set(ann.get("helm.sh/hook", "").split(","))
        if not {"pre-install", "pre-upgrade"} <= hooks:
            problems.append(f"{where(d)}: must be a pre-install,pre-upgrade hook (found {sorted(hooks)})")
        if pod_spec(d)["containers"][0].get("args") != ["migrate"]:
            problems.append(f"{where(d)}: must run `keel migrate`")
    for d in serves:
        args = pod_spec(d)["containers"][0]["args"]
        if "migrate" in args:
            problems.append(f"{where(d)}: serve must never migrate")
    workers = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"].endswith("-worker")]
    if len(workers) != 1:
        problems.append("scale mode: expected one worker Deployment")
    if not by_kind.get("HorizontalPodAutoscaler"):
        problems.append("scale mode: expected a HorizontalPodAutoscaler")
    if not by_kind.get("PodDisruptionBudget"):
        problems.append("scale mode: expected a PodDisruptionBudget")
    for d in serves + workers:
        names = {e["name"] for e in pod_spec(d)["containers"][0].get("env", [])}
        for required in ("KEEL_DATABASE_URL", "KEEL_ARTIFACT_URL"):
            if required not in names:
                problems.append(f"{where(d)}: {required} is not set")
else:
    if migrate:
        problems.append("embedded mode: SQLite migrates itself; no migration Job expected")
    for d in serves:
        if d["spec"].get("replicas") != 1:
            problems.append(f"{where(d)}: embedded mode runs exactly one replica")
        if d["spec"].get("strategy", {}).get("type") != "Recreate":
            problems.append(f"{where(d)}: embedded mode must replace its pod with Recreate (one writer)")
    if not by_kind.get("PersistentVolumeClaim"):
        problems.append("embedded mode: expected a PersistentVolumeClaim for the home")
if scale:
    # Connections: every pod's pool, plus each serve pod's LISTEN connection, at the HPA's maximum, must fit
    # PostgreSQL's default max_connections (100).
    def pool(d):
        env = {e["name"]: e.get("value") for e in pod_spec(d)["containers"][0].get("env", [])}
        return int(env.get("KEEL_DB_POOL_SIZE") or 10)
    hpa = by_kind.get("HorizontalPodAutoscaler", [])
    serve_max = hpa[0]["spec"]["maxReplicas"] if hpa else serves[0]["spec"].get("replicas", 1)
    total = serve_max * (pool(serves[0]) + 1)
    total += sum(d["spec"].get("replicas", 1) * pool(d) for d in workers)
    total += sum(pool(d) for d in migrate)
    if total > 100:
        problems.append(f"scale mode: up to {total} PostgreSQL connections at the HPA's maximum; keep it under 100")
if name.endswith("-batch"):
    batch = [d for n, d in jobs.items() if n.endswith("-batch")]
    if len(batch) != 1 or batch[0]["spec"].get("completionMode") != "Indexed":
        problems.append("batch: expected one Indexed Job")

if problems:
    for p in problems:
        print(f"check_chart: {name}: {p}", file=sys.stderr)
    sys.exit(1)
print(f"check_chart: {name}: {len(docs)} resources, every invariant holds", file=sys.stderr)
