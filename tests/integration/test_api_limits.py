"""Limits of the HTTP API: a caller over its rate gets 429 with Retry-After, a query string
too long 414, a body too large 413; each a JSON body saying what to do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runstream import processes
from runstream.embedded import free_port
from runstream.settings import Settings

from .api_service import ApiService, api_service
from .support import service_env


@pytest.fixture
def api(settings: Settings, tmp_path: Path) -> Iterator[ApiService]:
    with api_service(settings, tmp_path, RUNSTREAM_API_RATE_LIMIT="5") as service:
        yield service


def test_a_caller_over_its_rate_gets_429_with_retry_after(api: ApiService) -> None:
    answers = [api.http.get("/scenarios") for _ in range(12)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert all(a.status_code in (200, 429) for a in answers)
    first = limited[0]
    assert int(first.headers["retry-after"]) >= 0
    problem = first.json()
    assert problem["error"] == "too_many_requests" and "retry after" in problem["message"]
    # Another caller (another token) has its own allowance; probes are never limited.
    with api.client_as("other", "viewer") as other:
        assert other.get("/scenarios").status_code == 200
    assert all(api.http.get("/health").status_code == 200 for _ in range(10))


def test_a_long_query_string_is_414_and_a_large_body_413(api: ApiService) -> None:
    long = httpx.get(f"{api.url}/runs", params={"name": "x" * 5000})
    assert long.status_code == 414
    assert "query string" in long.json()["message"]
    big = httpx.post(f"{api.url}/runs", content=b"{" + b" " * 300_000 + b"}")
    assert big.status_code == 413
    assert big.json()["error"] == "too_large"


def test_the_rate_limit_is_shared_by_two_api_replicas_on_one_redis(
    settings: Settings, tmp_path: Path
) -> None:
    """Three requests to each of two API processes in one second, with a limit of 5 a
    second: the sixth is refused, whichever replica it reaches (a limit per process would
    let all six through)."""
    with api_service(settings, tmp_path, RUNSTREAM_API_RATE_LIMIT="5") as first:
        port = free_port()
        env = service_env(first.settings, RUNSTREAM_API_RATE_LIMIT="5")
        proc = processes.start_api(env, port, tmp_path / "api2.log")
        try:
            second_url = f"http://127.0.0.1:{port}"
            processes.wait_http(proc, f"{second_url}/health")
            headers = dict(first.http.headers)
            with httpx.Client(base_url=second_url, headers=headers, timeout=30.0) as second:
                for _ in range(5):  # until all six fall in one clock second
                    time.sleep(1.02 - time.time() % 1)
                    window = int(time.time())
                    codes = [
                        client.get("/scenarios").status_code for client in (first.http, second) * 3
                    ]
                    if int(time.time()) == window:
                        break
                else:
                    pytest.skip("the machine is too slow to send six requests in a second")
                assert codes[:5] == [200] * 5 and codes[5] == 429, codes
                # The next second is a new window, on either replica.
                time.sleep(1.02 - time.time() % 1)
                assert second.get("/scenarios").status_code == 200
        finally:
            processes.stop_all([proc], grace=5)
            proc.close()
