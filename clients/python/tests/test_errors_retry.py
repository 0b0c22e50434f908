"""Error mapping from Keel's error body (status, code, JSON paths, request id) and the retry policy, sync and
async, against the real server and a scripted one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import Server

import keel_client
from keel_client import AsyncClient, Client, RetryPolicy, _base


def test_401_without_a_key_and_with_a_wrong_one(server: Server) -> None:
    with Client(server.url, api_key="") as c:
        with pytest.raises(keel_client.AuthenticationError) as e:
            c.models.list()
    assert e.value.status == 401 and e.value.request_id
    with Client(server.url, api_key="keel_not_a_real_key") as c:
        with pytest.raises(keel_client.AuthenticationError):
            c.models.list()


def test_403_when_the_role_is_too_low(server: Server) -> None:
    with server.client("reader") as c:
        with pytest.raises(keel_client.PermissionDeniedError) as e:
            c.keys.create("admin")
    assert e.value.status == 403 and e.value.code
    with server.client("predictor") as c:
        with pytest.raises(keel_client.PermissionDeniedError):
            c.rollouts.rollback("loans")


def test_404_names_the_missing_model(server: Server) -> None:
    with server.client("reader") as c:
        with pytest.raises(keel_client.NotFoundError) as e:
            c.models.get("no-such-model")
    assert e.value.code == "unknown_model"
    assert "no-such-model" in e.value.message
    assert e.value.request_id and len(e.value.request_id) >= 8


def test_413_for_too_many_records(server: Server, trained: object) -> None:
    rows = [{"car_value": 1000.0}] * 1001
    with server.client("predictor") as c:
        with pytest.raises(keel_client.PayloadTooLargeError) as e:
            c.predict("loans", rows)
    assert e.value.status == 413


def test_422_carries_the_json_paths(server: Server, trained: object) -> None:
    good = {
        "car_value": 12000.0,
        "salary_range": "20K - 40K €",
        "debt_to_income_ratio": 0.4,
        "loan_length": 12.0,
        "repaid_loan_on_prev_car": True,
        "size_of_downpayment": "10%",
        "driver_tenure": 2.5,
    }
    bad = dict(good, car_value="a lot")
    with server.client("predictor") as c:
        with pytest.raises(keel_client.UnprocessableEntityError) as e:
            c.predict("loans", [good, bad])
    assert e.value.status == 422
    assert "$.records[1].car_value" in e.value.paths, e.value.details
    assert "$.records[1].car_value" in str(e.value)


# A scripted server: answers from a list of (status, headers, body) and records what it got.


class Script:
    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, str, float]] = []
        self.stall = threading.Event()  # set: hold every answer until released
        self.release = threading.Event()


@pytest.fixture()
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            if n:
                self.rfile.read(n)
            script.seen.append((self.command, self.path, time.monotonic()))
            if script.stall.is_set():
                script.release.wait(10)
            status, headers, body = script.answers.pop(0) if script.answers else (500, {}, b"{}")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, *a: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    script.release.set()
    httpd.shutdown()


HEALTHY = json.dumps({"status": "ok", "version": "0.0.0-test", "worker": {"state": "running"}}).encode()
SHED = json.dumps({"error": {"code": "overloaded", "message": "too many requests in flight"}}).encode()


def test_503_with_retry_after_is_retried_after_that_long(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers = [(503, {"Retry-After": "1"}, SHED), (200, {}, HEALTHY)]
    with Client(url) as c:
        h = c.health()
    assert h.status == "ok"
    assert [s[0] for s in script.seen] == ["GET", "GET"]
    waited = script.seen[1][2] - script.seen[0][2]
    assert 0.9 <= waited < 5, waited


def test_retries_stop_at_max_retries_and_raise_the_last_error(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers = [(503, {"Retry-After": "0"}, SHED)] * 4
    with Client(url, max_retries=2) as c:
        with pytest.raises(keel_client.ServiceUnavailableError) as e:
            c.health()
    assert len(script.seen) == 3
    assert e.value.code == "overloaded"


def test_writes_are_not_retried_unless_the_caller_opts_in(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    created = json.dumps({"id": "k1", "key": "keel_x", "role": "reader"}).encode()
    script.answers = [(503, {"Retry-After": "0"}, SHED)]
    with Client(url, api_key="x") as c:
        with pytest.raises(keel_client.ServiceUnavailableError):
            c.keys.create("reader")
        assert len(script.seen) == 1
        script.answers = [(429, {"Retry-After": "0"}, SHED), (201, {}, created)]
        k = c.with_options(retry_writes=True).keys.create("reader")
    assert k.id == "k1" and len(script.seen) == 3


def test_other_statuses_are_never_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers = [(500, {}, json.dumps({"error": {"code": "internal", "message": "boom"}}).encode())]
    with Client(url) as c:
        with pytest.raises(keel_client.InternalServerError):
            c.health()
    assert len(script.seen) == 1


def test_a_retry_after_beyond_the_cap_is_raised_at_once(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers = [(429, {"Retry-After": "3600"}, SHED)]
    with Client(url) as c:
        with pytest.raises(keel_client.RateLimitError):
            c.health()
    assert len(script.seen) == 1


def test_connect_errors_are_retried_with_backoff() -> None:
    attempts: list[float] = []
    http = httpx.Client(event_hooks={"request": [lambda r: attempts.append(time.monotonic())]})
    c = Client(
        "http://127.0.0.1:9", retry=RetryPolicy(max_retries=3, initial_delay=0.05, max_delay=0.2), http_client=http
    )
    with pytest.raises(keel_client.KeelConnectionError):
        c.health()
    assert len(attempts) == 4
    assert all(b - a >= 0.02 for a, b in zip(attempts, attempts[1:]))


def test_a_timeout_is_a_keel_timeout_error_and_reads_are_not_retried_after_it(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.stall.set()
    script.answers = [(200, {}, HEALTHY)] * 3
    started = time.monotonic()
    with Client(url, timeout=0.5) as c:
        with pytest.raises(keel_client.KeelTimeoutError) as e:
            c.health()
    assert time.monotonic() - started < 5
    assert e.value.status is None and "within the timeout" in str(e.value)
    assert len(script.seen) == 1  # a read timeout may have reached the server: not retried


def test_retry_after_as_an_http_date() -> None:
    from email.utils import formatdate

    s = _base.retry_after_seconds(formatdate(time.time() + 30, usegmt=True))
    assert s is not None and 25 <= s <= 31
    assert _base.retry_after_seconds("2") == 2.0
    assert _base.retry_after_seconds("soon") is None


@pytest.mark.anyio
async def test_async_retry_and_errors(scripted: tuple[str, Script], server: Server) -> None:
    url, script = scripted
    script.answers = [(503, {"Retry-After": "1"}, SHED), (200, {}, HEALTHY)]
    async with AsyncClient(url) as c:
        h = await c.health()
    assert h.version == "0.0.0-test" and len(script.seen) == 2
    assert script.seen[1][2] - script.seen[0][2] >= 0.9
    async with AsyncClient(server.url, api_key=server.keys["reader"]) as c:
        with pytest.raises(keel_client.NotFoundError):
            await c.models.get("no-such-model")
        with pytest.raises(keel_client.PermissionDeniedError):
            await c.keys.create("admin")
    async with AsyncClient(server.url, api_key="") as c:
        with pytest.raises(keel_client.AuthenticationError):
            await c.models.list()
