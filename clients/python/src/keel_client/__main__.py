"""`python -m keel_client [URL]`: a smoke check of a Keel server — its version, health and loaded models.
Exit status 0 when healthy, 1 when the server answered unhealthy, 2 when it could not be reached."""

from __future__ import annotations

import argparse
import json
import sys

from . import Client, KeelConnectionError, KeelError, __version__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m keel_client", description=__doc__)
    ap.add_argument("url", nargs="?", help="the server (default: $KEEL_URL, else http://127.0.0.1:8080)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    a = ap.parse_args(argv)
    with Client(a.url, timeout=a.timeout, max_retries=0) as client:
        try:
            health = client.health()
        except KeelConnectionError as e:
            print(f"keel: cannot reach {client.base_url}: {e}", file=sys.stderr)
            return 2
        except KeelError as e:
            print(f"keel: {client.base_url} is unhealthy: {e}", file=sys.stderr)
            return 1
        try:
            ready = client.ready()
            loaded = [f"{x.reference} v{x.version}" for x in ready.models]
            readiness = ready.status
        except KeelError as e:
            loaded, readiness = [], f"not ready ({e.code or e.status})"
    if a.json:
        print(
            json.dumps(
                {
                    "url": client.base_url,
                    "server_version": health.version,
                    "client_version": __version__,
                    "status": health.status,
                    "ready": readiness,
                    "worker": health.worker,
                    "models": loaded,
                }
            )
        )
    else:
        print(f"Keel {health.version} at {client.base_url}: {health.status}, {readiness}")
        print(f"  worker: {health.worker.get('state', health.worker)}")
        print(f"  models loaded: {', '.join(loaded) if loaded else 'none'}")
        print(f"  client: keel-client {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
