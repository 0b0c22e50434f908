"""What the sync and async clients share: settings, the request description (`Call`), the retry policy and
response parsing. Resources build `Call`s here once; `Client` and `AsyncClient` only send them."""

from __future__ import annotations

import email.utils
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from ._errors import KeelConnectionError, KeelTimeoutError
from ._version import __version__

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 60.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 503})

# A file to upload: (field name, (file name, bytes, content type)).
FileField = tuple[str, tuple[str, bytes, str]]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP call and how to read its answer.

    `idempotent` says whether sending it twice is harmless: GET, PUT and DELETE are, and so are the POSTs that
    only read (predict, scans, queries); writes that create something are not retried unless the client was
    made with `retry_writes=True`.
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int | float | bool] | None = None
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None
    files: Sequence[FileField] | None = None
    data: Mapping[str, str] | None = None
    accept: str | None = None
    idempotent: bool | None = None
    timeout: float | None = None

    def is_idempotent(self) -> bool:
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in IDEMPOTENT_METHODS


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on connection errors, 429 and 503 only, with exponential backoff and full jitter capped at
    `max_delay`; a `Retry-After` header is honoured (up to `max_retry_after` seconds, else the error is raised)."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.initial_delay * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    def delay_after_response(self, resp: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to raise now."""
        if resp.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
            return None
        after = retry_after_seconds(resp.headers.get("retry-after"))
        if after is None:
            return self.backoff(attempt)
        if after > self.max_retry_after:
            return None
        return after

    def delay_after_error(self, err: httpx.TransportError, attempt: int) -> float | None:
        if attempt >= self.max_retries:
            return None
        if isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self.backoff(attempt)
        return None


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Settings:
    """A client's settings; `with_options` copies them."""

    base_url: str
    api_key: str | None
    timeout: float | httpx.Timeout
    retry: RetryPolicy
    retry_writes: bool
    headers: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def make(
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int | None,
        retry_writes: bool,
        headers: Mapping[str, str] | None,
        retry: RetryPolicy | None = None,
    ) -> Settings:
        url = base_url or os.environ.get("KEEL_URL") or DEFAULT_URL
        key = api_key if api_key is not None else (os.environ.get("KEEL_API_KEY") or None)
        return Settings(
            base_url=url.rstrip("/"),
            api_key=key,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            retry=replace(retry or RetryPolicy(), **({} if max_retries is None else {"max_retries": max_retries})),
            retry_writes=retry_writes,
            headers=dict(headers or {}),
        )

    def updated(
        self,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_writes: bool | None = None,
    ) -> Settings:
        s = self
        if api_key is not None:
            s = replace(s, api_key=api_key)
        if timeout is not None:
            s = replace(s, timeout=timeout)
        if max_retries is not None:
            s = replace(s, retry=replace(s.retry, max_retries=max_retries))
        if retry_writes is not None:
            s = replace(s, retry_writes=retry_writes)
        return s

    def may_retry(self, call: Call[Any]) -> bool:
        return self.retry_writes or call.is_idempotent()

    def request_headers(self, call: Call[Any]) -> dict[str, str]:
        h = {"user-agent": f"keel-client-python/{__version__}", "x-request-id": uuid.uuid4().hex}
        h.update(self.headers)
        if self.api_key:
            h["authorization"] = f"Bearer {self.api_key}"
        if call.accept:
            h["accept"] = call.accept
        if call.content_type and call.content is not None:
            h["content-type"] = call.content_type
        return h

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        params = None
        if call.params:
            params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in call.params.items()}
        timeout = self.timeout if call.timeout is None else call.timeout
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=params,
            json=call.json,
            content=call.content,
            files=list(call.files) if call.files else None,
            data=dict(call.data) if call.data else None,
            headers=self.request_headers(call),
            timeout=timeout,
        )


def connection_error(err: httpx.TransportError, req: httpx.Request) -> KeelConnectionError:
    where = f"{req.method} {req.url}"
    if isinstance(err, httpx.TimeoutException):
        return KeelTimeoutError(f"{where}: no answer within the timeout ({type(err).__name__})")
    return KeelConnectionError(
        f"{where}: {err or type(err).__name__}. Is `keel serve` running there? Set KEEL_URL or pass base_url="
    )


# Response readers.


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(resp: httpx.Response) -> M:
        return cls.model_validate_json(resp.content)

    return parse


def model_list(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    def parse(resp: httpx.Response) -> list[M]:
        return [cls.model_validate(x) for x in resp.json()]

    return parse


def raw_bytes(resp: httpx.Response) -> bytes:
    return resp.content


def text(resp: httpx.Response) -> str:
    return resp.text


def nothing(resp: httpx.Response) -> None:
    return None


def json_value(resp: httpx.Response) -> Any:
    return resp.json()


def segment(value: str | int) -> str:
    """A path segment, percent-encoded (names may hold `@`, which stays)."""
    return quote(str(value), safe="@")
