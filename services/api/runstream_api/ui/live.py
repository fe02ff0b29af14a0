"""Live updates for the pages: server-sent events, one message per batch of changed runs.

The shards' feeds are followed with ``runstream.feed`` (as the API's ``/events`` does),
from a cursor sent as each message's id, so a browser that reconnects with Last-Event-ID
misses nothing. Unlike ``/events`` (one message per event), a page gets the runs that
changed in a batch as their current summaries, at most one message per ``COALESCE_S``:
a run that changed ten times in a batch is sent once, as it is now, so a page keeps
abreast however fast runs change.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runstream import feed
from runstream.client import Client
from runstream.domain.run import RunSummary
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import project_of, require, visible_project
from runstream_api.context import ApiContext

COALESCE_S = 0.25
# Idle: a comment this often, so a closed connection is noticed and proxies keep it open.
KEEP_ALIVE_S = 15.0
_summary = msgspec.json.Decoder(RunSummary)


class Change(msgspec.Struct, kw_only=True):
    """What a page shows of a run that changed (``gone``: deleted)."""

    id: str
    state: str = ""
    items_processed: int = 0
    items_total: int | None = None
    effects_left: int = 0
    duration_ms: int | None = None
    updated_at: float = 0.0
    gone: bool = False


class Batch(msgspec.Struct):
    runs: list[Change]


_encoder = msgspec.json.Encoder()


def start_cursor(text: str, shards: int) -> feed.Cursor | None:
    """A Last-Event-ID as a cursor; None if it is none (follow from now on)."""
    try:
        return feed.Cursor.parse(text, range(shards)) if text else None
    except feed.BadPosition:
        return None


async def changed_runs(
    client: Client, cursor: feed.Cursor, only: str | None = None
) -> AsyncIterator[tuple[feed.Cursor, list[Change]]]:
    """Batches of changed runs (and the cursor after them); an empty one when idle for
    KEEP_ALIVE_S."""
    pending: dict[str, None] = {}
    opened = idle = time.monotonic()
    block_ms = int(COALESCE_S * 1000)
    async for item in feed.follow(
        client.redis, client.keys, cursor, block_ms=block_ms, run_id=only
    ):
        now = time.monotonic()
        if item is not None:
            cursor = item.cursor
            if not pending:
                opened = now
            pending[item.run_id] = None
            if now - opened < COALESCE_S:
                continue
        if pending:
            yield cursor, await _summaries(client, list(pending))
            pending.clear()
            idle = now
        elif now - idle >= KEEP_ALIVE_S:
            yield cursor, []
            idle = now


async def _summaries(client: Client, run_ids: list[str]) -> list[Change]:
    if not run_ids:
        return []
    async with client.redis.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.hget(client.keys.index(client.keys.shard_of(run_id)), run_id)
        raws = await pipe.execute()
    out = []
    for run_id, raw in zip(run_ids, raws, strict=True):
        if raw is None:
            out.append(Change(id=run_id, gone=True))
            continue
        s = _summary.decode(raw)
        out.append(
            Change(
                id=s.id,
                state=s.state,
                items_processed=s.items_processed,
                items_total=s.items_total,
                effects_left=s.effects_left,
                duration_ms=s.duration_ms,
                updated_at=s.updated_at,
            )
        )
    return out


@get("/live", name="ui-live")
async def live(
    request: Request[Any, Any, Any], api: ApiContext, ui_caller: TokenRecord, run: str = ""
) -> ServerSentEvent:
    require(ui_caller, "viewer", visible_project(ui_caller))
    client = api.client
    shards = range(client.keys.shards)
    resumed = start_cursor(request.headers.get("last-event-id", ""), client.keys.shards)
    cursor = resumed or await feed.newest(client.redis, client.keys, shards)
    missed = bool(resumed and await feed.gaps(client.redis, client.keys, resumed))
    scoped = ui_caller.project != ALL_PROJECTS
    scenarios: dict[str, str] = {}

    async def project_ok(run_id: str) -> bool:
        if not scoped:
            return True
        if run_id not in scenarios:
            found = await client.find(run_id)
            scenarios[run_id] = found.scenario if found is not None else ""
        return project_of(api, scenarios[run_id]) == ui_caller.project

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(retry=2000, comment="live")
        if missed:  # the feed lost updates this page never saw: it is stale
            yield ServerSentEventMessage(data="{}", event="gap")
        async for position, batch in changed_runs(client, cursor, only=run or None):
            shown = [c for c in batch if await project_ok(c.id)]
            if not shown:
                yield ServerSentEventMessage(comment="idle")
                continue
            text = _encoder.encode(Batch(shown)).decode()
            yield ServerSentEventMessage(data=text, event="runs", id=position.text())

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store"})
