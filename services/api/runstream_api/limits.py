"""Limits on what one request may ask: the length of its query string (414 beyond). The
body size limit is Litestar's own (``request_max_body_size``: 413); how many requests one
caller may send per second is rate_limit's."""

from __future__ import annotations

from typing import Any

from litestar import Request

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
