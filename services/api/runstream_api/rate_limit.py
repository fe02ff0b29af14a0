"""How many requests one caller may send per second, shared by every API replica: a
fixed-window counter in Redis per caller (token, else address) and second, one round trip
per request (INCR and EXPIRE pipelined). Over the limit: 429 with Retry-After (errors._http
words it). A window is the API host's clock second, so replicas need synchronised clocks
(NTP); a burst across a window boundary may get up to twice the limit, the price of one
counter per second."""

from __future__ import annotations

import hashlib
import time
from typing import Any, cast

from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from runstream_api.context import ApiContext

# A window's counter outlives its second a little (clock differences between replicas).
WINDOW_TTL_S = 2


def caller_key(request: Request[Any, Any, Any]) -> str:
    """Whom a rate limit counts: the token sent (hashed: never kept as is), else the
    client's address."""
    token = request.headers.get("authorization") or request.headers.get("x-auth-token")
    if token:
        return "t:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    client = request.client
    return "a:" + (client.host if client else "unknown")


class SharedRateLimit(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)
    # Probes and the interface documents are never limited.
    exclude_path_pattern = ("^/health", "^/livez", "^/metrics", "^/schema", "^/asyncapi")

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        api = cast(ApiContext, scope["litestar_app"].state.api)
        key = api.client.keys.api_rate(caller_key(Request(scope)), int(time.time()))
        async with api.client.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_TTL_S)
            count, _ = await pipe.execute()
        if count > self.per_second:
            # errors._http turns these into Retry-After and a message.
            raise TooManyRequestsException(
                headers={"RateLimit-Policy": f"{self.per_second}; w=1", "RateLimit-Reset": "1"}
            )
        await next_app(scope, receive, send)
