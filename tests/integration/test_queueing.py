"""Queueing (Nextmv's RunQueuing), on a real Redis with an in-process worker: at most
RUNSTREAM_MAX_PARALLEL_RUNS runs at once, waiting runs start by priority then age,
--no-queue starts at once or is rejected, and queued runs can be stopped or cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.settings import Settings

from .support import fast, history, runctl_async, until, worker_running

EmbeddedFactory = Callable[..., EmbeddedRedis]

SLOW = {"items": 100_000, "delay_ms": 5}


async def _state(client: Client, run_id: str) -> str:
    found = await client.find(run_id)
    return found.state if found else "-"


async def _start(client: Client, priority: int = 5, **args: Any) -> str:
    """A run of synthetic, accepted before this returns (so created times are in order)."""
    command = cmd.StartRun(
        run_id=new_id(), scenario="synthetic", args=args or {"items": 2}, priority=priority
    )
    outcome = await client.execute(command, wait=False, timeout=10)
    assert not outcome.rejected, outcome.reason
    return command.run_id


async def _running_blocker(client: Client) -> str:
    blocker = await _start(client, **SLOW)
    await until(lambda: _state(client, blocker), "the blocker to exist")
    await until(lambda: _is(client, blocker, "running"), "the blocker to take the worker's slot")
    return blocker


async def _is(client: Client, run_id: str, state: str) -> bool:
    return await _state(client, run_id) == state


def test_waiting_runs_start_by_priority_then_age(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, max_parallel_runs=1)
        async with worker_running(s), Client.connect(settings=s) as client:
            blocker = await _running_blocker(client)
            priorities = [5, 9, 1, 5, 3, 1]
            ids = [await _start(client, p) for p in priorities]
            order = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (priorities[i], i))]

            assert [r.id for r in await client.queue()] == order
            assert all([await _is(client, r, "queued") for r in ids])
            shown = await runctl_async(s, "queue")
            assert shown.code == 0, shown.stderr
            positions = [shown.stdout.index(r) for r in order]
            assert positions == sorted(positions)

            await client.execute(cmd.StopRun(run_id=blocker), timeout=10)
            for run_id in ids:
                assert (await client.wait(run_id, timeout=30)).state == "succeeded"
            started = {r: (await client.get(r)).started_at for r in ids}
            assert sorted(ids, key=lambda r: started[r]) == order
            assert await client.queue() == []
            assert "no runs waiting" in (await runctl_async(s, "queue")).stdout

    asyncio.run(body())


def test_a_worker_runs_at_most_its_slots_at_once(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, max_parallel_runs=2)
        async with worker_running(s), Client.connect(settings=s) as client:
            ids = [await _start(client, items=15, delay_ms=10) for _ in range(5)]
            most = 0
            waited = False
            while True:
                states = [await _state(client, r) for r in ids]
                most = max(most, states.count("running"))
                waited = waited or states.count("queued") >= 3
                if all(x == "succeeded" for x in states):
                    break
                await asyncio.sleep(0.02)
            assert most == 2
            assert waited

    asyncio.run(body())


def test_no_queue_starts_at_once_or_is_rejected_with_a_reason(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, max_parallel_runs=1)
        async with worker_running(s) as worker, Client.connect(settings=s) as client:
            blocker = await _running_blocker(client)
            refused = await runctl_async(s, "start", "synthetic", "--no-queue")
            assert refused.code == 1
            assert "no free run slot" in refused.stderr
            assert "RUNSTREAM_MAX_PARALLEL_RUNS" in refused.stderr
            assert [r.id for r in await client.list_runs()] == [blocker]

            await client.execute(cmd.StopRun(run_id=blocker), timeout=10)
            await until(lambda: worker.executor.free_slots == 1, "the blocker's slot to free")
            started = await runctl_async(
                s, "start", "synthetic", "--arg", "items=3", "--no-queue", "--wait"
            )
            assert started.code == 0, started.stderr
            assert "succeeded" in started.stdout

    asyncio.run(body())


def test_a_queued_run_can_be_stopped_continued_and_cancelled(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, max_parallel_runs=1)
        async with worker_running(s), Client.connect(settings=s) as client:
            blocker = await _running_blocker(client)
            first, second = await _start(client), await _start(client)

            stopped = await runctl_async(s, "stop", first, "--wait")
            assert stopped.code == 0, stopped.stderr
            cancelled = await runctl_async(s, "cancel", second, "--wait")
            assert cancelled.code == 0, cancelled.stderr
            assert await _state(client, first) == "stopped"
            assert await _state(client, second) == "cancelled"
            assert await client.queue() == []

            # Continued before it ever ran: it waits its turn again.
            await client.execute(cmd.ContinueRun(run_id=first), timeout=10)
            assert await _state(client, first) == "queued"
            assert [r.id for r in await client.queue()] == [first]
            await client.execute(cmd.StopRun(run_id=blocker), timeout=10)
            assert (await client.wait(first, timeout=20)).state == "succeeded"
            never = await history(client.redis, client.keys, second)
            assert not any(isinstance(e, ev.RunStarted) for e in never)

    asyncio.run(body())


def test_a_freed_slot_takes_the_next_waiting_run_without_reading_the_line_again(
    embedded_redis: EmbeddedFactory,
) -> None:
    """The line of waiting runs is read once and followed while nothing new had to wait;
    it is read again only after a run had to wait meanwhile, or once per scan interval."""

    async def body() -> None:
        server = embedded_redis()  # its own server: its command counts are this test's
        s = fast(
            Settings(redis_url=server.url, prefix="tq", shards=2),
            max_parallel_runs=1,
            lease_ms=4000,  # one periodic read a second
        )
        async with worker_running(s), Client.connect(settings=s) as client:
            ids = [new_id() for _ in range(60)]
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    client.send(cmd.StartRun(run_id=r, scenario="synthetic", args={"items": 1}))
                    for r in ids
                )
            )
            for run_id in ids:
                assert (await client.wait(run_id, timeout=60)).state == "succeeded"
            elapsed = time.monotonic() - t0
            reads = (await client.redis.info("commandstats"))["cmdstat_zrange"]["calls"]
        # A read is one runnable_scan.lua per shard: two ZRANGEs (the leases that ended, the
        # waiting runs; the first read, a full one, a third). Reading at each freed slot
        # would be 60 reads.
        assert reads / (2 * s.shards) <= 4 + elapsed / 1.0, (reads, elapsed)

    asyncio.run(body())
