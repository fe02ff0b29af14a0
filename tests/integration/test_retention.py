"""Retention: runs past their state's retention are asked to be deleted (DeleteRun through
the command path), found by the query index's updated_at set, so a sweep reads the old
runs only, not every run of the shard (it was a full HSCAN of the read model)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.domain.run import Run
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.keys import Fields
from runstream.settings import Settings
from runstream.store import replies
from runstream_worker.upkeep import expire_runs

EmbeddedFactory = Callable[..., EmbeddedRedis]

DAY = 86400.0
RECENT = 300


async def _store(client: Client, ended: float, end: str = "succeeded", pin: bool = False) -> str:
    """A run that ended at ``ended`` (the append script a worker uses, controlled times)."""
    run_id = new_id()
    run = Run.blank(run_id)
    started = ended - 5
    run.start(cmd.StartRun(run_id=run_id, scenario="synthetic"), started, args={})
    run.begin(started, "w")
    if end == "succeeded":
        run.succeed(ended)
    else:
        run.handle(cmd.StopRun(run_id=run_id), ended)
    if pin:
        run.handle(cmd.PinRun(run_id=run_id), ended)
    assert (await client.store.save(run)).status == "ok"
    return run_id


async def _deletes_asked(client: Client) -> set[str]:
    asked: set[str] = set()
    for shard in range(client.keys.shards):
        stream = await client.redis.xrange(client.keys.commands(shard))
        for _, fields in replies.entries(stream):
            command = cmd.decode_command(fields[Fields.COMMAND])
            assert isinstance(command, cmd.DeleteRun)
            assert command.actor == "retention" and command.mode == "keep_effects"
            asked.add(command.run_id)
    return asked


def test_retention_asks_to_delete_only_old_runs_and_reads_only_those(
    embedded_redis: EmbeddedFactory,
) -> None:
    async def body() -> None:
        server = embedded_redis()  # its own server: its command counts are this test's
        s = Settings(redis_url=server.url, prefix="rt", shards=2, retain_succeeded_days=7)
        async with Client.connect(settings=s) as client:
            now = time.time()
            old = {await _store(client, now - 10 * DAY) for _ in range(3)}
            kept = {
                await _store(client, now - 10 * DAY, pin=True),  # pinned
                await _store(client, now - 10 * DAY, end="stopped"),  # no retention
                await _store(client, now - 6 * DAY),  # not old enough
            }
            for _ in range(RECENT):
                await _store(client, now)
            await client.redis.config_resetstat()

            assert await expire_runs(client.redis, client.keys, s) == len(old)

            assert await _deletes_asked(client) == old
            stats = await client.redis.info("commandstats")
            assert "cmdstat_hscan" not in stats  # before: the whole read model, every sweep
            # One page of candidates per shard: the 5 old runs, not the 300 recent ones.
            assert stats["cmdstat_hmget"]["calls"] <= s.shards
            assert not kept & await _deletes_asked(client)

    asyncio.run(body())
