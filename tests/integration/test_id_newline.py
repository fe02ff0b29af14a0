"""A command whose run id or command id ends in a newline is dead-lettered, not run: it
would otherwise be a second run (or command) that lists and prints like the first."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aredis

from runstream.client import Client
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import replies
from runstream_worker.app import ensure_groups

from .support import connect, fast, run_id_on, until, worker_running


def test_ids_with_a_trailing_newline_are_dead_lettered_not_run(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        run_id = run_id_on(keys, 0)
        stream = keys.commands(0)
        start = {"type": "StartRun", "scenario": "synthetic", "args": {"items": 3}}
        spoiled = [
            json.dumps({**start, "run_id": run_id + "\n"}).encode(),
            json.dumps({**start, "run_id": run_id_on(keys, 0), "command_id": "c-1\n"}).encode(),
        ]
        async with connect(s) as r, Client.connect(settings=s) as client:
            await ensure_groups(r, keys)
            await client.start_nowait("synthetic", {"items": 3}, run_id=run_id)
            sent = [
                replies.text(await r.xadd(stream, {Fields.COMMAND: payload})) for payload in spoiled
            ]
            async with worker_running(s):
                assert (await client.wait(run_id, timeout=15, poll=0.05)).state == "succeeded"
                letters = await until(
                    lambda: _letters(r, keys, len(spoiled)), "both messages dead-lettered"
                )
            by_source = {f[Fields.SOURCE_ID].decode(): f for _, f in letters}
            assert set(by_source) == set(sent)
            assert "$.run_id" in by_source[sent[0]][Fields.REASON].decode()
            assert "$.command_id" in by_source[sent[1]][Fields.REASON].decode()
            # Only the well-formed run exists: nothing was indexed, stored or left runnable
            # under the spoiled ids.
            assert [row.id for row in await client.list_runs()] == [run_id]
            assert await r.exists(keys.events(run_id + "\n")) == 0
            assert await r.zcard(keys.runnable(keys.shard_of(run_id + "\n"))) == 0
            assert await r.xpending(stream, keys.group) == {
                "pending": 0,
                "min": None,
                "max": None,
                "consumers": [],
            }

    asyncio.run(body())


async def _letters(
    r: aredis.Redis, keys: Keys, n: int
) -> list[tuple[bytes, dict[bytes, bytes]]] | None:
    entries = []
    for shard in range(keys.shards):
        entries += replies.entries(await r.xrange(keys.dlq(shard)))
    return entries if len(entries) >= n else None
