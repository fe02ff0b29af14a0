"""Limits of the HTTP API: a caller over its rate gets 429 with Retry-After, a query string
too long 414, a body too large 413; each a JSON body saying what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runstream.settings import Settings

from .api_service import ApiService, api_service


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
