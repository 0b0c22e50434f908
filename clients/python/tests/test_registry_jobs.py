"""The registry (versions, aliases, cards, lineage, annotate, archive, delete), jobs (train with progress,
cancel, retrain, import), rollouts and rollback, sync and async."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from conftest import REPO, Server

import keel_client
from keel_client import AsyncClient, models

IMPORT = REPO / "crates" / "keel-ml" / "tests" / "fixtures" / "import"


def test_the_trained_model_is_registered_with_card_and_lineage(server: Server, trained: models.Job) -> None:
    assert trained.kind == "train" and trained.progress == 1.0
    assert trained.result is not None and trained.result["version"] == 1
    with server.client("reader") as c:
        entries = c.models.list()
        summary = c.models.get("loans")
        versions = c.models.versions("loans")
        detail = c.models.version("loans", 1)
        card = c.models.card("loans", 1)
        html = c.models.card_html("loans", 1)
        lineage = c.models.lineage("loans", 1)
        aliases = c.models.aliases("loans")
    assert any(e.id == "loans" for e in entries)
    assert summary.version == 1 and "champion" in summary.aliases
    assert card.card["intended_use"] == "car loans, trained from pytest"
    assert [v.version for v in versions] == [1]
    assert detail.version == 1
    assert card.model == "loans" and card.card
    assert "<html" in html.lower()
    assert lineage.version == 1 and lineage.dataset_hash
    assert aliases == {"champion": 1}


def test_a_training_job_reports_progress_until_it_succeeds(server: Server, loans: pd.DataFrame) -> None:
    seen: list[models.Job] = []
    err = io.StringIO()
    with server.client("deployer") as c:
        job = c.jobs.train(
            loans.drop(columns=["id", "timestamp"]),
            name="loans",
            target="repaid",
            seed=11,
            gbdt={"n_trees": 40},
            description="second",
        )
        assert job.state in ("queued", "running")
        done = c.jobs.wait(job, progress=seen.append, poll_interval=0.2, timeout=600)
        from keel_client._jobs import progress_printer

        progress_printer(err)(done)
        listed = c.jobs.list(model="loans", kind="train")
    assert done.state == "succeeded" and done.result and done.result["version"] == 2
    assert seen[-1].state == "succeeded"
    steps = [j.progress for j in seen]
    assert steps == sorted(steps)
    assert "100% " in err.getvalue() and "succeeded" in err.getvalue()
    assert {j.id for j in listed} >= {job.id}


def test_aliases_annotate_archive_delete(server: Server, trained: models.Job) -> None:
    with server.client("deployer") as c:
        c.jobs.wait(
            c.jobs.train(
                server_data=_server_copy(server),
                name="scratch",
                target="repaid",
                drop=["timestamp", "id"],
                gbdt={"n_trees": 10},
            ),
            timeout=600,
        )
        c.jobs.wait(
            c.jobs.train(
                server_data=_server_copy(server),
                name="scratch",
                target="repaid",
                drop=["timestamp", "id"],
                gbdt={"n_trees": 12},
            ),
            timeout=600,
        )
        moved = c.models.set_alias("scratch", "staging", 2)
        assert moved.version == 2
        noted = c.models.annotate("scratch", 1, description="first try", tags={"team": "credit"})
        assert noted.description == "first try" and noted.tags["team"] == "credit"
        archived = c.models.archive("scratch", 1)
        assert archived.version == 1 and archived.outcome
        assert {v.version: v.archived for v in c.models.versions("scratch")} == {1: True, 2: False}
        with pytest.raises(keel_client.ConflictError):
            c.with_options(api_key=server.keys["admin"]).models.delete("scratch", 2)  # an alias points at it
        restored = c.models.archive("scratch", 1, restore=True)
        assert restored.version == 1
        with pytest.raises(keel_client.PermissionDeniedError):
            c.models.delete("scratch", 1)  # deleting is for admins
        gone = c.with_options(api_key=server.keys["admin"]).models.delete("scratch", 1)
        assert gone.version == 1
        assert [v.version for v in c.models.versions("scratch")] == [2]


def _server_copy(server: Server) -> str:
    """A CSV in the server's home (a path the server can read), for the server_data= form."""
    from conftest import NANNYML

    p = server.home / "loans-small.csv"
    if not p.exists():
        pd.read_csv(NANNYML / "synthetic_car_loan_reference.csv", nrows=800).drop(
            columns=["y_pred_proba", "y_pred"]
        ).to_csv(p, index=False)
    return str(p)


def test_a_queued_job_is_cancelled(server: Server, loans: pd.DataFrame) -> None:
    with server.client("deployer") as c:
        first = c.jobs.train(
            loans.drop(columns=["id", "timestamp"]), name="busy", target="repaid", gbdt={"n_trees": 60}
        )
        second = c.jobs.train(
            loans.drop(columns=["id", "timestamp"]), name="busy", target="repaid", gbdt={"n_trees": 60}
        )
        cancelled = c.jobs.cancel(second)
        assert cancelled.cancel_requested
        with pytest.raises(keel_client.JobFailedError) as e:
            c.jobs.wait(second, timeout=600)
        assert e.value.job.state == "cancelled"
        c.jobs.wait(first, timeout=600)


def test_import_a_lightgbm_model_with_a_reference_frame(server: Server) -> None:
    holdout = pd.read_csv(IMPORT / "employment_holdout.csv")
    with server.client("deployer") as c:
        job = c.models.import_model(
            "employment-lgb",
            IMPORT / "lgb_employment.txt",
            reference=holdout,
            target="employed",
            champion_if_none=True,
        )
        done = c.jobs.wait(job, timeout=600)
        assert done.kind == "import" and done.result
        got = c.models.get("employment-lgb")
    assert got.kind and got.version == 1


def test_retrain_rollout_promote_and_rollback(
    server: Server, trained: models.Job, loans: pd.DataFrame, loans_later: pd.DataFrame
) -> None:
    fresh = loans_later.dropna(subset=["repaid"]).head(1000)
    with server.client("deployer") as c:
        job = c.jobs.retrain(
            "loans", data=loans.drop(columns=["id"]), holdout=fresh.drop(columns=["id"]), trees=30, canary=0.2
        )
        done = c.jobs.wait(job, timeout=600)
        assert done.kind == "retrain" and done.result is not None
        versions = [v.version for v in c.models.versions("loans")]
        latest = max(versions)
        c.rollouts.stop("loans") if c.rollouts.status("loans").rollout else None
        rollout = c.rollouts.deploy("loans", latest, mode="shadow")
        assert rollout.shadow_version == latest
        status = c.rollouts.status("loans")
        assert status.rollout is not None and status.rollout.shadow_version == latest
        stopped = c.rollouts.stop("loans")
        assert stopped.model == "loans"
        before = c.models.aliases("loans")["champion"]
        c.models.set_alias("loans", "champion", latest)
        back = c.rollouts.rollback("loans")
        assert back.version == before and back.before == latest
        assert c.models.aliases("loans")["champion"] == before
        # A canary promoted by hand becomes the champion; a rollback restores the one before.
        canary = c.rollouts.deploy("loans", latest, mode="canary", weight=0.1)
        assert canary.canary_version == latest and canary.canary_weight == pytest.approx(0.1)
        promoted = c.rollouts.promote("loans")
        assert promoted.after == latest and promoted.before == before
        assert c.models.aliases("loans")["champion"] == latest
        assert c.rollouts.status("loans").rollout is None
        assert c.rollouts.rollback("loans").version == before


@pytest.mark.anyio
async def test_async_registry_and_jobs(server: Server, trained: models.Job, loans: pd.DataFrame) -> None:
    async with AsyncClient(server.url, api_key=server.keys["deployer"]) as c:
        names = [e.id for e in await c.models.list()]
        assert "loans" in names
        assert (await c.models.get("loans@1")).version == 1
        job = await c.jobs.train(
            loans.head(1500).drop(columns=["id", "timestamp"]),
            name="async-loans",
            target="repaid",
            gbdt={"n_trees": 20},
            champion_if_none=True,
        )
        states: list[str] = []
        done = await c.jobs.wait(job, progress=lambda j: states.append(j.state), timeout=600)
        assert done.state == "succeeded" and states[-1] == "succeeded"
        assert (await c.models.aliases("async-loans")) == {"champion": 1}
        assert (await c.jobs.get(job.id)).state == "succeeded"
        assert (await c.models.lineage("async-loans", 1)).version == 1


@pytest.mark.anyio
async def test_async_cards_rollouts_monitor_runs_and_cancel(
    server: Server, trained: models.Job, loans: pd.DataFrame
) -> None:
    async with AsyncClient(server.url, api_key=server.keys["admin"]) as c:
        assert 1 in [v.version for v in await c.models.versions("loans")]
        card = await c.models.card("loans", 1)
        assert card.card["intended_use"] == "car loans, trained from pytest"
        assert "<html" in (await c.models.card_html("loans", 1)).lower()
        report = await c.monitor.report("loans")
        assert report.model == "loans"
        status = await c.rollouts.status("loans")
        assert status.model == "loans"
        jobs = await c.jobs.list(model="loans")
        assert jobs and all(j.model == "loans" for j in jobs)
        first = await c.jobs.train(loans.drop(columns=["id", "timestamp"]), name="async-busy", target="repaid")
        second = await c.jobs.train(loans.drop(columns=["id", "timestamp"]), name="async-busy", target="repaid")
        assert (await c.jobs.cancel(second)).cancel_requested
        last = await c.jobs.wait(second, timeout=600, raise_on_failure=False)
        assert last.state == "cancelled"
        await c.jobs.wait(first, timeout=600)
        assert (await c.audit.page(model="async-busy", limit=50)).records
        # Every training recorded a run: the run list and the experiments are not empty.
        runs = await c.runs.list(limit=5)
        assert runs and all(r.id and r.status for r in runs)
        assert any(e.runs >= 1 for e in await c.runs.experiments())
