"""Keel's Python client: the whole lifecycle over HTTP, sync (`Client`) and asyncio (`AsyncClient`).

    from keel_client import Client
    client = Client()                                   # KEEL_URL, KEEL_API_KEY from the environment
    job = client.jobs.wait(client.jobs.train(df, name="churn", target="churned"), progress=True)
    preds = client.predict("churn", new_rows)           # a DataFrame on new_rows' index
    client.feedback("churn", preds.assign(label=actual))
    client.monitor.drift("churn")

Request and response types are in `keel_client.models` (generated from the server's OpenAPI document).
"""

from . import models
from ._async import AsyncClient, AsyncRun
from ._base import RetryPolicy
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ErrorDetail,
    InternalServerError,
    JobFailedError,
    JobTimeoutError,
    KeelConnectionError,
    KeelError,
    KeelTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)
from ._sync import Client, Run
from ._version import __version__

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncRun",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "ErrorDetail",
    "InternalServerError",
    "JobFailedError",
    "JobTimeoutError",
    "KeelConnectionError",
    "KeelError",
    "KeelTimeoutError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RetryPolicy",
    "Run",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "__version__",
    "models",
]
