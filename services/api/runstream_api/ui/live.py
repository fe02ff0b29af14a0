"""Live updates for the pages: server-sent events, one message per batch of changed runs.

The shards' feeds are read from a cursor (one entry id per shard, sent as the event id, so
a browser that reconnects with Last-Event-ID misses nothing); the runs that changed in a
batch are sent as their current summaries. Batching (at most one message per
``COALESCE_S``) keeps a page abreast however fast runs change: a run that changed ten
times in a batch is sent once, as it is now.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from runstream import multi_read
from runstream.client import Client
from runstream.domain.run import RunSummary
from runstream.keys import Fields
from runstream.store import replies
from runstream.tokens import ALL_PROJECTS, TokenRecord
from runstream_api.auth import project_of, require, visible_project
from runstream_api.context import ApiContext

COALESCE_S = 0.25
HEARTBEAT_MS = 15_000
BATCH = 5000
_ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}\Z")
_summary = msgspec.json.Decoder(RunSummary)


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
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


def parse_cursor(text: str, shards: int) -> dict[int, str] | None:
    """A Last-Event-ID as positions per shard; None if it is not one (start from now)."""
    parts = [p.strip() for p in text.split(",")] if text else []
    if len(parts) != shards or not all(_ENTRY_ID.match(p) for p in parts):
        return None
    return dict(enumerate(parts))


async def newest(client: Client) -> dict[int, str]:
    async with client.redis.pipeline(transaction=False) as pipe:
        for shard in range(client.keys.shards):
            pipe.xrevrange(client.keys.feed(shard), count=1)
        last = await pipe.execute()
    return {
        shard: (entries[0][0].decode() if (entries := replies.entries(reply)) else "0-0")
        for shard, reply in enumerate(last)
    }


async def changed_runs(
    client: Client, cursor: dict[int, str], only: str | None = None
) -> AsyncIterator[list[Change]]:
    """Batches of changes from ``cursor`` on (which it advances); an empty batch now and
    then while nothing happens, so a closed connection is noticed."""
    feeds = {client.keys.feed(shard): shard for shard in cursor}
    while True:
        reply = await multi_read.xread(
            client.redis,
            {feed: cursor[shard] for feed, shard in feeds.items()},
            count=BATCH,
            block=HEARTBEAT_MS,
        )
        changed: dict[str, None] = {}
        for stream, entries in replies.streams(reply):
            shard = feeds[replies.text(stream)]
            for entry_id, fields in entries:
                cursor[shard] = entry_id.decode()
                run_id = fields[Fields.RUN].decode()
                if only is None or run_id == only:
                    changed[run_id] = None
        yield await _summaries(client, list(changed))


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
    cursor = parse_cursor(request.headers.get("last-event-id", ""), client.keys.shards)
    if cursor is None:
        cursor = await newest(client)
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
        async for batch in changed_runs(client, cursor, only=run or None):
            shown = [c for c in batch if await project_ok(c.id)]
            if not shown:
                yield ServerSentEventMessage(comment="idle")
                continue
            text = _encoder.encode(Batch(shown)).decode()
            position = ",".join(cursor[s] for s in sorted(cursor))
            yield ServerSentEventMessage(data=text, event="runs", id=position)
            await asyncio.sleep(COALESCE_S)

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store"})
