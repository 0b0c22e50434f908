"""The request builder: every endpoint as a function returning a `Call` (method, path, body, how to read the
answer). `Client` and `AsyncClient` send the same calls; nothing here does I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from . import models as m
from ._base import Call, FileField, json_value, model, model_list, nothing, raw_bytes, segment, text
from ._frames import frame_body, upload

Params = dict[str, str | int | float | bool]


def _params(**kw: Any) -> Params:
    out: Params = {}
    for k, v in kw.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        out[k] = v
    return out


def _body(**kw: Any) -> dict[str, Any]:
    """A JSON body without the fields left at None."""
    return {k: v for k, v in kw.items() if v is not None}


def _model_path(name: str) -> str:
    return f"/v1/models/{segment(name)}"


# Operations.


def health() -> Call[m.Health]:
    return Call("GET", "/healthz", model(m.Health))


def ready() -> Call[m.Ready]:
    return Call("GET", "/readyz", model(m.Ready))


def openapi() -> Call[Any]:
    return Call("GET", "/openapi.json", json_value)


# Models and versions.


def models_list() -> Call[m.ModelList]:
    return Call("GET", "/v1/models", model(m.ModelList))


def model_get(name: str) -> Call[m.ModelSummary]:
    return Call("GET", _model_path(name), model(m.ModelSummary))


def versions(name: str) -> Call[m.VersionList]:
    return Call("GET", f"{_model_path(name)}/versions", model(m.VersionList))


def version(name: str, v: int) -> Call[m.VersionDetail]:
    return Call("GET", f"{_model_path(name)}/versions/{int(v)}", model(m.VersionDetail))


def card(name: str, v: int) -> Call[m.CardResponse]:
    return Call("GET", f"{_model_path(name)}/versions/{int(v)}/card", model(m.CardResponse))


def card_html(name: str, v: int) -> Call[str]:
    return Call(
        "GET", f"{_model_path(name)}/versions/{int(v)}/card", text, params={"format": "html"}, accept="text/html"
    )


def lineage(name: str, v: int) -> Call[m.Lineage]:
    return Call("GET", f"{_model_path(name)}/versions/{int(v)}/lineage", model(m.Lineage))


def aliases(name: str) -> Call[m.AliasList]:
    return Call("GET", f"{_model_path(name)}/aliases", model(m.AliasList))


def set_alias(name: str, alias: str, v: int) -> Call[m.AliasResponse]:
    return Call(
        "PUT",
        f"{_model_path(name)}/aliases/{segment(alias)}",
        model(m.AliasResponse),
        json={"version": int(v)},
    )


def annotate(name: str, v: int, description: str | None, tags: Mapping[str, str] | None) -> Call[m.ModelSummary]:
    return Call(
        "PATCH",
        f"{_model_path(name)}/versions/{int(v)}",
        model(m.ModelSummary),
        json=_body(description=description, tags=dict(tags) if tags is not None else None),
        idempotent=True,
    )


def archive(name: str, v: int, restore: bool) -> Call[m.VersionChange]:
    return Call(
        "POST",
        f"{_model_path(name)}/versions/{int(v)}/archive",
        model(m.VersionChange),
        json={"restore": restore},
        idempotent=True,
    )


def delete_version(name: str, v: int) -> Call[m.VersionChange]:
    return Call("DELETE", f"{_model_path(name)}/versions/{int(v)}", model(m.VersionChange))


def import_model(
    name: str,
    model_file: Any,
    *,
    format: str | None,
    feature_names: Sequence[str] | None,
    reference: Any,
    target: str | None,
    holdout: Any,
    canary: float | None,
    shadow: bool | None,
    sensitive: Sequence[str] | None,
    slices: Sequence[str] | None,
    threshold: float | None,
    aliases: Sequence[str] | None,
    champion_if_none: bool | None,
    description: str | None,
) -> Call[m.Job]:
    files: list[FileField] = [("model", upload("model", model_file))]
    if reference is not None:
        files.append(("reference", upload("reference", reference)))
    if holdout is not None:
        files.append(("holdout", upload("holdout", holdout)))
    spec = _body(
        format=format,
        feature_names=list(feature_names) if feature_names is not None else None,
        target=target,
        sensitive=list(sensitive) if sensitive is not None else None,
        slices=list(slices) if slices is not None else None,
        threshold=threshold,
        aliases=list(aliases) if aliases is not None else None,
        champion_if_none=champion_if_none,
        description=description,
    )
    if holdout is not None:
        spec["gate"] = _body(canary=canary, shadow=shadow)
    return Call(
        "POST",
        f"{_model_path(name)}/import",
        model(m.Job),
        files=files,
        data={"spec": json.dumps(spec)},
    )


# Predictions and monitoring.


def _predict_params(explain: bool, top_k: int | None, explain_class: str | None) -> Params:
    return _params(explain=True if explain else None, top_k=top_k, explain_class=explain_class)


def predict_records(
    name: str, records: Sequence[Mapping[str, Any]], explain: bool, top_k: int | None, explain_class: str | None
) -> Call[m.PredictResponse]:
    return Call(
        "POST",
        f"{_model_path(name)}/predict",
        model(m.PredictResponse),
        params=_predict_params(explain, top_k, explain_class),
        json={"records": [dict(r) for r in records]},
        idempotent=True,
    )


def predict_one(
    name: str, record: Mapping[str, Any], explain: bool, top_k: int | None, explain_class: str | None
) -> Call[m.PredictResponse]:
    return Call(
        "POST",
        f"{_model_path(name)}/predict",
        model(m.PredictResponse),
        params=_predict_params(explain, top_k, explain_class),
        json=dict(record),
        idempotent=True,
    )


def predict_frame(
    name: str, df: Any, explain: bool, top_k: int | None, explain_class: str | None, arrow: bool | None
) -> Call[m.PredictResponse]:
    body, ctype = frame_body(df, arrow)
    return Call(
        "POST",
        f"{_model_path(name)}/predict",
        model(m.PredictResponse),
        params=_predict_params(explain, top_k, explain_class),
        content=body,
        content_type=ctype,
        idempotent=True,
    )


def feedback(name: str, labels: Sequence[Mapping[str, Any]]) -> Call[m.FeedbackOutcome]:
    # A second label for a prediction replaces the first: sending a batch twice is harmless.
    return Call(
        "POST",
        f"{_model_path(name)}/feedback",
        model(m.FeedbackOutcome),
        json={"labels": list(labels)},
        idempotent=True,
    )


def monitor(name: str, windows: int | None) -> Call[m.MonitorReport]:
    return Call("GET", f"{_model_path(name)}/monitor", model(m.MonitorReport), params=_params(windows=windows))


def monitor_html(name: str, windows: int | None) -> Call[str]:
    return Call(
        "GET",
        f"{_model_path(name)}/monitor",
        text,
        params=_params(windows=windows, format="html"),
        accept="text/html",
    )


def drift(name: str, windows: int | None) -> Call[m.DriftHistory]:
    return Call("GET", f"{_model_path(name)}/drift", model(m.DriftHistory), params=_params(windows=windows))


# Rollouts.


def deploy(name: str, v: int, mode: str, weight: float | None) -> Call[m.Rollout]:
    return Call(
        "POST",
        f"{_model_path(name)}/rollout",
        model(m.Rollout),
        json=_body(version=int(v), mode=mode, weight=weight),
    )


def rollout_status(name: str) -> Call[m.RolloutStatus]:
    return Call("GET", f"{_model_path(name)}/rollout", model(m.RolloutStatus))


def promote(name: str) -> Call[m.Promotion]:
    return Call("POST", f"{_model_path(name)}/rollout/promote", model(m.Promotion))


def stop(name: str) -> Call[m.Rollout]:
    return Call("POST", f"{_model_path(name)}/rollout/stop", model(m.Rollout), idempotent=True)


def rollback(name: str, alias: str | None) -> Call[m.AliasMove]:
    return Call("POST", f"{_model_path(name)}/rollback", model(m.AliasMove), json=_body(alias=alias))


# Jobs.


def train(
    spec: Mapping[str, Any], data: Any, test: Any, server_data: str | None, server_test: str | None
) -> Call[m.Job]:
    if data is None:
        if server_data is None:
            raise ValueError("train needs data= (a DataFrame or a local file) or server_data= (a path on the server)")
        return Call("POST", "/v1/jobs/train", model(m.Job), json=_body(**spec, data=server_data, test=server_test))
    files: list[FileField] = [("data", upload("data", data))]
    if test is not None:
        files.append(("test", upload("test", test)))
    body = _body(**spec, test=server_test)
    return Call("POST", "/v1/jobs/train", model(m.Job), files=files, data={"spec": json.dumps(body)})


def retrain(
    name: str,
    data: Any,
    holdout: Any,
    server_data: str | None,
    server_holdout: str | None,
    spec: Mapping[str, Any],
) -> Call[m.Job]:
    path = f"{_model_path(name)}/retrain"
    if data is None and holdout is None:
        if server_data is None or server_holdout is None:
            raise ValueError(
                "retrain needs data= and holdout= (DataFrames or local files), or server_data= and "
                "server_holdout= (paths on the server)"
            )
        return Call("POST", path, model(m.Job), json=_body(**spec, data=server_data, holdout=server_holdout))
    if data is None or holdout is None:
        raise ValueError("retrain needs both data= and holdout= to upload")
    files: list[FileField] = [("data", upload("data", data)), ("holdout", upload("holdout", holdout))]
    return Call("POST", path, model(m.Job), files=files, data={"spec": json.dumps(_body(**spec))})


def job(job_id: int) -> Call[m.Job]:
    return Call("GET", f"/v1/jobs/{int(job_id)}", model(m.Job))


def jobs(model_name: str | None, state: str | None, kind: str | None, limit: int | None) -> Call[m.JobList]:
    return Call(
        "GET", "/v1/jobs", model(m.JobList), params=_params(model=model_name, state=state, kind=kind, limit=limit)
    )


def cancel(job_id: int) -> Call[m.Job]:
    return Call("POST", f"/v1/jobs/{int(job_id)}/cancel", model(m.Job), idempotent=True)


# Runs.


def create_run(
    experiment: str | None,
    name: str | None,
    tags: Mapping[str, str] | None,
    seed: int | None,
    data_hash: str | None,
    start_time: int | None,
) -> Call[m.Run]:
    return Call(
        "POST",
        "/v1/runs",
        model(m.Run),
        json=_body(
            experiment=experiment,
            name=name,
            tags=dict(tags) if tags is not None else None,
            seed=seed,
            data_hash=data_hash,
            start_time=start_time,
        ),
    )


def run(run_id: str) -> Call[m.Run]:
    return Call("GET", f"/v1/runs/{segment(run_id)}", model(m.Run))


def runs(experiment: str | None, limit: int | None) -> Call[m.RunList]:
    return Call("GET", "/v1/runs", model(m.RunList), params=_params(experiment=experiment, limit=limit))


def compare_runs(ids: Sequence[str]) -> Call[m.RunComparison]:
    return Call("GET", "/v1/runs/compare", model(m.RunComparison), params=_params(ids=list(ids)))


def experiments() -> Call[m.ExperimentList]:
    return Call("GET", "/v1/experiments", model(m.ExperimentList))


def log_batch(
    run_id: str,
    metrics: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    tags: Mapping[str, str],
) -> Call[m.Logged]:
    return Call(
        "POST",
        f"/v1/runs/{segment(run_id)}/log-batch",
        model(m.Logged),
        json=_body(
            metrics=list(metrics) or None,
            params=dict(params) or None,
            tags=dict(tags) or None,
        ),
    )


def metric_history(run_id: str, key: str) -> Call[m.MetricHistory]:
    return Call("GET", f"/v1/runs/{segment(run_id)}/metrics/{segment(key)}", model(m.MetricHistory))


def put_artifact(run_id: str, path: str, content: bytes) -> Call[m.RunArtifact]:
    return Call(
        "PUT",
        f"/v1/runs/{segment(run_id)}/artifacts/{quote(path, safe='/')}",
        model(m.RunArtifact),
        content=content,
        content_type="application/octet-stream",
    )


def get_artifact(run_id: str, path: str) -> Call[bytes]:
    return Call("GET", f"/v1/runs/{segment(run_id)}/artifacts/{quote(path, safe='/')}", raw_bytes)


def end_run(run_id: str, status: str, end_time: int | None) -> Call[m.Run]:
    return Call(
        "POST",
        f"/v1/runs/{segment(run_id)}/end",
        model(m.Run),
        json=_body(status=status, end_time=end_time),
        idempotent=True,
    )


# Audit.


def audit_page(
    model_name: str | None, action: str | None, actor: str | None, before: int | None, limit: int | None
) -> Call[m.AuditPage]:
    return Call(
        "GET",
        "/v1/audit",
        model(m.AuditPage),
        params=_params(model=model_name, action=action, actor=actor, before=before, limit=limit),
    )


def audit_verify() -> Call[m.Verification]:
    return Call("GET", "/v1/audit/verify", model(m.Verification))


# Retrieval.


def collections() -> Call[m.CollectionList]:
    return Call("GET", "/v1/rag/collections", model(m.CollectionList))


def ingest(
    collection: str,
    documents: Sequence[Any],
    max_tokens: int | None,
    overlap: int | None,
    screen: bool | None,
    embedder: str | None = None,
) -> Call[m.Job]:
    files: list[FileField] = []
    for i, d in enumerate(documents):
        if isinstance(d, tuple):
            name, content = d
            data = content.encode() if isinstance(content, str) else bytes(content)
            files.append(("file", upload(name, data)))
        else:
            files.append(("file", upload(f"document-{i}", d)))
    if not files:
        raise ValueError("ingest needs at least one document")
    fields = {
        k: str(v).lower() if isinstance(v, bool) else str(v)
        for k, v in _body(max_tokens=max_tokens, overlap=overlap, screen=screen, embedder=embedder).items()
    }
    return Call(
        "POST",
        f"/v1/rag/collections/{segment(collection)}/documents",
        model(m.Job),
        files=files,
        data=fields or None,
    )


def chunks(collection: str, document: str | None, offset: int | None, limit: int | None) -> Call[m.ChunkPage]:
    return Call(
        "GET",
        f"/v1/rag/collections/{segment(collection)}/chunks",
        model(m.ChunkPage),
        params=_params(document=document, offset=offset, limit=limit),
    )


def delete_document(collection: str, document: str) -> Call[m.Deleted]:
    return Call("DELETE", f"/v1/rag/collections/{segment(collection)}/documents/{segment(document)}", model(m.Deleted))


def rag_query(
    collection: str, question: str, k: int | None, mode: str | None, retrieval: str | None
) -> Call[m.RagAnswer]:
    return Call(
        "POST",
        f"/v1/rag/{segment(collection)}/query",
        model(m.RagAnswer),
        json=_body(question=question, k=k, mode=mode, retrieval=retrieval),
        idempotent=True,
    )


# Guard and keys.


def scan(
    text_: str, route: str | None, system_prompt: str | None, canaries: Sequence[str] | None
) -> Call[m.ScanReport]:
    return Call(
        "POST",
        "/v1/guard/scan",
        model(m.ScanReport),
        json=_body(text=text_, route=route, system_prompt=system_prompt, canaries=list(canaries) if canaries else None),
        idempotent=True,
    )


def keys() -> Call[list[m.KeyInfo]]:
    return Call("GET", "/v1/keys", model_list(m.KeyInfo))


def create_key(role: str, description: str | None) -> Call[m.NewKey]:
    return Call("POST", "/v1/keys", model(m.NewKey), json=_body(role=role, description=description))


def revoke_key(key_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/keys/{segment(key_id)}", nothing)
