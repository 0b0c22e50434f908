"""Buffered run logging shared by the sync and async run handles: values collect here and leave in batches the
server accepts (at most 1,000 metrics, 100 parameters and 100 tags per call)."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_METRICS = 1000
MAX_PARAMS = 100
MAX_TAGS = 100


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Batch:
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Buffer:
    """Values not yet sent. `due()` says when a batch should leave: a full batch, or `flush_seconds` since the
    last one (checked when something is logged; nothing runs in the background)."""

    flush_every: int = MAX_METRICS
    flush_seconds: float = 5.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    last_flush: float = field(default_factory=time.monotonic)

    def metric(self, key: str, value: float, step: int | None, timestamp: int | None) -> None:
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"metric {key!r}: {value!r} is not a finite number")
        self.metrics.append(
            {"key": key, "value": v, "step": 0 if step is None else int(step), "timestamp": timestamp or now_ms()}
        )

    def param(self, key: str, value: Any) -> None:
        self.params[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)

    def tag(self, key: str, value: str) -> None:
        self.tags[key] = str(value)

    def due(self) -> bool:
        return (
            len(self.metrics) >= min(self.flush_every, MAX_METRICS)
            or len(self.params) >= MAX_PARAMS
            or len(self.tags) >= MAX_TAGS
            or (self.pending() and time.monotonic() - self.last_flush >= self.flush_seconds)
        )

    def pending(self) -> bool:
        return bool(self.metrics or self.params or self.tags)

    def take(self) -> list[Batch]:
        """Everything buffered, cut into batches the server accepts; the buffer is empty afterwards."""
        batches: list[Batch] = []
        metrics, params, tags = self.metrics, list(self.params.items()), list(self.tags.items())
        self.metrics, self.params, self.tags = [], {}, {}
        self.last_flush = time.monotonic()
        i = j = k = 0
        while i < len(metrics) or j < len(params) or k < len(tags):
            b = Batch(
                metrics=metrics[i : i + MAX_METRICS],
                params=dict(params[j : j + MAX_PARAMS]),
                tags=dict(tags[k : k + MAX_TAGS]),
            )
            i, j, k = i + MAX_METRICS, j + MAX_PARAMS, k + MAX_TAGS
            batches.append(b)
        return batches

    def restore(self, batches: list[Batch]) -> None:
        """Puts unsent batches back in front (a failed flush loses nothing)."""
        for b in reversed(batches):
            self.metrics[:0] = b.metrics
            for key, value in b.params.items():
                self.params.setdefault(key, value)
            for key, tag in b.tags.items():
                self.tags.setdefault(key, tag)


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts (a config) as dotted keys: {"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = v
    return out
