"""One exception hierarchy for everything the client raises, built from Keel's error body
`{"error": {"code", "message", "details": [{"path", "problem", "message"?}]}}`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ErrorDetail:
    """One offending value: its JSON path (`$.records[2].AGEP`), a machine-readable problem, and words."""

    path: str
    problem: str
    message: str | None = None


class KeelError(Exception):
    """Base of every error the client raises.

    `status` is the HTTP status (None when no response arrived), `code` Keel's stable error code
    (`schema_mismatch`, `unknown_model`, …), `details` the offending JSON paths, `request_id` the id the
    server logged the request under (quote it when reporting a problem).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: tuple[ErrorDetail, ...] = (),
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        parts = [self.message]
        for d in self.details:
            parts.append(f"  {d.path}: {d.problem}" + (f" ({d.message})" if d.message else ""))
        tail = []
        if self.status is not None:
            tail.append(f"HTTP {self.status}")
        if self.code:
            tail.append(self.code)
        if self.request_id:
            tail.append(f"request {self.request_id}")
        if tail:
            parts[0] = f"{parts[0]} [{', '.join(tail)}]"
        return "\n".join(parts)

    @property
    def paths(self) -> list[str]:
        """The JSON paths of the offending values."""
        return [d.path for d in self.details]


class KeelConnectionError(KeelError):
    """No response: the server could not be reached, or the connection broke."""


class KeelTimeoutError(KeelConnectionError):
    """No response within the timeout."""


class APIError(KeelError):
    """The server answered with an error status."""


class BadRequestError(APIError):
    """400: the request is malformed."""


class AuthenticationError(APIError):
    """401: no API key, or an unknown or revoked one (set KEEL_API_KEY or pass api_key=)."""


class PermissionDeniedError(APIError):
    """403: the key's role does not allow this call."""


class NotFoundError(APIError):
    """404: no such model, version, alias, run, job, collection or file."""


class ConflictError(APIError):
    """409: the state does not allow it (the last admin key, a version an alias points at, …)."""


class PayloadTooLargeError(APIError):
    """413: too many records or too large a body; send smaller batches."""


class UnsupportedMediaTypeError(APIError):
    """415: a content type the route does not accept."""


class UnprocessableEntityError(APIError):
    """422: the body parsed but a value is wrong; `details` names each offending JSON path."""


class RateLimitError(APIError):
    """429: the key's rate limit; retried by the client when allowed."""


class ServiceUnavailableError(APIError):
    """503: the server shed load or a dependency is down; retried by the client when allowed."""


class InternalServerError(APIError):
    """Any other 5xx."""


class JobFailedError(KeelError):
    """A job awaited with `wait()` ended `failed` or `cancelled`; `job` is its last state."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message, code=f"job_{getattr(job, 'state', 'failed')}")
        self.job = job


class JobTimeoutError(KeelError):
    """`wait()` gave up before the job finished; the job goes on running. `job` is its last state."""

    def __init__(self, message: str, job: Any) -> None:
        super().__init__(message, code="job_wait_timeout")
        self.job = job


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_class(status: int) -> type[APIError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    return APIError


def from_response(resp: httpx.Response) -> APIError:
    """The exception for an error response, reading Keel's error body when there is one."""
    request_id = resp.headers.get("x-request-id")
    code: str | None = None
    details: list[ErrorDetail] = []
    body: Any = None
    message = f"{resp.request.method} {resp.request.url.path} failed with HTTP {resp.status_code}"
    try:
        resp.read()
        body = json.loads(resp.content) if resp.content else None
    except (ValueError, httpx.StreamError):
        body = resp.text if resp.content else None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code") if isinstance(err.get("code"), str) else None
        if isinstance(err.get("message"), str):
            message = err["message"]
        for d in err.get("details") or []:
            if isinstance(d, dict):
                details.append(
                    ErrorDetail(
                        path=str(d.get("path", "")),
                        problem=str(d.get("problem", "")),
                        message=d.get("message") if isinstance(d.get("message"), str) else None,
                    )
                )
    elif isinstance(body, str) and body.strip():
        message = f"{message}: {body.strip()[:500]}"
    return error_class(resp.status_code)(
        message,
        status=resp.status_code,
        code=code,
        details=tuple(details),
        request_id=request_id,
        body=body,
    )
