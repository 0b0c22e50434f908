"""Fixtures: a real `keel serve` on a loopback port 0 with a temporary home and API keys for every role, the
car-loan data (nannyml, fetched by scripts/fetch-assets.sh), and one model trained once per run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from keel_client import Client, models

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("KEEL_CACHE") or Path.home() / ".cache" / "keel")
NANNYML = CACHE / "nannyml-0.13.1"
PYDOCS = CACHE / "python-3.11-docs"
FEATURES = [
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
]


def keel_bin() -> Path:
    p = Path(os.environ.get("KEEL_BIN") or REPO / "target" / "debug" / "keel")
    if not p.exists():
        pytest.exit(f"{p} is missing: build it (cargo build -p keel-cli) or set KEEL_BIN", returncode=3)
    return p


def asset(path: Path) -> Path:
    if not path.exists():
        pytest.exit(f"{path} is missing: run scripts/fetch-assets.sh nannyml pydocs", returncode=3)
    return path


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[str]
    log: Path
    keys: dict[str, str]

    def client(self, role: str = "admin", **kw: object) -> Client:
        return Client(self.url, api_key=self.keys[role], **kw)  # type: ignore[arg-type]


def start_server(
    home: Path, log: Path, extra: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[str, subprocess.Popen[str]]:
    """Starts `keel serve --port 0` and returns its URL once it reported the port it bound."""
    e = dict(os.environ, KEEL_HOME=str(home), KEEL_CACHE=str(CACHE), **(env or {}))
    e.pop("KEEL_URL", None)
    p = subprocess.Popen(
        [str(keel_bin()), "serve", "--port", "0", *(extra or [])],
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
        env=e,
    )
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("listening on http://"):
            url = line.strip().removeprefix("listening on ")
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in p.stdout or []], daemon=True).start()
            return url, p
    p.wait(timeout=30)
    raise RuntimeError(f"keel serve exited ({p.returncode}) before reporting its address:\n{log.read_text()[-3000:]}")


def cli(home: Path, *args: str) -> str:
    r = subprocess.run(
        [str(keel_bin()), *args],
        env=dict(os.environ, KEEL_HOME=str(home), KEEL_CACHE=str(CACHE)),
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"keel {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("keel-home")
    # The first admin key comes from the CLI (as an operator would make it); the others through the client.
    import json

    admin = json.loads(cli(home, "keys", "create", "--role", "admin", "--json"))["key"]
    # The guard model /v1/guard/scan needs (the n-gram classifier on the S-Labs splits, seconds).
    cli(home, "guard", "train")
    log = home.parent / "serve.log"
    url, proc = start_server(home, log, ["--prediction-log-rate", "1"])
    keys = {"admin": admin}
    with Client(url, api_key=admin) as c:
        for role in ("reader", "predictor", "deployer"):
            keys[role] = c.keys.create(role, description=f"pytest {role}").key
    yield Server(url=url, home=home, process=proc, log=log, keys=keys)
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    if os.environ.get("KEEL_CLIENT_TEST_LOG"):
        sys.stderr.write(log.read_text()[-5000:])


@pytest.fixture(scope="session")
def loans() -> pd.DataFrame:
    """The car-loan reference rows (2018, labelled `repaid`), 3,000 of them, booleans as text."""
    df = pd.read_csv(asset(NANNYML / "synthetic_car_loan_reference.csv"), nrows=3000)
    df["repaid"] = df["repaid"].astype(int)
    return df[["id", *FEATURES, "timestamp", "repaid"]]


@pytest.fixture(scope="session")
def loans_later() -> pd.DataFrame:
    """Later loans (the analysis period, which drifts), with their labels joined on id."""
    a = pd.read_csv(asset(NANNYML / "synthetic_car_loan_analysis.csv"), nrows=1500)
    t = pd.read_csv(asset(NANNYML / "synthetic_car_loan_analysis_target.csv"))
    df = a.merge(t, on="id", how="left")
    return df[["id", *FEATURES, "timestamp", "repaid"]]


@pytest.fixture(scope="session")
def trained(server: Server, loans: pd.DataFrame) -> models.Job:
    """One model trained from a DataFrame (uploaded as Parquet), awaited: `loans` v1, champion."""
    c = server.client("deployer")
    job = c.jobs.train(
        loans.drop(columns=["id"]),
        name="loans",
        target="repaid",
        drop=["timestamp"],
        seed=7,
        champion_if_none=True,
        description="car loans, trained from pytest",
    )
    done = c.jobs.wait(job, timeout=600)
    assert done.state == "succeeded", done.message
    return done


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"
