"""Predictions (one record, records, DataFrames over Arrow and over JSON), explanations aligned to the input's
index, delayed labels from a DataFrame, drift and monitoring reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pandas as pd
import pytest
from conftest import FEATURES, Server

from keel_client import AsyncClient, Client, models


def recording_client(server: Server, role: str, seen: list[httpx.Request]) -> Client:
    http = httpx.Client(event_hooks={"request": [seen.append]})
    return Client(server.url, api_key=server.keys[role], http_client=http)


def test_one_record_and_records(server: Server, trained: models.Job, loans_later: pd.DataFrame) -> None:
    rows = json.loads(loans_later[FEATURES].head(3).to_json(orient="records"))
    with server.client("predictor") as c:
        one = c.predict("loans", rows[0])
        many = c.predict("loans@champion", rows)
    assert one.model == "loans" and one.version == 1
    assert one.prediction in (0, 1) and one.probability is not None and 0 <= one.probability <= 1
    assert many.predictions is not None and len(many.predictions) == 3
    assert many.predictions[0].probability == pytest.approx(one.probability)


def test_a_dataframe_goes_as_arrow_and_comes_back_on_its_index(
    server: Server, trained: models.Job, loans_later: pd.DataFrame
) -> None:
    df = loans_later[FEATURES].sample(n=250, random_state=3)  # a shuffled, non-default index
    seen: list[httpx.Request] = []
    with recording_client(server, "predictor", seen) as c:
        out = c.predict("loans", df, batch_size=100)
        records = c.predict("loans", json.loads(df.head(5).to_json(orient="records")))
    arrow = [
        r
        for r in seen
        if r.url.path.endswith("/predict") and r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    ]
    assert len(arrow) == 3  # 100 + 100 + 50 rows
    assert out.index.equals(df.index)
    assert list(out.columns[:2]) == ["prediction", "probability"]
    assert out["request_id"].nunique() == 3 and out["row"].max() == 99
    assert records.predictions is not None
    first = [p.probability for p in records.predictions]
    assert out["probability"].head(5).tolist() == pytest.approx(first)


def test_explain_returns_contributions_per_row_aligned(
    server: Server, trained: models.Job, loans_later: pd.DataFrame
) -> None:
    df = loans_later[FEATURES].iloc[[40, 7, 300]]
    with server.client("predictor") as c:
        out = c.predict("loans", df, explain=True, top_k=3)
        plain = c.predict("loans", df)
    assert out.index.tolist() == [40, 7, 300]
    assert out["probability"].tolist() == pytest.approx(plain["probability"].tolist())
    for e in out["explanation"]:
        assert isinstance(e, dict) and e, e
        text = json.dumps(e)
        assert any(f in text for f in FEATURES), e


WITHOUT_PYARROW = r"""
import json, sys
sys.modules["pyarrow"] = None          # as if pyarrow were not installed: `import pyarrow` raises ImportError
import httpx, pandas as pd
from keel_client import Client
from keel_client._frames import have_pyarrow
assert not have_pyarrow()
url, key, path = sys.argv[1:4]
df = pd.read_csv(path, nrows=40).drop(columns=["id", "timestamp", "y_pred_proba", "y_pred"])
df.index = df.index + 1000
seen = []
with Client(url, api_key=key, http_client=httpx.Client(event_hooks={"request": [seen.append]})) as c:
    out = c.predict("loans", df)
print(json.dumps({"types": sorted({r.headers["content-type"] for r in seen}),
                  "index": out.index.tolist(), "probability": out["probability"].tolist()}))
"""


def test_a_dataframe_without_pyarrow_goes_as_json(server: Server, trained: models.Job) -> None:
    from conftest import NANNYML

    path = NANNYML / "synthetic_car_loan_analysis.csv"
    r = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYARROW, server.url, server.keys["predictor"], str(path)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["types"] == ["application/json"]
    assert got["index"] == list(range(1000, 1040))
    df = pd.read_csv(path, nrows=40)[FEATURES]
    with server.client("predictor") as c:
        arrow = c.predict("loans", df)
    assert got["probability"] == pytest.approx(arrow["probability"].tolist())


def test_labels_from_a_dataframe_join_the_predictions_and_drift_is_read(
    server: Server, trained: models.Job, loans_later: pd.DataFrame
) -> None:
    df = loans_later.head(600)
    with server.client("predictor") as c:
        preds = c.predict("loans", df[FEATURES])
        outcome = c.feedback("loans", preds.assign(label=df["repaid"].astype(int).values))
    assert outcome.stored == 600 and outcome.unknown == 0, outcome
    with server.client("reader") as c:
        report = c.monitor.report("loans")
        drift = c.monitor.drift("loans")
        html = c.monitor.report_html("loans")
    assert report.model == "loans" and report.rows >= 600
    assert report.realized, "labelled predictions give realized performance"
    assert drift.model == "loans" and drift.windows and sum(w.rows for w in drift.windows) >= 600
    assert "<html" in html.lower()


@pytest.mark.anyio
async def test_async_predict_feedback_monitor(server: Server, trained: models.Job, loans_later: pd.DataFrame) -> None:
    df = loans_later.iloc[700:760]
    async with AsyncClient(server.url, api_key=server.keys["predictor"]) as c:
        out = await c.predict("loans", df[FEATURES], explain=True)
        one = await c.predict("loans", json.loads(df[FEATURES].head(1).to_json(orient="records"))[0])
        fb = await c.feedback(
            "loans", out.assign(label=df["repaid"].astype(int).values)[["request_id", "row", "label"]]
        )
        drift = await c.monitor.drift("loans")
    assert out.index.equals(df.index) and "explanation" in out.columns
    assert one.probability == pytest.approx(out["probability"].iloc[0])
    assert fb.stored == 60
    assert drift.windows
