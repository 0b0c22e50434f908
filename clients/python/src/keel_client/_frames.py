"""DataFrames in and out: a DataFrame request body (an Arrow IPC stream when pyarrow is installed, JSON records
otherwise), predictions as a DataFrame aligned to the input's index, labels from a DataFrame, uploads of a
DataFrame as a file. pandas and pyarrow are optional (`pip install keel-client[pandas]`)."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import PredictionBody, PredictResponse

if TYPE_CHECKING:
    import pandas as pd

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def is_dataframe(x: object) -> bool:
    """True for a pandas DataFrame, without importing pandas when it is not loaded already."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(x, pd.DataFrame)


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        return False
    return True


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - exercised only without pandas
        raise ImportError("DataFrames need pandas: pip install 'keel-client[pandas]'") from e
    return pandas


def _arrow_table(df: pd.DataFrame) -> Any:
    """The frame as an Arrow table Keel reads: plain (not large) strings, categoricals decoded, no index."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for f in table.schema:
        t = f.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):
            t = pa.string()
        fields.append(pa.field(f.name, t))
    return table.cast(pa.schema(fields))


def frame_body(df: pd.DataFrame, use_arrow: bool | None = None) -> tuple[bytes, str]:
    """A DataFrame as a predict body: (bytes, content type)."""
    arrow = have_pyarrow() if use_arrow is None else use_arrow
    if arrow:
        import pyarrow as pa
        import pyarrow.ipc

        table = _arrow_table(df)
        sink = pa.BufferOutputStream()
        with pyarrow.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue().to_pybytes(), ARROW_STREAM
    records = json.loads(df.to_json(orient="records", date_format="iso", date_unit="s"))
    return json.dumps({"records": records}).encode(), "application/json"


def record_chunks(records: Sequence[Mapping[str, Any]], size: int) -> Iterator[Sequence[Mapping[str, Any]]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def frame_chunks(df: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(df), size):
        yield df.iloc[start : start + size]


def _rows(resp: PredictResponse) -> list[PredictionBody]:
    if resp.predictions is not None:
        return resp.predictions
    return [
        PredictionBody(
            prediction=resp.prediction,
            probability=resp.probability,
            probabilities=resp.probabilities,
            interval=resp.interval,
            explanation=resp.explanation,
        )
    ]


def predictions_frame(index: Any, responses: Sequence[PredictResponse]) -> pd.DataFrame:
    """Predictions as a DataFrame on the input's index.

    Columns: `prediction`; `probability` (binary: the positive class; multiclass: the predicted class);
    `proba_<class>` per class (multiclass); `interval_lower`/`interval_upper` (regression); `explanation` (the
    top SHAP contributions, a dict per row, with explain=True); `request_id` and `row` (what labels name in
    `feedback`); `version` (the version that answered).
    """
    pandas_ = _pandas()
    cols: dict[str, list[Any]] = {"prediction": [], "request_id": [], "row": [], "version": []}
    probability: list[Any] = []
    probabilities: list[Mapping[str, float] | None] = []
    lower: list[Any] = []
    upper: list[Any] = []
    explanation: list[Any] = []
    for resp in responses:
        for i, p in enumerate(_rows(resp)):
            cols["prediction"].append(p.prediction)
            cols["request_id"].append(resp.request_id)
            cols["row"].append(i)
            cols["version"].append(resp.version)
            probability.append(p.probability)
            probabilities.append(p.probabilities)
            lower.append(p.interval[0] if p.interval else None)
            upper.append(p.interval[1] if p.interval else None)
            explanation.append(p.explanation)
    n = len(cols["prediction"])
    if n != len(index):
        raise ValueError(f"the server answered {n} predictions for {len(index)} rows")
    out: pd.DataFrame = pandas_.DataFrame({"prediction": cols["prediction"]}, index=index)
    if any(x is not None for x in probability):
        out["probability"] = [math.nan if x is None else x for x in probability]
    classes = sorted({c for ps in probabilities if ps for c in ps})
    for c in classes:
        out[f"proba_{c}"] = [ps.get(c, math.nan) if ps else math.nan for ps in probabilities]
    if any(x is not None for x in lower):
        out["interval_lower"] = [math.nan if x is None else x for x in lower]
        out["interval_upper"] = [math.nan if x is None else x for x in upper]
    if any(x is not None for x in explanation):
        out["explanation"] = explanation
    out["request_id"] = cols["request_id"]
    out["row"] = cols["row"]
    out["version"] = cols["version"]
    return out


def label_records(labels: Any) -> list[dict[str, Any]]:
    """Labels as `{"request_id", "row", "label"}` dicts, from dicts or a DataFrame with those columns."""
    if is_dataframe(labels):
        missing = [c for c in ("request_id", "label") if c not in labels.columns]
        if missing:
            raise ValueError(
                f"the labels DataFrame needs columns request_id and label (and row for batches); "
                f"missing: {', '.join(missing)}"
            )
        keep = [c for c in ("request_id", "row", "label") if c in labels.columns]
        out: list[dict[str, Any]] = json.loads(labels[keep].to_json(orient="records"))
        return out
    return [dict(x) for x in labels]


def upload(name: str, data: Any) -> tuple[str, bytes, str]:
    """A file field for multipart uploads from a DataFrame (Parquet with pyarrow, else CSV), a local path, or
    bytes. `name` is the file name to use for bytes and DataFrames (without extension for DataFrames)."""
    if is_dataframe(data):
        if have_pyarrow():
            buf = io.BytesIO()
            _arrow_parquet(data, buf)
            return (f"{name}.parquet", buf.getvalue(), "application/vnd.apache.parquet")
        return (f"{name}.csv", data.to_csv(index=False).encode(), "text/csv")
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file to upload")
        return (p.name, p.read_bytes(), _content_type(p.name))
    if isinstance(data, (bytes, bytearray)):
        return (name, bytes(data), _content_type(name))
    raise TypeError(f"cannot upload a {type(data).__name__}: pass a DataFrame, a file path or bytes")


def _arrow_parquet(df: pd.DataFrame, buf: io.BytesIO) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_arrow_table(df), buf)


def _content_type(name: str) -> str:
    lower = name.lower()
    for ext, ct in (
        (".csv", "text/csv"),
        (".parquet", "application/vnd.apache.parquet"),
        (".pq", "application/vnd.apache.parquet"),
        (".json", "application/json"),
        (".md", "text/markdown"),
        (".txt", "text/plain"),
        (".html", "text/html"),
        (".pdf", "application/pdf"),
    ):
        if lower.endswith(ext):
            return ct
    return "application/octet-stream"
