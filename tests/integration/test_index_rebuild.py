"""The run index is a read model: dropped and rebuilt from events, it is the same."""

from __future__ import annotations

import asyncio

import msgspec

from runstream.client import Client
from runstream.contracts.commands import RevertRun, StopRun
from runstream.settings import Settings
from runstream.store import index

from .support import fast, worker_running


def test_a_dropped_index_is_rebuilt_from_events_with_the_same_result(settings: Settings) -> None:
    async def body() -> None:
        s = msgspec.structs.replace(fast(settings), snapshot_every=3)
        async with worker_running(s), Client.connect(settings=s) as client:
            done = await client.start("synthetic", {"items": 400, "edges_per_item": 1})
            reverted = await client.start("graph-import", {"namespace": done})
            slow = await client.start("synthetic", {"items": 100_000, "delay_ms": 1})
            for run_id in (done, reverted):
                assert (await client.wait(run_id, timeout=30, poll=0.05)).state == "succeeded"
            outcome = await client.execute(RevertRun(run_id=reverted), timeout=30)
            assert not outcome.rejected
            outcome = await client.execute(StopRun(run_id=slow), timeout=30)
            assert not outcome.rejected
            before = await client.list_runs()
            assert {r.state for r in before} == {"succeeded", "reverted", "stopped"}

            for shard in range(client.keys.shards):
                await client.redis.delete(client.keys.index(shard))
            assert await client.list_runs() == []

            assert (await index.rebuild(client.redis, client.keys, client.store)).runs == 3
            assert await client.list_runs() == before

    asyncio.run(body())
