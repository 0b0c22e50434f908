"""The package itself: generated models in step with openapi.json, `python -m keel_client`, configuration from
the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Server

import keel_client
from keel_client import Client, KeelConnectionError

GENERATE = REPO / "clients" / "python" / "generate.py"


def test_committed_models_match_a_fresh_generation() -> None:
    r = subprocess.run([sys.executable, str(GENERATE), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_check_fails_when_the_spec_changes_without_regeneration(tmp_path: Path) -> None:
    spec = json.loads((REPO / "openapi.json").read_text())
    spec["components"]["schemas"]["Health"]["properties"]["uptime_seconds"] = {"type": "integer"}
    changed = tmp_path / "openapi.json"
    changed.write_text(json.dumps(spec))
    r = subprocess.run(
        [sys.executable, str(GENERATE), "--check", "--spec", str(changed)], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "is stale" in r.stderr and "uptime_seconds" in r.stderr


def test_the_server_serves_the_spec_the_models_came_from(server: Server) -> None:
    with server.client("reader") as c:
        served = c._send(keel_client._calls.openapi())  # type: ignore[attr-defined]
    assert served == json.loads((REPO / "openapi.json").read_text())


def test_python_dash_m_prints_version_and_health(server: Server) -> None:
    env = dict(os.environ, KEEL_URL=server.url)
    r = subprocess.run([sys.executable, "-m", "keel_client", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    from conftest import keel_bin

    cli_version = subprocess.run([str(keel_bin()), "--version"], capture_output=True, text=True).stdout
    assert out["server_version"] and cli_version.split()[-1] == out["server_version"], cli_version
    assert out["status"] == "ok" and out["ready"] == "ready"
    assert out["client_version"] == keel_client.__version__
    r = subprocess.run([sys.executable, "-m", "keel_client", server.url], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith(f"Keel {out['server_version']} at {server.url}: ok"), r.stdout


def test_python_dash_m_says_when_nothing_listens() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run(
        [sys.executable, "-m", "keel_client", f"http://127.0.0.1:{port}"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}" in r.stderr


def test_url_and_key_come_from_the_environment(server: Server, monkeypatch: object) -> None:
    import pytest

    mp: pytest.MonkeyPatch = monkeypatch  # type: ignore[assignment]
    mp.setenv("KEEL_URL", server.url + "/")
    mp.setenv("KEEL_API_KEY", server.keys["admin"])
    with Client() as c:
        assert c.base_url == server.url
        assert any(k.role == "admin" for k in c.keys.list())
    mp.delenv("KEEL_API_KEY")
    with Client() as c:
        try:
            c.keys.list()
        except keel_client.AuthenticationError as e:
            assert e.status == 401
        else:
            raise AssertionError("a call without a key was let through")


def test_connection_errors_are_keel_errors() -> None:
    with Client("http://127.0.0.1:9", max_retries=0, timeout=2) as c:
        try:
            c.health()
        except KeelConnectionError as e:
            assert e.status is None and "127.0.0.1:9" in str(e)
        else:
            raise AssertionError("no error")


def test_mypy_strict_passes_on_the_package() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is not in the test venv"
    pkg = REPO / "clients" / "python" / "src" / "keel_client"
    r = subprocess.run(
        [mypy, "--strict", "--config-file", str(REPO / "clients" / "python" / "pyproject.toml"), str(pkg)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
