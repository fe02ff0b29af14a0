"""A run's outputs: its log (JSON pages, or followed as server-sent events) and its result
files (listed, one by one with its media type, or all as one tar.gz)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.params import HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runstream.client import Client
from runstream.query import BadQuery, parse_time
from runstream.store.outputs import LogLine, ResultFile
from runstream.tokens import TokenRecord
from runstream_api.auth import require_run
from runstream_api.context import ApiContext
from runstream_api.errors import bad_input
from runstream_api.runs_routes import RunIdParam, existing
from runstream_api.times import iso_times

MAX_LINES = 5000
ENTRY_ID = r"^\d{1,20}-\d{1,20}\Z"
_encoder = msgspec.json.Encoder()


class LogPage(msgspec.Struct, kw_only=True, omit_defaults=True):
    # How many of the run's oldest lines were dropped (its log is bounded).
    dropped: int
    lines: list[LogLine]
    # Pass as ?after= for the next page; absent when no more lines are kept now.
    next_after: str | None = None


class ResultList(msgspec.Struct, kw_only=True):
    files: list[ResultFile]


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except BadQuery as exc:
        raise bad_input(f"bad since: {exc}", field="since") from None


def _wants_stream(request: Request[Any, Any, Any], follow: bool) -> bool:
    return follow or "text/event-stream" in request.headers.get("accept", "")


async def _follow(
    client: Client, run_id: str, since: float | None, after: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    async for line in client.follow_logs(run_id, since=since, after=after):
        body = iso_times(msgspec.to_builtins(line))
        yield ServerSentEventMessage(data=_encoder.encode(body).decode(), id=line.id)
    run = await client.find(run_id)
    # Named, so a browser's EventSource can close on it instead of reconnecting.
    yield ServerSentEventMessage(
        event="end", data=_encoder.encode({"state": run.state if run else "deleted"}).decode()
    )


class OutputsController(Controller):
    path = "/runs/{run_id:str}"
    tags = ("outputs",)

    @get(
        "/logs",
        summary="The run's log: a page of lines, or followed (text/event-stream)",
        description=(
            "JSON: up to `limit` lines after `after` (an entry id), logged at or after `since` "
            "(ISO 8601). With `Accept: text/event-stream` or `?follow=true`: the lines as "
            "server-sent events (id: the line's entry id, resumable with Last-Event-ID) until "
            "the run no longer runs, then an event named `end` with its state."
        ),
    )
    async def logs(
        self,
        api: ApiContext,
        caller: TokenRecord,
        request: Request[Any, Any, Any],
        run_id: RunIdParam,
        since: Annotated[str | None, Parameter(description="ISO 8601 time.")] = None,
        after: Annotated[
            str | None, Parameter(pattern=ENTRY_ID, description="A line's entry id.")
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LINES)] = 1000,
        follow: Annotated[bool, Parameter(description="Follow as server-sent events.")] = False,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False, pattern=ENTRY_ID)
        ] = None,
    ) -> Response[Any]:
        require_run(api, caller, "viewer", await existing(api.client, run_id))
        start = _since(since)
        if _wants_stream(request, follow):
            resume = last_event_id or after
            return ServerSentEvent(_follow(api.client, run_id, start, resume))
        dropped, lines = await api.client.logs(
            run_id, since=start, after=after or "", count=limit + 1
        )
        page = lines[:limit]
        more = len(lines) > limit
        body = LogPage(dropped=dropped, lines=page, next_after=page[-1].id if more else None)
        return Response(body, media_type=MediaType.JSON)

    @get("/results", summary="The run's result files: name, size, media type")
    async def results(self, api: ApiContext, caller: TokenRecord, run_id: RunIdParam) -> ResultList:
        require_run(api, caller, "viewer", await existing(api.client, run_id))
        return ResultList(files=await api.client.results(run_id))

    @get(
        "/results.tar.gz",
        summary="All the run's result files as one tar.gz",
        media_type="application/gzip",
    )
    async def archive(
        self, api: ApiContext, caller: TokenRecord, run_id: RunIdParam
    ) -> Response[bytes]:
        require_run(api, caller, "viewer", await existing(api.client, run_id))
        content = await api.client.results_archive(run_id)
        return Response(
            content,
            media_type="application/gzip",
            headers={"Content-Disposition": f'attachment; filename="{run_id}-results.tar.gz"'},
        )

    @get("/results/{name:str}", summary="One result file, with its media type")
    async def result(
        self, api: ApiContext, caller: TokenRecord, run_id: RunIdParam, name: str
    ) -> Response[bytes]:
        require_run(api, caller, "viewer", await existing(api.client, run_id))
        content = await api.client.result(run_id, name)  # ResultNotFound: 404 naming them
        files = {f.name: f for f in await api.client.results(run_id)}
        media = files[name].media_type if name in files else "application/octet-stream"
        return Response(content, media_type=media)
