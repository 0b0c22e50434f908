"""`Client`: the blocking client. Every method builds its request in `_calls` (shared with `AsyncClient`) and
sends it here."""

from __future__ import annotations

import builtins
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
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

if TYPE_CHECKING:
    import openai
    import pandas as pd

T = TypeVar("T")


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _send(self, call: Call[T]) -> T:
        return self._client._send(call)


class Models(_Resource):
    """The registry: models, versions, aliases, cards, lineage, imports."""

    def list(self) -> builtins.list[m.ModelEntry]:
        return self._send(c.models_list()).data

    def get(self, name: str) -> m.ModelSummary:
        """A model's champion (or `NAME@ALIAS`, `NAME@VERSION`)."""
        return self._send(c.model_get(name))

    def versions(self, name: str) -> builtins.list[m.ModelSummary]:
        return self._send(c.versions(name)).versions

    def version(self, name: str, version: int) -> m.VersionDetail:
        return self._send(c.version(name, version))

    def card(self, name: str, version: int) -> m.CardResponse:
        return self._send(c.card(name, version))

    def card_html(self, name: str, version: int) -> str:
        return self._send(c.card_html(name, version))

    def lineage(self, name: str, version: int) -> m.Lineage:
        return self._send(c.lineage(name, version))

    def aliases(self, name: str) -> dict[str, int]:
        return self._send(c.aliases(name)).aliases

    def set_alias(self, name: str, alias: str, version: int) -> m.AliasResponse:
        return self._send(c.set_alias(name, alias, version))

    def annotate(
        self, name: str, version: int, *, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> m.ModelSummary:
        return self._send(c.annotate(name, version, description, tags))

    def archive(self, name: str, version: int, *, restore: bool = False) -> m.VersionChange:
        return self._send(c.archive(name, version, restore))

    def delete(self, name: str, version: int) -> m.VersionChange:
        return self._send(c.delete_version(name, version))

    def import_model(
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
        return self._send(
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

    def report(self, model: str, *, windows: int | None = None) -> m.MonitorReport:
        return self._send(c.monitor(model, windows))

    def report_html(self, model: str, *, windows: int | None = None) -> str:
        return self._send(c.monitor_html(model, windows))

    def drift(self, model: str, *, windows: int | None = None) -> m.DriftHistory:
        """Drift per time window, oldest first."""
        return self._send(c.drift(model, windows))


class Rollouts(_Resource):
    """Canary and shadow rollouts, promotion, rollback."""

    def deploy(self, model: str, version: int, *, mode: str = "canary", weight: float | None = None) -> m.Rollout:
        return self._send(c.deploy(model, version, mode, weight))

    def status(self, model: str) -> m.RolloutStatus:
        return self._send(c.rollout_status(model))

    def promote(self, model: str) -> m.Promotion:
        return self._send(c.promote(model))

    def stop(self, model: str) -> m.Rollout:
        return self._send(c.stop(model))

    def rollback(self, model: str, *, alias: str | None = None) -> m.AliasMove:
        return self._send(c.rollback(model, alias))


class Jobs(_Resource):
    """Training, retraining, import and ingest jobs."""

    def train(
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
        return self._send(c.train(spec, data, test, server_data, server_test))

    def retrain(
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
        return self._send(c.retrain(model, data, holdout, server_data, server_holdout, spec))

    def get(self, job: int | m.Job) -> m.Job:
        return self._send(c.job(job_id(job)))

    def list(
        self,
        *,
        model: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[m.Job]:
        return self._send(c.jobs(model, state, kind, limit)).jobs

    def cancel(self, job: int | m.Job) -> m.Job:
        return self._send(c.cancel(job_id(job)))

    def wait(
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
        current = self.get(job)
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
            time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(poll_interval, delay * 2)
            current = self.get(current.id)


class Run:
    """A run being logged (from `client.runs.start()`): values are buffered and sent in batches; `end()` (or
    leaving the `with` block) sends the rest. An exception inside the block ends the run as `failed`."""

    def __init__(self, client: Client, info: m.Run, flush_every: int, flush_seconds: float) -> None:
        self._client = client
        self.info = info
        self._buf = Buffer(flush_every=flush_every, flush_seconds=flush_seconds)

    @property
    def id(self) -> str:
        return self.info.id

    def log_metric(self, key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
        self._buf.metric(key, value, step, timestamp)
        self._maybe_flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            self._buf.metric(k, v, step, None)
        self._maybe_flush()

    def log_param(self, key: str, value: Any) -> None:
        self._buf.param(key, value)
        self._maybe_flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Parameters; nested dicts become dotted keys."""
        for k, v in flat_params(params).items():
            self._buf.param(k, v)
        self._maybe_flush()

    def set_tag(self, key: str, value: str) -> None:
        self._buf.tag(key, value)
        self._maybe_flush()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self._buf.tag(k, v)
        self._maybe_flush()

    def log_artifact(self, path: str, data: bytes | str | os.PathLike[str]) -> m.RunArtifact:
        """Stores bytes, or a local file's content, under `path` in the run."""
        content = data if isinstance(data, bytes) else Path(data).read_bytes()
        return self._client._send(c.put_artifact(self.id, path, content))

    def flush(self) -> None:
        batches = self._buf.take()
        for i, b in enumerate(batches):
            try:
                self._client._send(c.log_batch(self.id, b.metrics, b.params, b.tags))
            except BaseException:
                self._buf.restore(batches[i:])
                raise

    def end(self, status: str = "finished") -> m.Run:
        self.flush()
        self.info = self._client._send(c.end_run(self.id, status, None))
        return self.info

    def _maybe_flush(self) -> None:
        if self._buf.due():
            self.flush()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.end("finished")
            return
        try:
            self.end("killed" if et is KeyboardInterrupt else "failed")
        except Exception:
            pass  # the original exception matters more


class Runs(_Resource):
    """Experiment tracking for your own training code."""

    def start(
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
    ) -> Run:
        """Starts a run; use it as a context manager. Metrics leave in batches of `flush_every` (at most 1,000)
        or every `flush_seconds`, whichever comes first."""
        info = self._send(c.create_run(experiment, name, tags, seed, data_hash, None))
        run = Run(self._client, info, flush_every, flush_seconds)
        if params:
            run.log_params(params)
            run.flush()
        return run

    def get(self, run_id: str) -> m.Run:
        return self._send(c.run(run_id))

    def list(self, *, experiment: str | None = None, limit: int | None = None) -> builtins.list[m.Run]:
        return self._send(c.runs(experiment, limit)).runs

    def compare(self, run_ids: Sequence[str]) -> m.RunComparison:
        return self._send(c.compare_runs(run_ids))

    def experiments(self) -> builtins.list[m.Experiment]:
        return self._send(c.experiments()).experiments

    def metric_history(self, run_id: str, key: str) -> builtins.list[m.MetricValue]:
        return self._send(c.metric_history(run_id, key)).values

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Mapping[str, Any]] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> m.Logged:
        return self._send(c.log_batch(run_id, metrics, params or {}, tags or {}))

    def artifact(self, run_id: str, path: str) -> bytes:
        return self._send(c.get_artifact(run_id, path))

    def end(self, run_id: str, status: str = "finished") -> m.Run:
        return self._send(c.end_run(run_id, status, None))


class Audit(_Resource):
    """The tamper-evident audit log."""

    def page(
        self,
        *,
        model: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> m.AuditPage:
        return self._send(c.audit_page(model, action, actor, before, limit))

    def iter(
        self, *, model: str | None = None, action: str | None = None, actor: str | None = None, page_size: int = 200
    ) -> Iterator[m.AuditEntry]:
        """Every matching record, newest first, page by page."""
        before: int | None = None
        while True:
            p = self.page(model=model, action=action, actor=actor, before=before, limit=page_size)
            yield from p.records
            if p.next_before is None or not p.records:
                return
            before = p.next_before

    def verify(self) -> m.Verification:
        return self._send(c.audit_verify())


class Rag(_Resource):
    """Retrieval-augmented answers over document collections."""

    def collections(self) -> builtins.list[m.Collection]:
        return self._send(c.collections()).collections

    def ingest(
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
        return self._send(c.ingest(collection, documents, max_tokens, overlap, screen, embedder))

    def chunks(
        self, collection: str, *, document: str | None = None, offset: int | None = None, limit: int | None = None
    ) -> m.ChunkPage:
        return self._send(c.chunks(collection, document, offset, limit))

    def delete_document(self, collection: str, document: str) -> m.Deleted:
        return self._send(c.delete_document(collection, document))

    def query(
        self,
        collection: str,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        retrieval: str | None = None,
    ) -> m.RagAnswer:
        return self._send(c.rag_query(collection, question, k, mode, retrieval))


class Guard(_Resource):
    """Prompt-injection, PII, secret and leak scans."""

    def scan(
        self,
        text: str,
        *,
        route: str | None = None,
        system_prompt: str | None = None,
        canaries: Sequence[str] | None = None,
    ) -> m.ScanReport:
        return self._send(c.scan(text, route, system_prompt, canaries))


class Keys(_Resource):
    """API keys (admin)."""

    def list(self) -> builtins.list[m.KeyInfo]:
        return self._send(c.keys())

    def create(self, role: str, *, description: str | None = None) -> m.NewKey:
        """A new key with `role` (reader, predictor, deployer, admin); the secret is shown once."""
        return self._send(c.create_key(role, description))

    def revoke(self, key_id: str) -> None:
        self._send(c.revoke_key(key_id))


class Client:
    """Keel over HTTP.

    >>> client = Client()                      # KEEL_URL and KEEL_API_KEY from the environment
    >>> client.predict("churn", {"age": 41})   # NAME, NAME@ALIAS or NAME@VERSION

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
        http_client: httpx.Client | None = None,
    ) -> None:
        self._settings = Settings.make(base_url, api_key, timeout, max_retries, retry_writes, headers, retry)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client()
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
    ) -> Client:
        """A client with other settings sharing this one's connections."""
        other = Client.__new__(Client)
        other.__dict__.update(self.__dict__)
        other._settings = self._settings.updated(
            api_key=api_key, timeout=timeout, max_retries=max_retries, retry_writes=retry_writes
        )
        other._owns_http = False
        for attr in ("models", "monitor", "rollouts", "jobs", "runs", "audit", "rag", "guard", "keys"):
            setattr(other, attr, type(getattr(self, attr))(other))
        return other

    def _send(self, call: Call[T]) -> T:
        s = self._settings
        attempt = 0
        while True:
            req = s.build(self._http, call)
            try:
                resp = self._http.send(req)
            except httpx.TransportError as e:
                delay = s.retry.delay_after_error(e, attempt) if s.may_retry(call) else None
                if delay is None:
                    raise connection_error(e, req) from e
                time.sleep(delay)
                attempt += 1
                continue
            if resp.is_success:
                return call.parse(resp)
            delay = s.retry.delay_after_response(resp, attempt) if s.may_retry(call) else None
            if delay is None:
                raise from_response(resp)
            resp.close()
            time.sleep(delay)
            attempt += 1

    # Operations.

    def health(self) -> m.Health:
        """`/healthz`: the server's version and its job worker's state (raises when the worker stopped)."""
        return self._send(c.health())

    def ready(self) -> m.Ready:
        return self._send(c.ready())

    # Predictions.

    @overload
    def predict(
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
    def predict(
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

    def predict(
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
                self._send(c.predict_frame(model, chunk, explain, top_k, explain_class, arrow))
                for chunk in frame_chunks(data, batch_size)
            ]
            return predictions_frame(data.index, out)
        if isinstance(data, Mapping):
            return self._send(c.predict_one(model, data, explain, top_k, explain_class))
        return self._send(c.predict_records(model, list(data), explain, top_k, explain_class))

    def feedback(self, model: str, labels: Any, *, batch_size: int = 10_000) -> m.FeedbackOutcome:
        """Sends delayed labels: dicts `{"request_id", "row", "label"}` or a DataFrame with those columns
        (e.g. `predict()`'s output with a `label` column added)."""
        rows = label_records(labels)
        outcomes = [self._send(c.feedback(model, chunk)) for chunk in record_chunks(rows, batch_size)]
        return merge_feedback(outcomes)

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        """The stock `openai.OpenAI` client pointed at Keel's `/v1` (chat completions through the guard,
        embeddings) with this client's key. Needs `pip install openai`."""
        try:
            import openai
        except ImportError as e:
            raise ImportError("client.openai() needs the openai package: pip install 'keel-client[openai]'") from e
        timeout = self._settings.timeout
        kwargs.setdefault("timeout", timeout)
        kwargs.setdefault("max_retries", self._settings.retry.max_retries)
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self._settings.api_key or "no-key", **kwargs)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def merge_feedback(outcomes: Sequence[m.FeedbackOutcome]) -> m.FeedbackOutcome:
    if len(outcomes) == 1:
        return outcomes[0]
    notes = [o.note for o in outcomes if o.note]
    return m.FeedbackOutcome(
        stored=sum(o.stored for o in outcomes),
        replaced=sum(o.replaced for o in outcomes),
        unknown=sum(o.unknown for o in outcomes),
        unknown_ids=[i for o in outcomes for i in o.unknown_ids],
        log_rate=outcomes[0].log_rate,
        note=notes[0] if notes else None,
    )
