"""The worker, run in-process against a real Redis, driven through runstream.client.

Each test runs ``Worker(settings).run()`` as a task of its own event loop and stops it by
setting ``worker.stopping``; it talks to the worker only through Redis.
"""

from __future__ import annotations

import asyncio

import pytest

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.ids import new_id
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import replies

from .support import (
    assert_contiguous,
    chunk_ranges,
    fast,
    feed_events,
    history,
    pending_count,
    run_id_on,
    until,
    worker_running,
)


def _events_of(events: list[ev.Event], command_id: str) -> list[ev.Event]:
    return [e for e in events if e.command_id == command_id]


async def _run_keys_absent(client: Client, run_id: str) -> None:
    """Nothing of the run exists: no summary, no history, no meta, not runnable."""
    k = client.keys
    assert await client.find(run_id) is None
    assert await client.redis.exists(*k.run_keys(run_id)) == 0
    assert await client.redis.zscore(k.runnable(k.shard_of(run_id)), run_id) is None


def test_start_runs_to_success_with_the_right_counts(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start(
                "synthetic", {"items": 50, "edges_per_item": 2, "notify_every": 10}
            )
            summary = await client.wait(run_id, timeout=20, poll=0.05)
            assert summary.state == "succeeded", summary
            assert summary.items_processed == 50
            assert summary.items_total == 50
            # One node per item, two edges for every item but the first.
            assert summary.effects == {
                "applied": 50 + 49 * 2,
                "compensated": 0,
                "skipped": 0,
                "irreversible": 5,
            }
            events = await history(client.redis, client.keys, run_id)
            assert isinstance(events[0], ev.RunQueued)
            assert isinstance(events[1], ev.RunStarted)
            assert isinstance(events[-1], ev.RunSucceeded)
            assert_contiguous(chunk_ranges(events), 50)
            values = await client.network.elements()
            nodes = [v for v in values if v.startswith(f"n:{run_id}:")]
            assert len(nodes) == 50
            notes = replies.entries(await client.redis.xrange(client.keys.outbox))
            assert sum(1 for _, f in notes if f[Fields.RUN_ID] == run_id.encode()) == 5

    asyncio.run(body())


def test_stop_mid_run_then_continue_processes_every_item_once(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        items = 60
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": items, "delay_ms": 20})

            async def progressed() -> bool:
                found = await client.find(run_id)
                return found is not None and found.items_processed > 0

            await until(progressed, "the run to process some items")
            stopped = await client.execute(cmd.StopRun(run_id=run_id, reason="t"), timeout=10)
            assert not stopped.rejected, stopped.reason
            assert isinstance(stopped.event, ev.RunStopped)

            async def settled() -> bool:
                run = await client.store.load(run_id)
                lease = await client.redis.exists(client.keys.lease(run_id))
                return run.state.state == "stopped" and run.state.pending is None and not lease

            await until(settled, "the stopped run's chunk in hand to be resolved")
            at_stop = (await client.get(run_id)).items_processed
            assert 0 < at_stop < items

            resumed = await client.execute(cmd.ContinueRun(run_id=run_id), timeout=10)
            assert not resumed.rejected, resumed.reason
            summary = await client.wait(run_id, timeout=20, poll=0.05)
            assert summary.state == "succeeded", summary
            assert summary.items_processed == items
            assert summary.effects["applied"] == items + (items - 1) * 2

            events = await history(client.redis, client.keys, run_id)
            assert_contiguous(chunk_ranges(events), items)
            kinds = [type(e).__name__ for e in events]
            stop_at, continue_at = kinds.index("RunStopped"), kinds.index("RunContinued")
            assert "ChunkPrepared" not in kinds[stop_at:continue_at], kinds

    asyncio.run(body())


def test_a_redelivered_command_is_applied_once(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        run_id = new_id()
        start = cmd.StartRun(run_id=run_id, scenario="synthetic", args={"items": 5})
        data = cmd.encode_command(start)
        stream = keys.commands(keys.shard_of(run_id))
        async with worker_running(s), Client.connect(settings=s) as client:
            r = client.redis
            await r.xadd(stream, {Fields.COMMAND: data})
            await r.xadd(stream, {Fields.COMMAND: data})
            summary = await client.wait(run_id, timeout=15, poll=0.05)
            assert summary.state == "succeeded"
            version = summary.version

            # And once more after it finished: acknowledged, nothing recorded.
            again = replies.text(await r.xadd(stream, {Fields.COMMAND: data}))

            async def acked() -> bool:
                groups = await r.xinfo_groups(stream)
                last = next(g for g in groups if g["name"] == keys.group.encode())
                delivered = last["last-delivered-id"].decode()
                return delivered == again and await pending_count(r, stream, keys.group) == 0

            await until(acked, "the third copy to be read and acked")
            events = await history(r, keys, run_id)
            assert len(_events_of(events, start.command_id)) == 1, events
            assert isinstance(_events_of(events, start.command_id)[0], ev.RunQueued)
            fed = [e for _, e in await feed_events(r, keys, run_id)]
            assert len(_events_of(fed, start.command_id)) == 1, fed
            assert not any(isinstance(e, ev.CommandRejected) for e in fed)
            assert (await client.get(run_id)).version == version

    asyncio.run(body())


@pytest.mark.parametrize(
    "make",
    [
        lambda r: cmd.StopRun(run_id=r),
        lambda r: cmd.ContinueRun(run_id=r),
        lambda r: cmd.CancelRun(run_id=r),
        lambda r: cmd.RevertRun(run_id=r),
        lambda r: cmd.DeleteRun(run_id=r, mode="keep_effects"),
    ],
    ids=["stop", "continue", "cancel", "revert", "delete"],
)
def test_a_command_for_a_run_that_does_not_exist_is_rejected_and_creates_nothing(
    settings: Settings, make: object
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = new_id()
            command = make(run_id)  # type: ignore[operator]
            outcome = await client.execute(command, wait=False, timeout=10)
            assert outcome.rejected
            assert run_id in outcome.reason
            assert "does not exist" in outcome.reason
            fed = await feed_events(client.redis, client.keys, run_id)
            assert len(fed) == 1
            version, event = fed[0]
            assert version == 0
            assert isinstance(event, ev.CommandRejected)
            assert event.command_type == type(command).__name__
            await _run_keys_absent(client, run_id)
            stream = client.keys.commands(client.keys.shard_of(run_id))
            assert await pending_count(client.redis, stream, client.keys.group) == 0

    asyncio.run(body())


@pytest.mark.parametrize(
    ("scenario", "args", "reason"),
    [
        ("no-such-scenario", {}, "unknown scenario 'no-such-scenario'"),
        ("synthetic", {"items": -1}, "bad arguments for scenario 'synthetic'"),
        ("synthetic", {"items": "many"}, "bad arguments for scenario 'synthetic'"),
        ("synthetic", {"bogus": 1}, "bogus"),
        ("graph-import", {"dataset": "not-a-dataset"}, "bad arguments"),
    ],
    ids=["unknown-scenario", "negative-items", "non-numeric", "unknown-arg", "bad-dataset"],
)
def test_a_start_with_bad_input_is_rejected_and_creates_nothing(
    settings: Settings, scenario: str, args: dict[str, object], reason: str
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = new_id()
            outcome = await client.execute(
                cmd.StartRun(run_id=run_id, scenario=scenario, args=args), timeout=10
            )
            assert outcome.rejected
            assert reason in outcome.reason, outcome.reason
            await _run_keys_absent(client, run_id)
            assert await client.list_runs() == []
            stream = client.keys.commands(client.keys.shard_of(run_id))
            assert await pending_count(client.redis, stream, client.keys.group) == 0

    asyncio.run(body())


def test_commands_published_before_any_worker_existed_are_delivered(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        async with Client.connect(settings=s) as client:
            # One run per shard, published while no group and no worker exist.
            run_ids = [run_id_on(keys, shard) for shard in range(s.shards)]
            for run_id in run_ids:
                await client.start_nowait("synthetic", {"items": 3}, run_id=run_id)
            for shard in range(s.shards):
                assert await client.redis.xinfo_groups(keys.commands(shard)) == []
            async with worker_running(s):
                for run_id in run_ids:
                    summary = await client.wait(run_id, timeout=15, poll=0.05)
                    assert summary.state == "succeeded"
                    assert summary.items_processed == 3

    asyncio.run(body())


@pytest.mark.parametrize(
    "make",
    [
        lambda r: cmd.StopRun(run_id=r),
        lambda r: cmd.StartRun(run_id=r, scenario="no-such-scenario"),
        lambda r: cmd.StartRun(run_id=r, scenario="synthetic", args={"items": -1}),
    ],
    ids=["stop-unknown-run", "start-unknown-scenario", "start-bad-args"],
)
def test_a_redelivered_rejected_command_is_reported_once(settings: Settings, make: object) -> None:
    """Re-publishing changes nothing, rejections included: the same command_id yields one
    CommandRejected, however often the message arrives."""

    async def body() -> None:
        s = fast(settings)
        keys = Keys.of(s)
        run_id = new_id()
        command = make(run_id)  # type: ignore[operator]
        data = cmd.encode_command(command)
        stream = keys.commands(keys.shard_of(run_id))
        async with worker_running(s), Client.connect(settings=s) as client:
            r = client.redis
            first = await client.execute(command, wait=False, timeout=10)
            assert first.rejected
            last = replies.text(await r.xadd(stream, {Fields.COMMAND: data}))

            async def acked() -> bool:
                groups = await r.xinfo_groups(stream)
                group = next(g for g in groups if g["name"] == keys.group.encode())
                return bool(
                    replies.text(group["last-delivered-id"]) == last and group["pending"] == 0
                )

            await until(acked, "the copy to be read and acked")
            fed = [e for _, e in await feed_events(r, keys, run_id)]
            assert len(_events_of(fed, command.command_id)) == 1, fed
            await _run_keys_absent(client, run_id)

    asyncio.run(body())


def test_the_worker_hands_one_store_network_and_key_layout_to_its_parts(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with worker_running(fast(settings)) as worker:
            assert worker.processor.store is worker.store
            assert worker.executor.store is worker.store
            assert worker.executor.network is worker.network
            assert worker.store.redis is worker.client and worker.network.redis is worker.client
            assert worker.store.keys is worker.keys and worker.network.keys is worker.keys
            assert worker.executor.keys is worker.keys and worker.processor.keys is worker.keys

    asyncio.run(body())
