"""Issue 12: a worker that loses a run's lease (it was paused past it, or someone took the
run) abandons the run's work at once, frees its slot and writes nothing more for the run;
the lease holder resolves pending chunks, no one else."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aredis

from runstream.client import Client
from runstream.connect import open_blocking_redis
from runstream.domain.run import Run
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore
from runstream_worker.executor import Executor
from runstream_worker.lease import CANCEL_WAIT_S, Leases, LostLease

from .support import connect, fast, prepare_chunk_under_lease, run_id_on, until, worker_running


def test_a_lost_lease_abandons_the_run_at_once_and_frees_its_slot(settings: Settings) -> None:
    async def body() -> None:
        # One run slot: a run whose lost lease went unnoticed would hold it for ever.
        s = fast(settings, max_parallel_runs=1, lease_ms=1000)
        keys = Keys.of(s)
        async with Client.connect(settings=s) as client, worker_running(s) as worker:
            r = client.redis
            # Its one item takes 30 s: without a renewal check the slot stays taken.
            slow = await client.start("synthetic", {"items": 2, "delay_ms": 30_000})
            await until(lambda: r.get(keys.lease(slow)), "the slow run's lease held")
            version = await r.hget(keys.meta(slow), "v")
            # Someone else holds the lease now (as after this worker was paused past it).
            await r.set(keys.lease(slow), "someone-else", px=60_000)
            stolen = time.monotonic()

            quick = await client.start("synthetic", {"items": 3})
            summary = await client.wait(quick, timeout=10, poll=0.05)
            assert summary.state == "succeeded"
            assert time.monotonic() - stolen < s.lease_ms / 1000 + CANCEL_WAIT_S + 3
            assert slow not in worker.executor._active
            # Nothing more was written for the lost run, nor its lease touched.
            assert await r.hget(keys.meta(slow), "v") == version
            assert await r.get(keys.lease(slow)) == b"someone-else"

    asyncio.run(body())


def test_hold_while_gives_up_on_work_that_swallows_its_cancellation(settings: Settings) -> None:
    """redis-py's send path uses asyncio.wait_for, which on Python 3.11 can swallow a
    cancellation (CPython gh-86296): cancelled work may go on. The holder must not wait
    for it without bound."""

    async def body() -> None:
        s = fast(settings, lease_ms=600)
        keys = Keys.of(s)
        run_id = run_id_on(keys, 0)
        async with connect(s) as r:
            leases = Leases(r, keys, "me", s.lease_ms)
            assert await leases.acquire(run_id)
            cancelled = asyncio.Event()
            released = asyncio.Event()

            async def stubborn() -> None:
                while not released.is_set():
                    try:
                        await asyncio.sleep(0.05)
                    except asyncio.CancelledError:
                        cancelled.set()  # and carries on

            await r.set(keys.lease(run_id), "someone-else", px=60_000)
            started = time.monotonic()
            with pytest.raises(LostLease):
                await leases.hold_while(run_id, stubborn(), released)
            took = time.monotonic() - started
            assert released.is_set()  # what the work left behind sees, and stops on
            assert cancelled.is_set()
            assert took < s.lease_ms / 3000 + CANCEL_WAIT_S + 0.5, took

            # Work that ends on its own returns its result, with the lease renewed meanwhile.
            await r.delete(keys.lease(run_id))
            assert await leases.acquire(run_id)

            async def work() -> str:
                await asyncio.sleep(s.lease_ms * 2 / 1000)
                return "done"

            assert await leases.hold_while(run_id, work()) == "done"
            assert await r.get(keys.lease(run_id)) == b"me"

    asyncio.run(body())


def test_only_the_lease_holder_resolves_a_pending_chunk(settings: Settings) -> None:
    """A worker resumed after a pause may still see a chunk pending that the new holder
    has confirmed (and whose marker it has forgotten): resolving it would mark it void
    and log it voided, though it is applied and recorded."""

    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        run_id = run_id_on(keys, 0)
        async with connect(s) as r:
            run = await _prepared_chunk(r, s, keys, run_id, {"items": 10}, 5)
            token = f"{run_id}:{run.state.pending.chunk if run.state.pending else -1}"
            await r.set(keys.lease(run_id), "new-holder", px=60_000)
            step_reads = open_blocking_redis(s)
            stale = Executor(
                EventStore(r, keys, s),
                NetworkStore(r, keys),
                step_reads,
                s,
                load_registry(),
                "paused-worker",
            )
            try:
                with pytest.raises(LostLease):
                    await stale._resolve_pending(run)
            finally:
                step_reads.close()
            marks = [keys.net_chunk(p, token) for p in range(keys.partitions)]
            assert await r.exists(*marks) == 0, "a stale worker voided it"
            history = await EventStore(r, keys, s).history(run_id)
            assert type(history[-1][1]).__name__ == "ChunkPrepared"

    asyncio.run(body())


async def _prepared_chunk(
    r: aredis.Redis, s: Settings, keys: Keys, run_id: str, args: dict[str, Any], items_to: int
) -> Run:
    """A run with a chunk recorded (phase one) by a worker that then lost its lease."""
    _, run = await prepare_chunk_under_lease(
        r, s, keys, run_id, args, items_to, holder="first-holder"
    )
    return run
