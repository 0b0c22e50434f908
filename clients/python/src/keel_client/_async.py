"""`AsyncClient`: the asyncio twin of `Client`, sending the same `_calls` with `httpx.AsyncClient`."""

from __future__ import annotations

import asyncio
import builtins
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

import httpx

from . import _calls as c
from . import models as m
from ._base import Call, RetryPolicy, Settings, connection_error
from ._errors import JobTimeoutError, from_response
from ._frames import frame_chunks, is_dataframe, label_records, predictions_frame, record_chunks
from ._jobs import ProgressFn, finished, job_id, progress_printer, raise_for_job
from ._runs import Buffer, flat_params
from ._sync import merge_feedback

if TYPE_CHECKING:
    import openai
    import pandas as pd

T = TypeVar("T")


class _Resource:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _send(self, call: Call[T]) -> T:
        return await self._client._send(call)


class Models(_Resource):
    """The registry: models, versions, aliases, cards, lineage, imports."""

    async def list(self) -> builtins.list[m.ModelEntry]:
        return (await self._send(c.models_list())).data

    async def get(self, name: str) -> m.ModelSummary:
        """A model's champion (or `NAME@ALIAS`, `NAME@VERSION`)."""
        return await self._send(c.model_get(name))

    async def versions(self, name: str) -> builtins.list[m.ModelSummary]:
        return (await self._send(c.versions(name))).versions

    async def version(self, name: str, version: int) -> m.VersionDetail:
        return await self._send(c.version(name, version))

    async def card(self, name: str, version: int) -> m.CardResponse:
        return await self._send(c.card(name, version))

    async def card_html(self, name: str, version: int) -> str:
        return await self._send(c.card_html(name, version))

    async def lineage(self, name: str, version: int) -> m.Lineage:
        return await self._send(c.lineage(name, version))

    async def aliases(self, name: str) -> dict[str, int]:
        return (await self._send(c.aliases(name))).aliases

    async def set_alias(self, name: str, alias: str, version: int) -> m.AliasResponse:
        return await self._send(c.set_alias(name, alias, version))

    async def annotate(
        self, name: str, version: int, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> m.ModelSummary:
        return await self._send(c.annotate(name, version, description, tags))

    async def archive(self, name: str, version: int, *, restore: bool = False) -> m.VersionChange:
        return await self._send(c.archive(name, version, restore))

    async def delete(self, name: str, version: int) -> m.VersionChange:
        return await self._send(c.delete_version(name, version))

    async def import_model(
        self,
        name: str,
        model_file: str | os.PathLike[str] | bytes,
        *,
        format: str | None = None,
        feature_names: Sequence[str] | None = None,
        reference: Any = None,
        target: str | None = None,
        holdout: Any = None,
        canary: float | None = None,
        shadow: bool | None = None,
        sensitive: Sequence[str] | None = None,
        slices: Sequence[str] | None = None,
        threshold: float | None = None,
        aliases: Sequence[str] | None = None,
        champion_if_none: bool | None = None,
        description: str | None = None,
    ) -> m.Job:
        """Uploads a LightGBM, XGBoost or ONNX model file as a new version of `name` (a job). `reference` and
        `holdout` are DataFrames or local files; a holdout gates the version against the champion."""
        return await self._send(
            c.import_model(
                name,
                model_file,
                format=format,
                feature_names=feature_names,
                reference=reference,
                target=target,
                holdout=holdout,
                canary=canary,
                shadow=shadow,
                sensitive=sensitive,
                slices=slices,
                threshold=threshold,
                aliases=aliases,
                champion_if_none=champion_if_none,
                description=description,
            )
        )


class Monitor(_Resource):
    """Drift and realized performance."""

    async def report(self, model: str, *, windows: int | None = None) -> m.MonitorReport:
        return await self._send(c.monitor(model, windows))

    async def report_html(self, model: str, *, windows: int | None = None) -> str:
        return await self._send(c.monitor_html(model, windows))

    async def drift(self, model: str, *, windows: int | None = None) -> m.DriftHistory:
        """Drift per time window, oldest first."""
        return await self._send(c.drift(model, windows))


class Rollouts(_Resource):
    """Canary and shadow rollouts, promotion, rollback."""

    async def deploy(self, model: str, version: int, *, mode: str = "canary", weight: float | None = None) -> m.Rollout:
        return await self._send(c.deploy(model, version, mode, weight))

    async def status(self, model: str) -> m.RolloutStatus:
        return await self._send(c.rollout_status(model))

    async def promote(self, model: str) -> m.Promotion:
        return await self._send(c.promote(model))

    async def stop(self, model: str) -> m.Rollout:
        return await self._send(c.stop(model))

    async def rollback(self, model: str, *, alias: str | None = None) -> m.AliasMove:
        return await self._send(c.rollback(model, alias))


class Jobs(_Resource):
    """Training, retraining, import and ingest jobs."""

    async def train(
        self,
        data: Any = None,
        *,
        name: str,
        target: str,
        test: Any = None,
        server_data: str | None = None,
        server_test: str | None = None,
        **options: Any,
    ) -> m.Job:
        """Queues a training job. `data` (and `test`) are DataFrames or local CSV/Parquet files, uploaded;
        `server_data` names a file on the server instead. `options` are the TrainRequest fields (`objective`,
        `test_size`, `seed`, `drop`, `sensitive`, `slices`, `aliases`, `champion_if_none`, …)."""
        spec = {"name": name, "target": target, **options}
        return await self._send(c.train(spec, data, test, server_data, server_test))

    async def retrain(
        self,
        model: str,
        data: Any = None,
        holdout: Any = None,
        *,
        server_data: str | None = None,
        server_holdout: str | None = None,
        canary: float | None = None,
        shadow: bool | None = None,
        trees: int | None = None,
    ) -> m.Job:
        """Queues a retraining against the champion, gated on `holdout` (fresh labelled rows)."""
        spec = {k: v for k, v in {"canary": canary, "shadow": shadow, "trees": trees}.items() if v is not None}
        return await self._send(c.retrain(model, data, holdout, server_data, server_holdout, spec))

    async def get(self, job: int | m.Job) -> m.Job:
        return await self._send(c.job(job_id(job)))

    async def list(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[m.Job]:
        return (await self._send(c.jobs(model, state, kind, limit))).jobs

    async def cancel(self, job: int | m.Job) -> m.Job:
        return await self._send(c.cancel(job_id(job)))

    async def wait(
        self,
        job: int | m.Job,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
        progress: bool | ProgressFn = False,
        raise_on_failure: bool = True,
    ) -> m.Job:
        """Polls until the job finishes and returns its final state. `progress=True` draws a bar on stderr; a
        function gets every state seen. Raises `JobFailedError` when it failed or was cancelled (unless
        `raise_on_failure=False`) and `JobTimeoutError` after `timeout` seconds (the job goes on)."""
        report = progress_printer(sys.stderr) if progress is True else (progress or None)
        deadline = None if timeout is None else time.monotonic() + timeout
        current = await self.get(job)
        delay = min(poll_interval, 0.1)
        while True:
            if report:
                report(current)
            if finished(current):
                return raise_for_job(current) if raise_on_failure else current
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeoutError(
                    f"job {current.id} is still {current.state} after {timeout} s ({current.stage})", current
                )
            await asyncio.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(poll_interval, delay * 2)
            current = await self.get(current.id)


class AsyncRun:
    """A run being logged (from `client.runs.start()`): values are buffered and sent in batches; `end()` (or
    leaving the `with` block) sends the rest. An exception inside the block ends the run as `failed`."""

    def __init__(self, client: AsyncClient, info: m.Run, flush_every: int, flush_seconds: float) -> None:
        self._client = client
        self.info = info
        self._buf = Buffer(flush_every=flush_every, flush_seconds=flush_seconds)

    @property
    def id(self) -> str:
        return self.info.id

    async def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        self._buf.metric(key, value, step, timestamp)
        await self._maybe_flush()

    async def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            self._buf.metric(k, v, step, None)
        await self._maybe_flush()

    async def log_param(self, key: str, value: Any) -> None:
        self._buf.param(key, value)
        await self._maybe_flush()

    async def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters; nested dicts become dotted keys."""
        for k, v in flat_params(params).items():
            self._buf.param(k, v)
        await self._maybe_flush()

    async def set_tag(self, key: str, value: str) -> None:
        self._buf.tag(key, value)
        await self._maybe_flush()

    async def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self._buf.tag(k, v)
        await self._maybe_flush()

    async def log_artifact(self, path: str, data: bytes | str | os.PathLike[str]) -> m.RunArtifact:
        """Stores bytes, or a local file's content, under `path` in the run."""
        content = data if isinstance(data, bytes) else Path(data).read_bytes()
        return await self._client._send(c.put_artifact(self.id, path, content))

    async def flush(self) -> None:
        batches = self._buf.take()
        for i, b in enumerate(batches):
            try:
                await self._client._send(c.log_batch(self.id, b.metrics, b.params, b.tags))
            except BaseException:
                self._buf.restore(batches[i:])
                raise

    async def end(self, status: str = "finished") -> m.Run:
        await self.flush()
        self.info = await self._client._send(c.end_run(self.id, status, None))
        return self.info

    async def _maybe_flush(self) -> None:
        if self._buf.due():
            await self.flush()

    async def __aenter__(self) -> AsyncRun:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None:
            await self.end("finished")
            return
        try:
            await self.end("killed" if et is KeyboardInterrupt else "failed")
        except Exception:
            pass  # the original exception matters more


class Runs(_Resource):
    """Experiment tracking for your own training code."""

    async def start(
        self,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        seed: int | None = None,
        data_hash: str | None = None,
        flush_every: int = 1000,
        flush_seconds: float = 5.0,
    ) -> AsyncRun:
        """Starts a run; use it as a context manager. Metrics leave in batches of `flush_every` (at most 1,000)
        or every `flush_seconds`, whichever comes first."""
        info = await self._send(c.create_run(experiment, name, tags, seed, data_hash, None))
        run = AsyncRun(self._client, info, flush_every, flush_seconds)
        if params:
            await run.log_params(params)
            await run.flush()
        return run

    async def get(self, run_id: str) -> m.Run:
        return await self._send(c.run(run_id))

    async def list(self, *, experiment: str | None = None, limit: int | None = None) -> builtins.list[m.Run]:
        return (await self._send(c.runs(experiment, limit))).runs

    async def compare(self, run_ids: Sequence[str]) -> m.RunComparison:
        return await self._send(c.compare_runs(run_ids))

    async def experiments(self) -> builtins.list[m.Experiment]:
        return (await self._send(c.experiments())).experiments

    async def metric_history(self, run_id: str, key: str) -> builtins.list[m.MetricValue]:
        return (await self._send(c.metric_history(run_id, key))).values

    async def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Mapping[str, Any]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> m.Logged:
        return await self._send(c.log_batch(run_id, metrics, params or {}, tags or {}))

    async def artifact(self, run_id: str, path: str) -> bytes:
        return await self._send(c.get_artifact(run_id, path))

    async def end(self, run_id: str, status: str = "finished") -> m.Run:
        return await self._send(c.end_run(run_id, status, None))


class Audit(_Resource):
    """The tamper-evident audit log."""

    async def page(
        self,
        *,
        model: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> m.AuditPage:
        return await self._send(c.audit_page(model, action, actor, before, limit))

    async def iter(
        self, *, model: str | None = None, action: str | None = None, actor: str | None = None, page_size: int = 200
    ) -> AsyncIterator[m.AuditEntry]:
        """Every matching record, newest first, page by page."""
        before: int | None = None
        while True:
            p = await self.page(model=model, action=action, actor=actor, before=before, limit=page_size)
            for r in p.records:
                yield r
            if p.next_before is None or not p.records:
                return
            before = p.next_before

    async def verify(self) -> m.Verification:
        return await self._send(c.audit_verify())


class Rag(_Resource):
    """Retrieval-augmented answers over document collections."""

    async def collections(self) -> builtins.list[m.Collection]:
        return (await self._send(c.collections())).collections

    async def ingest(
        self,
        collection: str,
        documents: Sequence[str | os.PathLike[str] | tuple[str, str | bytes]],
        *,
        max_tokens: int | None = None,
        overlap: int | None = None,
        screen: bool | None = None,
        embedder: str | None = None,
    ) -> m.Job:
        """Uploads documents (local paths, or `(file name, text or bytes)` pairs) into a collection (a job);
        `embedder` ("minilm" or "mpnet") picks a new collection's embedding model."""
        return await self._send(c.ingest(collection, documents, max_tokens, overlap, screen, embedder))

    async def chunks(
        self, collection: str, *, document: str | None = None, offset: int | None = None, limit: int | None = None
    ) -> m.ChunkPage:
        return await self._send(c.chunks(collection, document, offset, limit))

    async def delete_document(self, collection: str, document: str) -> m.Deleted:
        return await self._send(c.delete_document(collection, document))

    async def query(
        self,
        collection: str,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        retrieval: str | None = None,
    ) -> m.RagAnswer:
        return await self._send(c.rag_query(collection, question, k, mode, retrieval))


class Guard(_Resource):
    """Prompt-injection, PII, secret and leak scans."""

    async def scan(
        self,
        text: str,
        *,
        route: str | None = None,
        system_prompt: str | None = None,
        canaries: Sequence[str] | None = None,
    ) -> m.ScanReport:
        return await self._send(c.scan(text, route, system_prompt, canaries))


class Keys(_Resource):
    """API keys (admin)."""

    async def list(self) -> builtins.list[m.KeyInfo]:
        return await self._send(c.keys())

    async def create(self, role: str, *, description: str | None = None) -> m.NewKey:
        """A new key with `role` (reader, predictor, deployer, admin); the secret is shown once."""
        return await self._send(c.create_key(role, description))

    async def revoke(self, key_id: str) -> None:
        await self._send(c.revoke_key(key_id))


class AsyncClient:
    """Keel over HTTP, for asyncio.

    >>> client = AsyncClient()                      # KEEL_URL and KEEL_API_KEY from the environment
    >>> await client.predict("churn", {"age": 41})   # NAME, NAME@ALIAS or NAME@VERSION

    Retries connection failures, 429 and 503 (honouring `Retry-After`) up to `max_retries` times, for calls
    that are safe to repeat; pass `retry_writes=True` to retry writes too; `retry=RetryPolicy(...)` sets the
    backoff. `timeout` is in seconds. `http_client` lets you bring your own httpx client (proxies, TLS, hooks).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_writes: bool = False,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = Settings.make(base_url, api_key, timeout, max_retries, retry_writes, headers, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient()
        self.models = Models(self)
        self.monitor = Monitor(self)
        self.rollouts = Rollouts(self)
        self.jobs = Jobs(self)
        self.runs = Runs(self)
        self.audit = Audit(self)
        self.rag = Rag(self)
        self.guard = Guard(self)
        self.keys = Keys(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def with_options(
        self,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_writes: bool | None = None,
    ) -> AsyncClient:
        """A client with other settings sharing this one's connections."""
        other = AsyncClient.__new__(AsyncClient)
        other.__dict__.update(self.__dict__)
        other._settings = self._settings.updated(
            api_key=api_key, timeout=timeout, max_retries=max_retries, retry_writes=retry_writes
        )
        other._owns_http = False
        for attr in ("models", "monitor", "rollouts", "jobs", "runs", "audit", "rag", "guard", "keys"):
            setattr(other, attr, type(getattr(self, attr))(other))
        return other

    async def _send(self, call: Call[T]) -> T:
        s = self._settings
        attempt = 0
        while True:
            req = s.build(self._http, call)
            try:
                resp = await self._http.send(req)
            except httpx.TransportError as e:
                delay = s.retry.delay_after_error(e, attempt) if s.may_retry(call) else None
                if delay is None:
                    raise connection_error(e, req) from e
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if resp.is_success:
                return call.parse(resp)
            delay = s.retry.delay_after_response(resp, attempt) if s.may_retry(call) else None
            if delay is None:
                raise from_response(resp)
            await resp.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    # Operations.

    async def health(self) -> m.Health:
        """`/healthz`: the server's version and its job worker's state (raises when the worker stopped)."""
        return await self._send(c.health())

    async def ready(self) -> m.Ready:
        return await self._send(c.ready())

    # Predictions.

    @overload
    async def predict(
        self,
        model: str,
        data: pd.DataFrame,
        *,
        explain: bool = ...,
        top_k: int | None = ...,
        explain_class: str | None = ...,
        batch_size: int = ...,
        arrow: bool | None = ...,
    ) -> pd.DataFrame: ...

    @overload
    async def predict(
        self,
        model: str,
        data: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        explain: bool = ...,
        top_k: int | None = ...,
        explain_class: str | None = ...,
        batch_size: int = ...,
        arrow: bool | None = ...,
    ) -> m.PredictResponse: ...

    async def predict(
        self,
        model: str,
        data: Any,
        *,
        explain: bool = False,
        top_k: int | None = None,
        explain_class: str | None = None,
        batch_size: int = 1000,
        arrow: bool | None = None,
    ) -> Any:
        """Predicts one record (a dict), records (a list of dicts) or a DataFrame.

        A DataFrame goes as an Arrow stream when pyarrow is installed (`arrow=False` forces JSON), in batches
        of `batch_size` rows (the server's `max_records`, 1,000 by default, bounds one request), and comes
        back as a DataFrame on the same index: `prediction`, `probability`, `proba_<class>` (multiclass),
        `interval_lower`/`interval_upper` (regression), `explanation` (with explain=True), and the
        `request_id`/`row` that `feedback` names. Records come back as the server's `PredictResponse`; more
        than `max_records` of them is a `PayloadTooLargeError`.
        """
        if is_dataframe(data):
            out = [
                await self._send(c.predict_frame(model, chunk, explain, top_k, explain_class, arrow))
                for chunk in frame_chunks(data, batch_size)
            ]
            return predictions_frame(data.index, out)
        if isinstance(data, Mapping):
            return await self._send(c.predict_one(model, data, explain, top_k, explain_class))
        return await self._send(c.predict_records(model, list(data), explain, top_k, explain_class))

    async def feedback(self, model: str, labels: Any, *, batch_size: int = 10_000) -> m.FeedbackOutcome:
        """Sends delayed labels: dicts `{"request_id", "row", "label"}` or a DataFrame with those columns
        (e.g. `predict()`'s output with a `label` column added)."""
        rows = label_records(labels)
        outcomes = [await self._send(c.feedback(model, chunk)) for chunk in record_chunks(rows, batch_size)]
        return merge_feedback(outcomes)

    def openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """The stock `openai.AsyncOpenAI` client pointed at Keel's `/v1` (chat completions through the guard,
        embeddings) with this client's key. Needs `pip install openai`."""
        try:
            import openai
        except ImportError as e:
            raise ImportError("client.openai() needs the openai package: pip install 'keel-client[openai]'") from e
        timeout = self._settings.timeout
        kwargs.setdefault("timeout", timeout)
        kwargs.setdefault("max_retries", self._settings.retry.max_retries)
        return openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=self._settings.api_key or "no-key", **kwargs)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
