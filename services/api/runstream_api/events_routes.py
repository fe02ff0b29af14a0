"""Server-sent events: the feed of every run (``/events``) or of one (``/runs/{id}/events``).

Each SSE message is one event as JSON (times in ISO 8601), its SSE id the feed position
right after it: for one run, the entry id in its shard's feed; for all runs, one entry id
per shard joined by commas. A client that reconnects with ``Last-Event-ID`` (browsers do
it by themselves) gets exactly the events it missed, as long as the feed still holds them;
if some were trimmed meanwhile, a ``FeedGap`` message says so first. Without a position,
the stream starts with the events that come after the request.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import get
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runstream import feed
from runstream.contracts import events as ev
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import project_of, require, require_run, visible_project
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError, bad_input
from runstream_api.runs_routes import RunIdParam, existing
from runstream_api.times import iso_times

# A comment this often keeps proxies from closing an idle stream.
KEEP_ALIVE_S = 15.0
# How long a browser waits before it reconnects after the stream broke.
RETRY_MS = 2_000
# Runs whose project a project-scoped subscriber's stream remembers.
PROJECT_CACHE = 10_000

LastEventIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        required=False,
        description="Resume after this event id (the id of the last event received).",
    ),
]
LastEventIdQuery = Annotated[
    str | None,
    QueryParameter(
        name="last_event_id",
        required=False,
        description=(
            "As the Last-Event-ID header, for clients that cannot send headers; "
            "'0' starts at the oldest event the feed still holds."
        ),
    ),
]
_encoder = msgspec.json.Encoder()


def message(item: feed.FeedEvent) -> ServerSentEventMessage:
    body = iso_times(msgspec.to_builtins(item.event))
    body.update(run_id=item.run_id, version=item.version)
    return ServerSentEventMessage(data=_encoder.encode(body).decode(), id=item.cursor.text())


def gap_message(gap: feed.FeedGap, cursor: feed.Cursor) -> ServerSentEventMessage:
    body = {
        "type": "FeedGap",
        "shard": gap.shard,
        "after": gap.after,
        "trimmed_through": gap.trimmed_through,
        "message": (
            f"events of shard {gap.shard} after {gap.after} were trimmed from the feed "
            "before this stream read them; read the runs' histories for them"
        ),
    }
    return ServerSentEventMessage(data=_encoder.encode(body).decode(), id=cursor.text())


async def start_cursor(
    api: ApiContext, shards: list[int], header: str | None, query: str | None
) -> tuple[feed.Cursor, bool]:
    """Where the stream starts, and whether it resumes (from a client's position)."""
    text = header if header is not None else query
    if text is None or not text.strip():
        return await feed.newest(api.client.redis, api.client.keys, shards), False
    field = "Last-Event-ID" if header is not None else "last_event_id"
    try:
        return feed.Cursor.parse(text, shards), True
    except feed.BadPosition as exc:
        raise bad_input(f"bad {field}: {exc}", field=field) from None


class ProjectFilter:
    """Lets through the events of the runs in the caller's project (all, for a token of
    every project); remembers each run's project, learnt from the index or its tombstone."""

    def __init__(self, api: ApiContext, caller: TokenRecord) -> None:
        self.api = api
        self.project = caller.project
        self.known: dict[str, str] = {}

    async def allows(self, item: feed.FeedEvent) -> bool:
        if self.project == ALL_PROJECTS:
            return True
        project = self.known.get(item.run_id)
        if project is None:
            project = await self._project(item)
            if len(self.known) >= PROJECT_CACHE:
                self.known.clear()
            self.known[item.run_id] = project
        return project == self.project

    async def _project(self, item: feed.FeedEvent) -> str:
        scenario = getattr(item.event, "scenario", None)
        if not isinstance(scenario, str):
            run = await self.api.client.find(item.run_id)
            if run is not None:
                scenario = run.scenario
            else:
                tomb = await self.api.client.store.tombstone(item.run_id)
                scenario = tomb.scenario if tomb is not None else ""
        return project_of(self.api, scenario)


async def stream(
    api: ApiContext,
    cursor: feed.Cursor,
    resumed: bool,
    allowed: ProjectFilter,
    run_id: str | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    client = api.client
    yield ServerSentEventMessage(data=None, retry=RETRY_MS, comment="runstream events")
    if resumed:
        for gap in await feed.gaps(client.redis, client.keys, cursor):
            yield gap_message(gap, cursor)
    sent = time.monotonic()
    async for item in feed.follow(client.redis, client.keys, cursor, run_id=run_id):
        if item is not None and await allowed.allows(item):
            yield message(item)
            sent = time.monotonic()
        elif time.monotonic() - sent >= KEEP_ALIVE_S:
            yield ServerSentEventMessage(data=None, comment="keep-alive")
            sent = time.monotonic()
        if item is not None and run_id is not None and isinstance(item.event, ev.RunDeleted):
            return  # nothing follows a run's deletion


EVENTS_DOC = (
    "A text/event-stream of run events: each message's data is one event as JSON (its "
    "`type`, `run_id`, `version`, the event's fields, times in ISO 8601), its id the "
    "position to resume from with `Last-Event-ID`."
)


@get(
    "/events",
    summary="Follow the events of every run (server-sent events)",
    description=EVENTS_DOC,
    tags=["events"],
    media_type="text/event-stream",
)
async def all_events(
    api: ApiContext,
    caller: TokenRecord,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> ServerSentEvent:
    return await all_events_for(api, caller, last_event_id_header, last_event_id)


async def all_events_for(
    api: ApiContext,
    caller: TokenRecord,
    last_event_id_header: str | None,
    last_event_id: str | None,
) -> ServerSentEvent:
    """The stream of ``/events`` for ``caller`` (also the UI's, signed in by its cookie)."""
    require(caller, "viewer", visible_project(caller))
    shards = list(range(api.client.keys.shards))
    cursor, resumed = await start_cursor(api, shards, last_event_id_header, last_event_id)
    return ServerSentEvent(stream(api, cursor, resumed, ProjectFilter(api, caller)))


@get(
    "/runs/{run_id:str}/events",
    summary="Follow one run's events (server-sent events)",
    description=EVENTS_DOC
    + " The stream ends after the run's deletion; a deleted run's stream can be resumed "
    "(to its end), not opened afresh (410).",
    tags=["events"],
    media_type="text/event-stream",
)
async def run_events(
    api: ApiContext,
    caller: TokenRecord,
    run_id: RunIdParam,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> ServerSentEvent:
    return await run_events_for(api, caller, run_id, last_event_id_header, last_event_id)


async def run_events_for(
    api: ApiContext,
    caller: TokenRecord,
    run_id: str,
    last_event_id_header: str | None,
    last_event_id: str | None,
) -> ServerSentEvent:
    """The stream of ``/runs/{run_id}/events`` for ``caller`` (also the UI's)."""
    shards = [api.client.keys.shard_of(run_id)]
    cursor, resumed = await start_cursor(api, shards, last_event_id_header, last_event_id)
    try:
        require_run(api, caller, "viewer", await existing(api.client, run_id))
    except ApiError as exc:
        # A deleted run's stream can still be resumed: to the deletion, where it ends.
        tomb = exc.problem.tombstone
        if tomb is None or not resumed:
            raise
        require(caller, "viewer", project_of(api, tomb.scenario))
    return ServerSentEvent(stream(api, cursor, resumed, ProjectFilter(api, caller), run_id=run_id))
