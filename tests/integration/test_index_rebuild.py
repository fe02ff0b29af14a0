"""The run index is a read model: dropped and rebuilt from events, it is the same."""

from __future__ import annotations

import asyncio

import msgspec

from runstream.client import Client
from runstream.contracts.commands import RevertRun, StartRun, StopRun
from runstream.domain.run import Run
from runstream.ids import new_id
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


T0 = 1_790_000_000.0


def _run_with_chunks(chunks: int, log: bool) -> Run:
    """A succeeded run of ``chunks`` confirmed chunks (two events each), a log line each."""
    run_id = new_id()
    run = Run.blank(run_id)
    run.start(
        StartRun(run_id=run_id, scenario="synthetic", args={"items": chunks}),
        T0,
        scenario_version="1",
        args={"items": chunks},
    )
    run.begin(T0, "w")
    for c in range(chunks):
        lines = [f"chunk {c}"] if log else []
        run.prepare_chunk(
            T0 + c, items_to=c + 1, effects=[], notifications=[], log=lines, results={}
        )
        run.confirm_chunk(T0 + c)
    run.succeed(T0 + chunks)
    return run


def test_a_history_longer_than_a_read_page_is_rebuilt_whole(settings: Settings) -> None:
    # The rebuild reads index.HISTORY_PAGE events per run at once, then pages through the
    # rest: a run's state and log come from all of them.
    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            long = _run_with_chunks(index.HISTORY_PAGE * 2, log=True)
            short = _run_with_chunks(1, log=False)
            for run in (long, short):
                assert (await client.store.save(run)).status == "ok"
            assert long.state.version > 2 * index.HISTORY_PAGE
            before = await client.list_runs()
            k = client.keys
            for shard in range(k.shards):
                await client.redis.delete(k.index(shard))

            done = await index.rebuild(client.redis, k, client.store)

            assert done == index.Rebuilt(2, long.state.version + short.state.version)
            assert await client.list_runs() == before
            after = await client.list_runs()
            assert {r.id: r.items_processed for r in after}[long.state.run_id] == 128
            # (store.save alone writes no log: the rebuild makes it from the events)
            lines = (await client.logs(long.state.run_id))[1]
            assert [x.line for x in lines] == [f"chunk {c}" for c in range(128)]

    asyncio.run(body())


def test_a_run_without_outputs_loses_stale_logs_and_results(settings: Settings) -> None:
    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            run = _run_with_chunks(2, log=False)
            run_id = run.state.run_id
            assert (await client.store.save(run)).status == "ok"
            k = client.keys
            await client.redis.xadd(k.logs(run_id), {"t": "1", "l": "stale"})
            await client.redis.hset(k.results(run_id), "stale.txt", "x")
            await client.redis.hset(k.result_meta(run_id), "stale.txt", "{}")
            await client.redis.hset(k.meta(run_id), "log_dropped", 3)

            await index.rebuild(client.redis, k, client.store)

            assert await client.redis.exists(k.logs(run_id), k.results(run_id)) == 0
            assert await client.redis.exists(k.result_meta(run_id)) == 0
            assert await client.redis.hget(k.meta(run_id), "log_dropped") is None
            assert await client.redis.hget(k.meta(run_id), "v") is not None

    asyncio.run(body())
