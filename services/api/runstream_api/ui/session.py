"""Who uses the UI: an API token, kept in an HttpOnly, SameSite=Strict cookie.

The cookie holds the token itself and every request checks it against the token store,
so a revoked token ends the session at once. Writes also check that the request comes
from the UI's own origin (a second guard beside SameSite against cross-site posts).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request

from runstream.tokens import TokenRecord
from runstream_api.context import ApiContext

COOKIE = "runstream_ui"
# A session lasts a working day; the token's own revocation ends it sooner.
MAX_AGE_S = 12 * 3600
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class LoginNeeded(Exception):
    """No valid token in the cookie: the UI answers with the login page."""


class ForeignOrigin(Exception):
    """A write whose Origin (or Referer) is not the UI's own host."""


def same_origin(request: Request[Any, Any, Any]) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    if not source:
        return True  # a browser sends Origin on every cross-site POST; none: not one
    return urlsplit(source).netloc == request.headers.get("host", "")


async def provide_ui_caller(api: ApiContext, request: Request[Any, Any, Any]) -> TokenRecord:
    if request.method in UNSAFE and not same_origin(request):
        raise ForeignOrigin()
    token = request.cookies.get(COOKIE, "")
    record = await api.tokens.check(token) if token else None
    if record is None:
        raise LoginNeeded()
    return record
