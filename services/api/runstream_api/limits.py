"""Limits on what one request may ask: the length of its query string (414 beyond), and
how many requests one caller may send per second (429 with Retry-After beyond). The body
size limit is Litestar's own (``request_max_body_size``: 413)."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig

from runstream_api.errors import ApiError, Problem

MAX_QUERY_BYTES = 4096


async def check_query_length(request: Request[Any, Any, Any]) -> None:
    """Before every handler: a query string too long to be a sensible query is refused."""
    size = len(request.scope.get("query_string", b""))
    if size > MAX_QUERY_BYTES:
        raise ApiError(
            Problem(
                status=414,
                error="query_too_long",
                message=(
                    f"the query string is {size} bytes, more than {MAX_QUERY_BYTES}: use fewer "
                    "or shorter filters (or, for many runs at once, POST /runs/bulk)"
                ),
            )
        )


def caller_key(request: Request[Any, Any, Any]) -> str:
    """Whom a rate limit counts: the token sent (hashed: never kept as is), else the
    client's address."""
    token = request.headers.get("authorization") or request.headers.get("x-auth-token")
    if token:
        return "t:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    client = request.client
    return "a:" + (client.host if client else "unknown")


def rate_limit(per_second: int) -> RateLimitConfig | None:
    if per_second <= 0:
        return None
    return RateLimitConfig(
        rate_limit=("second", per_second),
        identifier_for_request=caller_key,
        # Probes and the interface documents are never limited.
        exclude=["^/health", "^/livez", "^/metrics", "^/schema", "^/asyncapi"],
    )
