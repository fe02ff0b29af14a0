"""Bounded growth: trim streams past what every consumer group has acknowledged, and remove
consumers of workers that are gone. Idempotent: every worker may run it."""

from __future__ import annotations

import time
from typing import Any, cast

import msgspec
import redis.asyncio as aredis
import structlog
from redis.exceptions import ResponseError

from runstream import lua
from runstream.contracts import commands as cmd
from runstream.domain.run import RunSummary
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import dlq

log = structlog.get_logger("runstream.upkeep")
_summary = msgspec.json.Decoder(RunSummary).decode


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
            if pending["min"] is not None:  # None: acked since XINFO looked
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
    redis: aredis.Redis, keys: Keys, stream: str, idle_ms: int
) -> list[str]:
    """Consumers of workers that went away: no heartbeat, idle for ``idle_ms``, nothing
    pending (a dead worker's pending entries are claimed by live ones first, which empties
    its list). A live worker keeps its heartbeat, so it is never removed while it may be
    reading."""
    removed: list[str] = []
    delete_if_idle = redis.register_script(lua.source("consumer_delete_if_idle"))
    try:
        consumers = await redis.xinfo_consumers(stream, keys.group)
    except ResponseError:
        return removed
    for consumer in consumers:
        raw = consumer["name"]
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if consumer["pending"] or consumer["idle"] < idle_ms:
            continue
        if await redis.exists(keys.worker_alive(name)):
            continue
        # Checked again in the same script as the delete: entries the consumer read since
        # XINFO looked would otherwise be dropped from the pending list, never redelivered.
        if await delete_if_idle(keys=[stream], args=[keys.group, name]):
            removed.append(name)
    return removed


def retention_days(settings: Settings) -> dict[str, float]:
    by_state = {
        "succeeded": settings.retain_succeeded_days,
        "cancelled": settings.retain_cancelled_days,
        "failed": settings.retain_failed_days,
        "reverted": settings.retain_reverted_days,
    }
    return {state: days for state, days in by_state.items() if days > 0}


# Candidates read per round trip by the retention sweep.
RETENTION_PAGE = 500


async def expire_runs(redis: aredis.Redis, keys: Keys, settings: Settings) -> int:
    """Ask for the deletion of runs past their retention, through the normal command path
    (so the aggregate's checks apply). The command id is derived from the run id and
    version, so workers sweeping at the same time ask only once, and a request rejected
    once (the run was pinned meanwhile) does not block a later one.

    Only runs last updated before the shortest retention are read, found by the query
    index's updated_at set: a sweep costs what is old, not every run there is."""
    keep = retention_days(settings)
    if not keep:
        return 0
    now = time.time()
    oldest_kept = now - min(keep.values()) * 86400
    sent = 0
    for shard in range(keys.shards):
        by_update = keys.query_sorted_set(shard, "updated_at")
        offset = 0
        while True:
            run_ids = cast(
                list[bytes],
                await redis.zrangebyscore(
                    by_update, "-inf", oldest_kept, start=offset, num=RETENTION_PAGE
                ),
            )
            if not run_ids:
                break
            offset += len(run_ids)
            summaries = await redis.hmget(keys.index(shard), run_ids)
            for run_id, raw in zip(run_ids, summaries, strict=True):
                if raw is None:  # deleted since
                    continue
                summary = _summary(raw)
                days = keep.get(summary.state)
                if days is None or summary.pinned or summary.updated_at + days * 86400 > now:
                    continue
                command = cmd.DeleteRun(
                    run_id=run_id.decode(),
                    command_id=f"retention-{run_id.decode()}-{summary.version}",
                    actor="retention",
                    mode="keep_effects",
                )
                await redis.xadd(
                    keys.commands(shard), {Fields.COMMAND: cmd.encode_command(command)}
                )
                sent += 1
            if len(run_ids) < RETENTION_PAGE:
                break
    return sent


async def heartbeat(redis: aredis.Redis, keys: Keys, settings: Settings, me: str) -> None:
    """Outlives a few upkeep rounds, so only a worker that stopped loses it."""
    await redis.set(keys.worker_alive(me), "1", ex=int(max(60, 3 * settings.upkeep_interval_s)))


async def upkeep(redis: aredis.Redis, keys: Keys, settings: Settings) -> None:
    started = time.monotonic()
    trimmed = 0
    removed: list[str] = []
    for shard in range(keys.shards):
        commands = keys.commands(shard)
        trimmed += await trim(redis, commands, None)
        trimmed += await trim(redis, keys.feed(shard), settings.feed_maxlen)
        trimmed += await dlq.trim(redis, keys, settings, shard)
        removed += await remove_stale_consumers(redis, keys, commands, settings.stale_consumer_ms)
    expired = await expire_runs(redis, keys, settings)
    if trimmed or removed or expired:
        log.info(
            "upkeep",
            trimmed=trimmed,
            consumers_removed=removed,
            retention_deletes=expired,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
