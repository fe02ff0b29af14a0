"""What a worker's scan for runs to take costs while other workers drive many runs: it reads
what is free to take (runnable_scan.lua), so it does not try each driven run's lease in
turn (a SET NX per run per second per worker, as it did)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.settings import Settings

from .support import fast, until, worker_running

EmbeddedFactory = Callable[..., EmbeddedRedis]

DRIVEN = 60


async def _set_calls(client: Client) -> int:
    stats = await client.redis.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


def test_a_worker_with_free_slots_does_not_try_the_leases_of_runs_driven_elsewhere(
    embedded_redis: EmbeddedFactory,
) -> None:
    async def body() -> None:
        server = embedded_redis()  # its own server: its command counts are this test's
        s = fast(
            Settings(redis_url=server.url, prefix="sc", shards=2),
            max_parallel_runs=DRIVEN + 20,  # both workers have free slots all along
            lease_ms=3000,
            upkeep_interval_s=600,  # no heartbeat SETs in the window
        )
        async with worker_running(s, "a") as _a, Client.connect(settings=s) as client:
            # All held by worker a, in their first item: idle, so no append of theirs writes
            # anything in the window (RunStarted comes with the first chunk: they are still
            # in the waiting band, the part of the line a scan walks).
            ids = [new_id() for _ in range(DRIVEN)]
            args = {"items": 1, "delay_ms": 30_000}
            for run_id in ids:
                await client.send(cmd.StartRun(run_id=run_id, scenario="synthetic", args=args))

            async def all_leased() -> bool:
                held = [await client.redis.exists(client.keys.lease(r)) for r in ids]
                return all(held)

            await until(all_leased, "worker a to drive every run", timeout=30)
            async with worker_running(s, "b") as b:
                await asyncio.sleep(1.5)  # b's first (full) scan is behind it
                before = await _set_calls(client)
                await asyncio.sleep(3)  # three periodic scans of b (and of a)
                sets = await _set_calls(client) - before
                assert b.executor.free_slots == s.max_parallel_runs  # it took none
            # Before: b asked for each run's lease at each scan, ~DRIVEN SETs a second.
            assert sets <= 3, sets
            for run_id in ids:
                await client.send(cmd.CancelRun(run_id=run_id))

    asyncio.run(body())
