# Generated from openapi.json by clients/python/generate.py (datamodel-code-generator, pinned in
# requirements-dev.lock). Do not edit: change the server, regenerate, commit both.

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel


class AliasList(BaseModel):
    """
    A model's aliases.
    """

    aliases: dict[str, int]
    """
    Alias → version.
    """
    model: str


class AliasMove(BaseModel):
    """
    An alias move.
    """

    alias: str
    before: int | None = None
    """
    The version it pointed at before (none for a new alias).
    """
    model: str
    version: int
    """
    The version it points at now.
    """


class AliasName(RootModel[str]):
    root: str = Field(..., pattern='^[A-Za-z_-][A-Za-z0-9_.-]{0,99}$')
    """
    A model or alias name as the registry accepts it.
    """


class AliasRequest(BaseModel):
    model_config = ConfigDict(
        extra='forbid',
    )
    version: int = Field(..., ge=1)
    """
    The version the alias will point at (a JSON integer; `3.0` is read as 3).
    """


class AliasResponse(BaseModel):
    alias: str
    model: str
    version: int


class AnnotateRequest(BaseModel):
    """
    A version's description and tags (an empty tag value removes the tag).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    description: str | None = None
    tags: dict[str, str] | None = None


class ArchiveRequest(BaseModel):
    """
    Archive or restore.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    restore: bool | None = None
    """
    Restore an archived version instead (default false).
    """


class AuditEntry(BaseModel):
    """
    One audit record.
    """

    action: str
    actor: str
    after: dict[str, Any] | None = None
    at: str
    before: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    hash: str
    prev_hash: str
    seq: int
    target: str


class AuditPage(BaseModel):
    """
    One page of the audit log, newest first.
    """

    next_before: int | None = None
    """
    Pass as `before` for the next (older) page; absent on the last one.
    """
    records: list[AuditEntry]
    total: int = Field(..., ge=0)
    """
    Records in the whole log.
    """


class CardResponse(BaseModel):
    """
    A model card.
    """

    card: dict[str, Any]
    """
    The card: data, evaluation with intervals, calibration, slices, fairness, lineage, limitations.
    """
    model: str
    version: int


class ChatMessageOut(BaseModel):
    content: str
    role: str


class ChatPartDoc(BaseModel):
    """
    One text part.
    """

    text: str
    type: str = Field(..., pattern='^text$')


class Chunk(BaseModel):
    """
    One chunk.
    """

    document: str
    id: str
    """
    `document#ordinal`.
    """
    quarantined: bool
    """
    Kept for review but never retrieved.
    """
    section_path: str
    text: str
    tokens: int = Field(..., ge=0)
    untrusted: str | None = None
    """
    Why the injection screen distrusts it.
    """


class ChunkPage(BaseModel):
    chunks: list[Chunk]
    collection: str
    total: int = Field(..., ge=0)
    """
    Chunks matching the query in all.
    """


class Collection(BaseModel):
    """
    One collection at a glance.
    """

    chunks: int = Field(..., ge=0)
    collection: str
    documents: int = Field(..., ge=0)
    embedder: str
    """
    The embedding model it was built with.
    """
    fusion_weight: float
    """
    BM25's weight in hybrid fusion.
    """
    generation: str
    """
    The current generation (changes with every ingest).
    """
    tuned: bool
    """
    Whether the weight was tuned on judged queries.
    """


class CollectionList(BaseModel):
    collections: list[Collection]


class CreateRunRequest(BaseModel):
    """
    Starts a run.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    data_hash: str | None = None
    experiment: str | None = None
    """
    The experiment (created on first use); `default` when absent.
    """
    name: str | None = None
    seed: int | None = None
    start_time: int | None = None
    """
    Milliseconds since the epoch; now when absent.
    """
    tags: dict[str, str] | None = None


class Deleted(BaseModel):
    """
    What a delete removed.
    """

    collection: str
    removed: int = Field(..., ge=0)


class DeployRequest(BaseModel):
    """
    Starts (or changes) a rollout.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    mode: str = Field(..., pattern='^(canary|shadow)$')
    """
    `canary` (answers a share of the champion's requests) or `shadow` (scored on mirrored requests).
    """
    version: int = Field(..., ge=1)
    """
    The version to roll out.
    """
    weight: float | None = Field(None, gt=0.0, le=1.0)
    """
    The canary's share of traffic, (0, 1] (default 0.1); a shadow answers no traffic and ignores it.
    """


class Detail(BaseModel):
    message: str | None = None
    path: str
    """
    JSON path of the offending value, e.g. `$.records[2].AGEP`.
    """
    problem: str
    """
    Machine-readable problem, e.g. `wrong_type`, `missing_field`, `unseen_category`.
    """


class DiffRow(BaseModel):
    """
    One row of a comparison: a key and each run's value, in the order of `runs` (null where a run has none).
    """

    key: str
    values: list[Any]
    """
    Any JSON value per run (a string, number, object or null).
    """


class EmbeddingItem(BaseModel):
    embedding: Any
    """
    The vector: numbers, or a base64 string of little-endian f32 bytes with `encoding_format: base64`.
    """
    index: int = Field(..., ge=0)
    object: str
    """
    `embedding`.
    """


class EmbeddingUsage(BaseModel):
    prompt_tokens: int = Field(..., ge=0)
    total_tokens: int = Field(..., ge=0)


class EmbeddingsInput1(RootModel[str]):
    root: str = Field(..., min_length=1)


class EmbeddingsInput2Item(RootModel[str]):
    root: str = Field(..., min_length=1)


class EmbeddingsInput2(RootModel[list[EmbeddingsInput2Item]]):
    root: list[EmbeddingsInput2Item] = Field(..., max_length=256, min_length=1)


class EmbeddingsInput(RootModel[EmbeddingsInput1 | EmbeddingsInput2]):
    root: EmbeddingsInput1 | EmbeddingsInput2


class EmbeddingsRequest(BaseModel):
    """
    Texts to embed (OpenAI's shape).
    """

    encoding_format: str | None = Field(None, pattern='^(float|base64)$')
    """
    `float` (default): lists of numbers; `base64`: each vector's little-endian f32 bytes in base64, as
    OpenAI's clients ask for by default.
    """
    input: EmbeddingsInput
    """
    One string or a list of 1–256 strings.
    """
    model: str | None = None


class EndRunRequest(BaseModel):
    """
    Ends a run.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    end_time: int | None = None
    """
    Milliseconds since the epoch; now when absent.
    """
    status: str | None = None
    """
    `finished` (default), `failed` or `killed`.
    """


class ErrorDetail(BaseModel):
    code: str
    """
    Stable machine-readable code, e.g. `schema_mismatch`, `unknown_model`, `rate_limited`.
    """
    details: list[Detail] | None = None
    message: str


class Experiment(BaseModel):
    """
    An experiment and how many runs it holds.
    """

    experiment: str
    runs: int


class ExperimentList(BaseModel):
    """
    Every experiment, by name.
    """

    experiments: list[Experiment]


class FeedbackOutcome(BaseModel):
    """
    What storing labels did.
    """

    log_rate: float | None = None
    note: str | None = None
    """
    What unknown ids mean and what to do.
    """
    replaced: int = Field(..., ge=0)
    """
    Of those, labels that replaced an earlier one.
    """
    stored: int = Field(..., ge=0)
    """
    Labels joined to a logged prediction.
    """
    unknown: int = Field(..., ge=0)
    """
    Labels whose request id (and row) is not in the prediction log; not stored.
    """
    unknown_ids: list[str]


class FeedbackRequest(BaseModel):
    """
    Labels that arrived after the predictions: `{"labels": [{"request_id", "row"?, "label"}]}`.
    """

    labels: list[dict[str, Any]]
    """
    Each label names the prediction's request id (and its row in a batch request, default 0).
    """


class Health(BaseModel):
    """
    `/healthz`.
    """

    status: str
    """
    `ok`, or `worker_stopped` (with 503).
    """
    version: str
    """
    The server's version (`keel --version`).
    """
    worker: dict[str, Any]
    """
    The job worker's state (`state`: `off`, `running`, `retrying`, `stopped`).
    """


class ImportGate(BaseModel):
    """
    The gate of an import, as a retraining's.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    canary: float | None = Field(None, gt=0.0, le=1.0)
    """
    Share of champion traffic for a passing version's canary (0–1].
    """
    holdout: str = Field(..., min_length=1)
    """
    Labelled rows on the server (multipart: the `holdout` file field instead).
    """
    shadow: bool | None = None


class ImportRequest(BaseModel):
    """
    An import: a model file trained elsewhere registered as a version of `name`. JSON names files on the
    server; multipart uploads them (file fields `model`, and optionally `reference` and `holdout`, plus a
    `spec` field with the other fields as JSON).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    aliases: list[AliasName] | None = None
    """
    Aliases to point at the new version.
    """
    champion_if_none: bool | None = None
    """
    Make the new version the champion when the model has none yet.
    """
    description: str | None = None
    feature_names: list[str] | None = None
    """
    The model's feature names in input order, for ONNX files (which store none); by default the reference
    data's columns other than the target, in file order.
    """
    file: str = Field(..., min_length=1)
    """
    The model file on the server (multipart: the `model` file field instead).
    """
    format: str | None = Field(
        None, pattern='^(lightgbm|xgboost-json|xgboost-ubj|onnx)$'
    )
    """
    `lightgbm`, `xgboost-json`, `xgboost-ubj` or `onnx`; recognised from the file when absent.
    """
    gate: ImportGate | None = None
    """
    Gate the version against the champion on a holdout (and roll it out when it passes).
    """
    reference: str | None = Field(None, min_length=1)
    """
    Labelled rows the model did not train on (evaluation, SHAP, fairness, monitoring reference).
    """
    sensitive: list[str] | None = None
    slices: list[str] | None = None
    target: str | None = Field(None, min_length=1)
    """
    The label column of the reference data.
    """
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    """
    Probability at or above which a row is the positive class (default 0.5).
    """


class IngestForm(BaseModel):
    """
    Documents to ingest, as `multipart/form-data` (documentation of the form).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    embedder: str | None = Field(None, pattern='^(minilm|mpnet)$')
    """
    The local embedding model of a new collection: `minilm` (all-MiniLM-L6-v2, the default) or `mpnet`
    (all-mpnet-base-v2: 768 dimensions, slower, better on natural questions). An existing collection keeps
    its model; naming another is refused (422).
    """
    file: list[bytes] = Field(..., min_length=1)
    """
    One or more files (Markdown, HTML, text, PDF); repeat the field for more.
    """
    max_tokens: int | None = Field(None, ge=64, le=100000)
    """
    Most tokens per chunk (default 200).
    """
    overlap: int | None = Field(None, ge=0, le=63)
    """
    Tokens shared by consecutive chunks (default 32).
    """
    screen: bool | None = None
    """
    `false` to skip the injection screen (default `true`).
    """


class Job(BaseModel):
    """
    A job: what was asked, where it stands, and what it produced.
    """

    cancel_requested: bool
    created_at: str
    created_by: str
    finished_at: str | None = None
    id: int
    kind: str = Field(..., pattern='^(train|retrain|ingest|import)$')
    """
    `train`, `retrain`, `ingest` or `import`.
    """
    message: str
    """
    The outcome in words, or why it failed.
    """
    model: str
    """
    The model (train, retrain) or the collection (ingest).
    """
    progress: float = Field(..., ge=0.0, le=1.0)
    """
    0–1.
    """
    result: dict[str, Any] | None = None
    """
    What it produced (the registered version, the gate report, the ingest report); null until it succeeded.
    """
    spec: dict[str, Any]
    """
    The request as queued.
    """
    stage: str
    """
    What it is doing now (`reading`, `training`, `embedding`, …).
    """
    started_at: str | None = None
    state: str = Field(..., pattern='^(queued|running|succeeded|failed|cancelled)$')
    """
    `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    """
    worker: str | None = None
    """
    The worker that claimed it (`host:pid`).
    """


class JobList(BaseModel):
    """
    Jobs, newest first.
    """

    jobs: list[Job]


class KeyInfo(BaseModel):
    """
    An API key (never its secret).
    """

    created_at: str
    created_by: str
    description: str
    id: str
    revoked_at: str | None = None
    role: str
    """
    `reader`, `predictor`, `deployer` or `admin`.
    """


class KeyRequest(BaseModel):
    description: str | None = Field(None, max_length=500)
    """
    What the key is for (at most 500 characters).
    """
    role: str = Field(..., pattern='^(reader|predictor|deployer|admin)$')
    """
    reader, predictor, deployer or admin.
    """


class KeyValue(BaseModel):
    """
    A parameter or tag: `{"key": "lr", "value": 0.1}` (numbers and booleans are stored as their text).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    key: str
    value: Any
    """
    Any JSON value (stored as text: strings as they are, other values as JSON).
    """


class KeyValues(RootModel[list[KeyValue] | dict[str, Any]]):
    root: list[KeyValue] | dict[str, Any]
    """
    Parameters or tags: a list of `{"key", "value"}` (MLflow's form) or one object (`{"lr": 0.1}`).
    """


class Lineage(BaseModel):
    """
    Where a version came from (data, code, seed, artifact) and what happened to it since.
    """

    artifact_sha256: str
    artifact_uri: str
    challenger_of: int | None = None
    """
    The champion version it was trained to challenge, when it came from a retraining.
    """
    code_version: str
    created_at: str
    created_by: str
    data: str | None = None
    """
    The training data as given to the trainer, when recorded.
    """
    dataset_hash: str
    events: list[AuditEntry]
    """
    Audit records about this version, oldest first.
    """
    kind: str
    model: str
    seed: int | None = Field(None, ge=0)
    test_dataset_hash: str | None = None
    version: int


class LoadedModel(BaseModel):
    """
    A loaded model reference.
    """

    reference: str
    version: int


class Logged(BaseModel):
    """
    How much a batch logged.
    """

    metrics: int = Field(..., ge=0)
    params: int = Field(..., ge=0)
    tags: int = Field(..., ge=0)


class MetricIn(BaseModel):
    """
    One metric value.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    key: str
    step: int | None = None
    """
    Default 0.
    """
    timestamp: int | None = None
    """
    Milliseconds since the epoch; now when absent.
    """
    value: float


class MetricValue(BaseModel):
    """
    One logged value of a metric.
    """

    step: int
    timestamp: int | None = None
    value: float


class ModelSummary(BaseModel):
    """
    A registered model version (summary).
    """

    aliases: list[str]
    archived: bool
    """
    Archived: readable and servable by number, but no alias may point at it.
    """
    created_at: str
    created_by: str
    dataset_hash: str
    description: str
    """
    What this version is (`PATCH .../versions/{version}`).
    """
    kind: str
    metrics: dict[str, Any]
    model: str
    objective: str
    tags: dict[str, str]
    version: int


class MonitorReport(BaseModel):
    """
    The monitoring report (JSON; `format=html` gives the page with charts).
    """

    drift: dict[str, Any]
    """
    Per-column drift (`columns`, `drifted_columns`, `options`, `unmatched`).
    """
    model: str
    realized: list[dict[str, Any]]
    """
    Realized performance per window from delayed labels.
    """
    rows: int = Field(..., ge=0)
    version: int
    windows: list[dict[str, Any]]
    """
    Windows included (`window_start`, `rows`), oldest first.
    """


class NewKey(BaseModel):
    """
    A new key: the secret is shown once.
    """

    id: str
    key: str
    role: str


class PredictRequest1(BaseModel):
    """
    A prediction request: one record (an object of feature values) or `{"records": [...]}`.
    """

    records: list[dict[str, Any]]
    """
    Records, each an object of feature values.
    """


class PredictRequest(RootModel[PredictRequest1 | dict[str, Any]]):
    root: PredictRequest1 | dict[str, Any]
    """
    A prediction request: one record (an object of feature values) or `{"records": [...]}`.
    """


class PredictionBody(BaseModel):
    """
    One prediction.
    """

    explanation: dict[str, Any] | None = None
    """
    Top SHAP contributions (with `?explain=true`).
    """
    interval: list[float] | None = None
    """
    Regression: the prediction interval [lower, upper] at the version's level (split conformal).
    """
    prediction: Any
    """
    Class label (classification: a string or number, as the labels were) or value (regression).
    """
    probabilities: dict[str, float] | None = None
    """
    Multiclass: every class's probability, by label.
    """
    probability: float | None = None
    """
    Probability of the positive class (binary) or of the predicted class (multiclass).
    """


class Promotion(BaseModel):
    """
    A promoted canary.
    """

    after: int
    """
    The champion now (the canary).
    """
    before: int | None = None
    """
    The champion before.
    """
    evaluation: dict[str, Any]
    model: str


class RagAnswer(BaseModel):
    """
    An answer with citations and groundedness per sentence.
    """

    answer: str
    citations: list[dict[str, Any]]
    """
    Cited chunks (`document`, `section`, `score`, `snippet`, …).
    """
    confident: bool
    """
    Whether retrieval was confident enough to answer.
    """
    fallback: str | None = None
    """
    Why a generated answer fell back to the extractive one.
    """
    grounded: bool
    """
    Every sentence supported by its citation.
    """
    mode: str
    """
    `extractive`, `local` or `remote`.
    """
    retrieval: str
    seconds: float
    sentences: list[dict[str, Any]]
    trace_id: str
    usage: dict[str, Any] | None = None


class RagQueryRequest(BaseModel):
    """
    A question to a collection.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    k: int | None = Field(None, ge=1, le=50)
    """
    Chunks retrieved and cited (1–50, default 5).
    """
    mode: str | None = Field(None, pattern='^(extractive|local|remote)$')
    """
    `extractive` (default), `local` (Keel's local LLM) or `remote` (the configured upstream).
    """
    question: str = Field(..., max_length=8192, min_length=1)
    """
    The question (not empty; at most 8,192 characters).
    """
    retrieval: str | None = Field(None, pattern='^(hybrid|bm25|dense|rrf)$')
    """
    `hybrid` (default), `bm25`, `dense` or `rrf`.
    """


class Ready(BaseModel):
    """
    `/readyz`.
    """

    models: list[LoadedModel]
    status: str
    """
    `ready`.
    """
    worker: dict[str, Any]


class ReportFormat(Enum):
    """
    `?format=` of the monitoring report.
    """

    json = 'json'
    html = 'html'


class RetrainRequest(BaseModel):
    """
    A retraining: a challenger trained with the champion's settings on new data, gated on fresh labelled
    rows, and rolled out when it passes (`gate` options are accepted too, as in `keel retrain`). Paths are on
    the server (404 when they are not there); upload the files instead with `multipart/form-data` (`data`,
    `holdout`, and `spec` holding the other fields as JSON).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    canary: float | None = Field(None, gt=0.0, le=1.0)
    """
    Share of champion traffic for a passing challenger's canary (0–1].
    """
    data: str = Field(..., min_length=1)
    """
    Training data (CSV or Parquet) on the server, with the target column.
    """
    holdout: str = Field(..., min_length=1)
    """
    Fresh labelled rows neither model trained on.
    """
    shadow: bool | None = None
    """
    Mirror traffic to a passing challenger.
    """
    trees: int | None = Field(None, ge=1, le=100000)
    """
    Override the champion's number of trees.
    """


class RollbackRequest(BaseModel):
    """
    Which alias to roll back (default `champion`).
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    alias: str | None = Field(None, pattern='^[A-Za-z][A-Za-z0-9_-]{0,63}$')


class Rollout(BaseModel):
    """
    What runs next to a model's champion.
    """

    canary_version: int | None = None
    """
    The canary version, answering `canary_weight` of the champion's requests.
    """
    canary_weight: float = Field(..., ge=0.0, le=1.0)
    model: str
    shadow_version: int | None = None
    """
    The shadow version, scored on mirrored requests without answering.
    """
    started_at: str


class RolloutStatus(BaseModel):
    """
    A rollout and what the delayed labels say about it.
    """

    evaluation: dict[str, Any] | None = None
    """
    Each arm's realized metrics and the judge's decision (`none`, `wait`, `promote`, `rollback`) with its
    reason, under the server's policy.
    """
    model: str
    rollout: Rollout | None = None


class RunArtifact(BaseModel):
    """
    A file attached to a run.
    """

    path: str
    sha256: str
    size: int


class RunColumn(BaseModel):
    """
    A compared run's header.
    """

    id: str
    name: str


class RunComparison(BaseModel):
    """
    How runs differ: only what is not the same in all of them.
    """

    attributes: list[DiffRow]
    identical: int = Field(..., ge=0)
    """
    Parameters, metrics and tags equal in every run (not listed).
    """
    metrics: list[DiffRow]
    """
    Each value is the run's latest `{value, step, lower, upper, steps}`.
    """
    params: list[DiffRow]
    runs: list[RunColumn]
    tags: list[DiffRow]


class RunMetric(BaseModel):
    """
    The latest value of one metric.
    """

    lower: float | None = None
    """
    An interval around the value (bootstrap, for the metrics `keel train` records).
    """
    step: int
    """
    The step of the latest value.
    """
    steps: int
    """
    How many steps were logged.
    """
    upper: float | None = None
    value: float


class ScanReport(BaseModel):
    """
    A guard scan: findings with character offsets, the injection score, the policy's decision.
    """

    action: str
    """
    `allow`, `flag`, `redact` or `block`.
    """
    blocked: bool
    injection: dict[str, Any] | None = None
    """
    `score` (a calibrated probability with an encoder guard), `flagged`, `threshold`, `reasons`, `path`
    (`ngram` or `encoder`: which path decided), `review_threshold` (encoder guards).
    """
    language: str | None = None
    """
    The detected language (ISO 639-3), when PII was scanned.
    """
    leaks: list[dict[str, Any]]
    """
    System-prompt or canary leaks.
    """
    model_version: int
    """
    The guard model's registry version.
    """
    notes: list[str] | None = None
    """
    What a detector could not do for this text (person names are detected in English only).
    """
    pii: list[dict[str, Any]]
    """
    PII findings (`type`, `start`, `end`, `score`, `reason`).
    """
    reasons: list[str]
    redacted: str | None = None
    """
    The text with findings redacted, when the policy redacted.
    """
    review: bool
    """
    The injection score is in the review band (above the review threshold, not above the block
    threshold): the text passed, but a person should look.
    """
    secrets: list[dict[str, Any]]


class ScanRequest(BaseModel):
    """
    A text to scan.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    canaries: list[str] | None = None
    """
    Model output checks: canary tokens it must not contain.
    """
    route: str | None = None
    """
    Which route's policy decides (default `scan`).
    """
    system_prompt: str | None = None
    """
    Model output checks: the system prompt it must not repeat.
    """
    text: str
    """
    The text (at most 1 MiB).
    """


class TimePartName(RootModel[str]):
    root: str = Field(..., pattern='^(year|month|day|day_of_week|hour|elapsed_days)$')
    """
    A part of a timestamp.
    """


class TokenUsage(BaseModel):
    completion_tokens: int = Field(..., ge=0)
    prompt_tokens: int = Field(..., ge=0)
    total_tokens: int = Field(..., ge=0)


class Verification(BaseModel):
    """
    Whether the chain of hashes and its head hold.
    """

    first_bad: int | None = None
    """
    The first record that fails, when one does.
    """
    ok: bool
    problem: str | None = None
    """
    What is wrong, in words.
    """
    records: int = Field(..., ge=0)
    """
    Records in the log.
    """
    signature: str | None = None
    """
    The head's signature: `valid`, `unchecked`, `unsigned`; absent when there is no head.
    """


class VersionChange(BaseModel):
    """
    What a version change did.
    """

    artifact_removed: bool | None = None
    """
    Deletion: whether the artifact went too (it stays while another version refers to it).
    """
    model: str
    outcome: str
    """
    `deleted`, `archived`, `restored` or `unchanged`.
    """
    version: int


class VersionDetail(ModelSummary):
    """
    One version in full: its summary, parameters, declared schema and artifact.
    """

    artifact_sha256: str
    artifact_uri: str
    code_version: str
    params: dict[str, Any]
    """
    The training settings, as stored.
    """
    schema_: dict[str, Any] = Field(..., alias='schema')
    """
    The input schema the version enforces.
    """


class VersionList(BaseModel):
    """
    Every version of a model, newest first.
    """

    model: str
    versions: list[ModelSummary]


class WindowDrift(BaseModel):
    """
    Drift of one monitoring window against the training reference.
    """

    drifted: list[str]
    """
    The columns that drifted in this window.
    """
    drifted_columns: int = Field(..., ge=0)
    max_psi: float | None = None
    """
    The largest population stability index of any column.
    """
    rows: int = Field(..., ge=0)
    window_start: int
    """
    Unix seconds at the window's start.
    """


class ChatChoice(BaseModel):
    finish_reason: str
    """
    `stop`, `length` or `content_filter`.
    """
    index: int = Field(..., ge=0)
    message: ChatMessageOut


class ChatCompletion(BaseModel):
    """
    An OpenAI chat completion (with `stream: true`, server-sent `chat.completion.chunk` events instead).
    """

    choices: list[ChatChoice]
    created: int
    id: str
    model: str
    object: str
    """
    `chat.completion`.
    """
    usage: TokenUsage


class ChatContentDoc(RootModel[str | list[ChatPartDoc]]):
    root: str | list[ChatPartDoc]
    """
    A message's content.
    """


class ChatMessageDoc(BaseModel):
    """
    One chat message: a role and its text, as a string or a list of `{type: "text", text}` parts.
    """

    content: ChatContentDoc
    role: str = Field(..., pattern='^(system|developer|user|assistant|tool)$')


class DriftHistory(BaseModel):
    """
    Drift per window, oldest first.
    """

    model: str
    version: int
    window_seconds: int = Field(..., ge=0)
    windows: list[WindowDrift]


class EmbeddingList(BaseModel):
    """
    An OpenAI embeddings list.
    """

    data: list[EmbeddingItem]
    model: str
    object: str
    """
    `list`.
    """
    usage: EmbeddingUsage


class ErrorBody(BaseModel):
    error: ErrorDetail


class LogBatchRequest(BaseModel):
    """
    What one logging call carries (at most 1,000 metrics, 100 parameters and 100 tags), written all or nothing.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    metrics: list[MetricIn] | None = None
    params: KeyValues | None = None
    tags: KeyValues | None = None


class MetricHistory(BaseModel):
    """
    Every value of one metric, by step.
    """

    key: str
    run: str
    values: list[MetricValue]


class ModelEntry(BaseModel):
    """
    One model: OpenAI's `id`, `object`, `created`, `owned_by`, then Keel's registry fields.
    """

    aliases: dict[str, int] | None = None
    """
    Every alias and the version it points at.
    """
    champion: ModelSummary | None = None
    created: int
    """
    Unix seconds when the champion (or, without one, the newest version) was registered.
    """
    id: str
    """
    The name to send as `model` (chat) or to put in `/v1/models/{name}/predict` (registry models).
    """
    kind: str
    """
    `gbdt`, `linear`, `guard` for registry models; `chat` for the chat model.
    """
    latest_version: int | None = None
    """
    Newest registered version (registry models).
    """
    object: str
    """
    Always `model`.
    """
    owned_by: str
    versions: int | None = None
    """
    How many versions are registered (registry models).
    """


class ModelList(BaseModel):
    """
    `GET /v1/models`: OpenAI's model list (`{"object": "list", "data": [...]}`), so a stock OpenAI client's
    `models.list()` works, with Keel's registry listing in the same entries (kind, versions, aliases, champion).
    """

    data: list[ModelEntry]
    object: str
    """
    Always `list`.
    """


class PredictResponse(BaseModel):
    """
    A prediction response. Single-record requests get `prediction`/`probability` at the top level; batch
    requests get `predictions`.
    """

    explanation: dict[str, Any] | None = None
    interval: list[float] | None = None
    """
    Regression: the prediction interval [lower, upper] at the version's level (split conformal).
    """
    model: str
    prediction: Any | None = None
    """
    One record's class label or value.
    """
    predictions: list[PredictionBody] | None = None
    probabilities: dict[str, float] | None = None
    """
    Multiclass: every class's probability, by label.
    """
    probability: float | None = None
    request_id: str
    version: int


class Run(BaseModel):
    """
    A run.
    """

    artifacts: list[RunArtifact]
    created_by: str
    data_hash: str | None = None
    duration_seconds: float
    end_time: int | None = None
    experiment: str
    id: str
    metrics: dict[str, RunMetric]
    name: str
    params: dict[str, str]
    registered: str | None = None
    """
    `NAME@VERSION` when the run registered a version.
    """
    seed: int | None = None
    source: str
    """
    `train`, `tune` or `client`.
    """
    start_time: int
    """
    Milliseconds since the epoch.
    """
    status: str
    """
    `running`, `finished`, `failed` or `killed`.
    """
    tags: dict[str, str]


class RunList(BaseModel):
    """
    Runs, newest first.
    """

    runs: list[Run]


class TimeFeaturesDoc(BaseModel):
    """
    The features of one timestamp column.
    """

    column: str = Field(..., min_length=1)
    parts: list[TimePartName] | None = None
    """
    Which parts (default: all); a part with one value in the training data is left out.
    """


class TrainRequest(BaseModel):
    """
    A training request (the same fields as `keel train`'s flags; `gbdt` tree settings and a declared `schema`
    are accepted too, as in `keel.toml`). `data` and `test` are paths the server can read (404 when they are
    not there); upload the files instead with `multipart/form-data` (`data`, optional `test`, and `spec`
    holding the other fields as JSON). The job reads and checks the data.
    """

    model_config = ConfigDict(
        extra='forbid',
    )
    aliases: list[AliasName] | None = None
    """
    Aliases to point at the new version.
    """
    champion_if_none: bool | None = None
    """
    Make the new version the champion when the model has none yet.
    """
    data: str = Field(..., min_length=1)
    """
    Training data (CSV or Parquet) on the server.
    """
    description: str | None = None
    drop: list[str] | None = None
    """
    Columns never used as features.
    """
    interval_level: float | None = Field(None, gt=0.0, lt=1.0)
    """
    Regression: coverage of the served prediction intervals (default 0.9).
    """
    model_requested: str | None = Field(None, pattern='^(auto|gbdt|linear)$')
    """
    `auto` (default), `gbdt` or `linear`.
    """
    name: str = Field(..., pattern='^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$')
    """
    The registered model's name.
    """
    objective: str | None = Field(None, pattern='^(binary|multiclass|regression)$')
    """
    `binary`, `multiclass` or `regression` (default: inferred from the target; the regression loss is
    `gbdt.loss`).
    """
    register_: bool | None = Field(None, alias='register')
    """
    Register a version (default true); false records the run only.
    """
    reuse_identical: bool | None = None
    """
    Return the latest version when it was trained on the same data and settings by the same code.
    """
    seed: int | None = Field(None, ge=0)
    sensitive: list[str] | None = None
    """
    Columns whose groups get fairness metrics.
    """
    slices: list[str] | None = None
    """
    Columns whose groups get their own metrics.
    """
    target: str = Field(..., pattern='\\S')
    """
    The column to predict (not blank).
    """
    test: str | None = Field(None, min_length=1)
    """
    A separate labelled test file on the server.
    """
    test_size: float | None = Field(None, gt=0.0, lt=1.0)
    """
    Share of rows held out (default 0.2).
    """
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    """
    Classification threshold for the threshold metrics (default 0.5).
    """
    time_features: list[TimeFeaturesDoc] | None = None
    """
    Timestamp columns to take features from (`COLUMN.year`, `.month`, `.day`, `.day_of_week`, `.hour`,
    `.elapsed_days`); requests to the model then send the timestamp itself.
    """
    time_split: str | None = Field(None, min_length=1)
    """
    Split by time: train on the earliest rows of this timestamp column, evaluate on the latest `test_size`.
    """


class ChatCompletionRequest(BaseModel):
    """
    An OpenAI chat completion request, as this server reads it (documentation; the handler reads the JSON with
    paths in its errors, and ignores fields it does not use).
    """

    max_tokens: int | None = Field(None, ge=1, le=4096)
    """
    At most 4096; the server's `[serve.llm] max_tokens` (default 256) caps what is generated.
    """
    messages: list[ChatMessageDoc] = Field(..., max_length=256, min_length=1)
    """
    1–256 messages.
    """
    model: str | None = None
    seed: int | None = Field(None, ge=0)
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
