"""Bounded growth: trim streams past what every consumer group has acknowledged, and remove
consumers of workers that are gone. Idempotent: every worker may run it."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aredis
import structlog

from runstream.keys import Keys
from runstream.settings import Settings

log = structlog.get_logger("runstream.upkeep")


def _parse(entry_id: Any) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def safe_floor(redis: aredis.Redis, stream: str) -> tuple[int, int] | None:
    """The oldest entry some group still needs (pending, or not yet delivered); None when
    the stream has no groups."""
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None
    floor: tuple[int, int] | None = None
    for group in groups:
        last = _parse(group["last-delivered-id"])
        # Everything after last-delivered is still to be read: keep from just past it.
        need = (last[0], last[1] + 1)
        if group["pending"]:
            pending = await redis.xpending(stream, group["name"])
            need = min(need, _parse(pending["min"]))
        floor = need if floor is None else min(floor, need)
    return floor


async def trim(redis: aredis.Redis, stream: str, cap_without_groups: int | None) -> int:
    """Drop entries every group has acknowledged; a stream no group reads is capped instead."""
    if not await redis.exists(stream):
        return 0
    floor = await safe_floor(redis, stream)
    if floor is None:
        if cap_without_groups is None:
            return 0
        return int(await redis.xtrim(stream, maxlen=cap_without_groups, approximate=True))
    return int(await redis.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False))


async def remove_stale_consumers(
    redis: aredis.Redis, stream: str, group: str, idle_ms: int, keep: str
) -> list[str]:
    """Consumers idle for ``idle_ms`` with nothing pending: workers that went away. (A dead
    worker's pending entries are claimed by live ones first, which empties its list.)"""
    removed: list[str] = []
    try:
        consumers = await redis.xinfo_consumers(stream, group)
    except aredis.ResponseError:
        return removed
    for consumer in consumers:
        name = consumer["name"].decode() if isinstance(consumer["name"], bytes) else consumer["name"]
        if name != keep and consumer["pending"] == 0 and consumer["idle"] >= idle_ms:
            await redis.xgroup_delconsumer(stream, group, name)
            removed.append(name)
    return removed


async def upkeep(redis: aredis.Redis, keys: Keys, settings: Settings, me: str) -> None:
    started = time.monotonic()
    trimmed = 0
    removed: list[str] = []
    for shard in range(keys.shards):
        commands = keys.commands(shard)
        trimmed += await trim(redis, commands, None)
        trimmed += await trim(redis, keys.feed(shard), settings.feed_maxlen)
        removed += await remove_stale_consumers(
            redis, commands, keys.group, settings.stale_consumer_ms, me
        )
    if trimmed or removed:
        log.info(
            "upkeep",
            trimmed=trimmed,
            consumers_removed=removed,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
