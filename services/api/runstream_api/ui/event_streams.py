"""The events streams for a browser: ``/ui/events`` and ``/ui/runs/{id}/events``, the same
streams as the API's ``/events`` and ``/runs/{id}/events``, signed in by the UI's session
cookie. A browser's ``EventSource`` cannot send an Authorization header, and the UI's
cookie (HttpOnly, SameSite=Strict, path /ui) never reaches ``/events``: a page signed in to
the UI follows events here, a program with a token follows them at ``/events``. Streams
only read, so the cookie (sent by the browser itself) is safe here as on every UI page."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.response import ServerSentEvent
from litestar.types import ExceptionHandlersMap

from runstream.tokens import TokenRecord
from runstream_api import events_routes
from runstream_api.context import ApiContext
from runstream_api.errors import Problem
from runstream_api.events_routes import LastEventIdHeader, LastEventIdQuery
from runstream_api.runs_routes import RunIdParam
from runstream_api.ui.session import LoginNeeded


def _unauthorized(_: Request[Any, Any, Any], __: LoginNeeded) -> Response[Problem]:
    # A stream is no page: no redirect to the login form, a 401 EventSource gives up on.
    problem = Problem(
        status=401,
        error="unauthorized",
        message="sign in to the UI first (/ui/login); a program sends its token to /events",
    )
    return Response(problem, status_code=401, media_type=MediaType.JSON)


STREAM_ERRORS: ExceptionHandlersMap = {LoginNeeded: _unauthorized}


@get(
    "/events",
    name="ui-events",
    media_type="text/event-stream",
    exception_handlers=STREAM_ERRORS,
)
async def events(
    api: ApiContext,
    ui_caller: TokenRecord,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> ServerSentEvent:
    return await events_routes.all_events_for(api, ui_caller, last_event_id_header, last_event_id)


@get(
    "/runs/{run_id:str}/events",
    name="ui-run-events",
    media_type="text/event-stream",
    exception_handlers=STREAM_ERRORS,
)
async def run_events(
    api: ApiContext,
    ui_caller: TokenRecord,
    run_id: RunIdParam,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> ServerSentEvent:
    return await events_routes.run_events_for(
        api, ui_caller, run_id, last_event_id_header, last_event_id
    )
