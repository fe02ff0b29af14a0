"""The network spread over several partitions (hash slots), against a real Redis (one
server, or the cluster with ``--redis=cluster``): a chunk touching several partitions is
written by a two-phase commit that is all or nothing, however its worker stops."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import msgspec
import pytest
import redis.asyncio as aredis

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.contracts.events import EffectRecord
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.shards import ShardCountMismatch, ensure_partition_count
from runstream.store.network import Compensation, ElementReserved, NetworkStore

from .support import connect, fast, history, worker_running

PARTITIONS = 4
T = TypeVar("T")
RUN = "run-a"


def _partitioned(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, network_partitions=PARTITIONS)


@contextlib.asynccontextmanager
async def _network(settings: Settings) -> AsyncIterator[tuple[aredis.Redis, Keys, NetworkStore]]:
    """A connection, the key layout and the network store of a partitioned deployment."""
    s = _partitioned(settings)
    keys = Keys.of(s)
    async with connect(s) as r:
        yield r, keys, NetworkStore(r, keys)


def _spread_elements(keys: Keys, count: int) -> list[str]:
    """Nodes in ``count`` different partitions, in ascending partition order."""
    by_part: dict[int, str] = {}
    for i in range(200):
        element = f"n:ns{i}:x"
        by_part.setdefault(keys.partition_of(element), element)
    parts = sorted(by_part)[:count]
    assert len(parts) == count, by_part
    return [by_part[p] for p in parts]


def _effects(elements: list[str], befores: dict[str, str] | None = None) -> list[EffectRecord]:
    befores = befores or {}
    return [EffectRecord(e, "", f'{{"v":{i}}}', befores.get(e, "")) for i, e in enumerate(elements)]


async def _marks(r: aredis.Redis, keys: Keys, token: str) -> list[object]:
    return [await r.get(keys.net_chunk(p, token)) for p in range(keys.partitions)]


def test_a_chunk_over_several_partitions_is_applied_everywhere(settings: Settings) -> None:
    async def body() -> None:
        async with _network(settings) as (_r, keys, net):
            elements = _spread_elements(keys, 3)
            effects = _effects(elements)
            assert len(net.partitions_of(effects, ["hello"])) >= 3
            outcome = await net.apply_chunk("t1", RUN, 7, effects, ["hello"])
            assert outcome == ("ok", "")
            assert await net.elements() == {e: f'{{"v":{i}}}' for i, e in enumerate(elements)}
            assert await net.all_stamps() == {e: f"{RUN}/{7 + i}" for i, e in enumerate(elements)}
            assert [n["message"] for n in await net.outbox()] == ["hello"]
            assert await net.reservations() == {}
            # Applying again is a no-op (idempotent), not a second write or notification.
            assert (await net.apply_chunk("t1", RUN, 7, effects, ["hello"]))[0] in ("ok", "applied")
            assert len(await net.outbox()) == 1
            assert await net.resolve_chunk("t1", RUN, 7, effects, ["hello"]) == "applied"

    asyncio.run(body())


def test_a_conflict_on_a_later_partition_leaves_the_earlier_ones_untouched(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            first, second = _spread_elements(keys, 2)
            await net.put(second, {"theirs": 1}, "operator/1")  # the chunk read it absent
            effects = _effects([first, second])
            assert await net.apply_chunk("t2", RUN, 0, effects, ["note"]) == ("conflict", second)
            assert await net.elements() == {second: '{"theirs":1}'}
            assert await net.all_stamps() == {second: "operator/1"}
            assert await net.outbox() == []
            assert await net.reservations() == {}
            # Voided everywhere it would write: a late writer can't apply it any more.
            parts = net.partitions_of(effects, ["note"])
            marks = await _marks(r, keys, "t2")
            assert [marks[p] for p in parts] == [b"v"] * len(parts)
            assert (await net.apply_chunk("t2", RUN, 0, effects, ["note"]))[0] == "voided"
            assert await net.elements() == {second: '{"theirs":1}'}

    asyncio.run(body())


def test_a_worker_dying_between_prepare_and_commit_is_rolled_forward(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 3)
            effects = _effects(elements)
            parts = net.partitions_of(effects, ())
            assert await net.prepare_across(parts, "t3", RUN, 0, effects, ()) == ("prepared", "")
            # Reserved: nothing else writes them until the chunk is settled.
            assert set(await net.reservations()) == set(elements)
            assert await net.elements() == {}
            with pytest.raises(ElementReserved):
                await net.put(elements[1], {"theirs": 1}, "operator/1")
            # Another chunk meeting them changes nothing and is told whose they are.
            with pytest.raises(ElementReserved) as met:
                await net.apply_chunk("t-other", "run-b", 0, _effects([elements[2]]), ())
            assert (met.value.element, met.value.holder) == (elements[2], "t3")
            assert await r.get(keys.net_chunk(keys.partition_of(elements[2]), "t-other")) is None
            # The worker "dies" here; whoever resumes the run resolves the chunk.
            assert await net.resolve_chunk("t3", RUN, 0, effects, ()) == "applied"
            assert await net.all_stamps() == {e: f"{RUN}/{i}" for i, e in enumerate(elements)}
            assert await net.reservations() == {}
            # The dead worker waking up and committing changes nothing more.
            await net.commit_across(parts, "t3", RUN, 0, effects, ())
            assert await net.resolve_chunk("t3", RUN, 0, effects, ()) == "applied"

    asyncio.run(body())


@pytest.mark.parametrize("holder_ends", ["voided", "committed"])
def test_a_chunk_meeting_a_reservation_keeps_what_it_prepared_and_goes_on_once_it_goes(
    settings: Settings, holder_ends: str
) -> None:
    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 3)
            parts = [keys.partition_of(e) for e in elements]
            ours = _effects(elements)
            theirs = [EffectRecord(e, "", '{"theirs":1}', "") for e in elements[1:]]
            # The holder reserved the middle partition's element (prepared there only, or
            # everywhere it writes) and its worker stopped.
            held = parts[1:] if holder_ends == "committed" else parts[1:2]
            assert (await net.prepare_across(held, "t-h", "run-h", 0, theirs, ()))[0] == "prepared"
            with pytest.raises(ElementReserved) as met:
                await net.apply_chunk("t-w", RUN, 0, ours, ())
            assert (met.value.element, met.value.holder) == (elements[1], "t-h")
            # Prepared below the reservation, untouched from it on: written again later.
            assert [await r.get(keys.net_chunk(p, "t-w")) for p in parts] == [b"p", None, None]
            assert (await net.reservations())[elements[0]] == "t-w"
            settled = await net.resolve_chunk("t-h", "run-h", 0, theirs, ())
            assert settled == ("applied" if holder_ends == "committed" else "voided")
            outcome = await net.apply_chunk("t-w", RUN, 0, ours, ())
            if holder_ends == "voided":
                # The stamps it was computed over still hold: written everywhere.
                assert outcome == ("ok", "")
                assert await net.all_stamps() == {e: f"{RUN}/{i}" for i, e in enumerate(elements)}
            else:
                # The holder changed the element: a conflict, voided everywhere.
                assert outcome == ("conflict", elements[1])
                assert [await r.get(keys.net_chunk(p, "t-w")) for p in parts] == [b"v"] * 3
                assert set((await net.all_stamps()).values()) == {"run-h/0", "run-h/1"}
            assert await net.reservations() == {}

    asyncio.run(body())


def test_a_commit_whose_marks_a_failover_lost_is_finished(settings: Settings) -> None:
    """Replication is asynchronous: a promoted replica may lack a partition's prepare
    while another partition is committed. The commit was decided: resolve finishes it."""

    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 2)
            effects = _effects(elements)
            parts = net.partitions_of(effects, ())
            assert (await net.prepare_across(parts, "t8", RUN, 0, effects, ()))[0] == "prepared"
            head = [e for e in effects if keys.partition_of(e.element) == parts[0]]
            await net.commit_across(parts[:1], "t8", RUN, 0, head, ())
            # The failover: partition 1's master lost its last writes.
            await r.delete(keys.net_chunk(parts[1], "t8"), keys.net_pending(parts[1]))
            assert await net.resolve_chunk("t8", RUN, 0, effects, ()) == "applied"
            assert await net.all_stamps() == {e: f"{RUN}/{i}" for i, e in enumerate(elements)}
            assert await net.reservations() == {}

    asyncio.run(body())


def test_a_worker_dying_during_prepare_is_voided_and_can_never_commit(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 3)
            effects = _effects(elements)
            parts = net.partitions_of(effects, ())
            # Prepared on its first partition only, then the worker stops.
            head = [e for e in effects if keys.partition_of(e.element) == parts[0]]
            assert (await net.prepare_across(parts[:1], "t4", RUN, 0, head, ()))[0] == "prepared"
            assert await net.resolve_chunk("t4", RUN, 0, effects, ()) == "voided"
            assert await net.reservations() == {}
            # The worker resumes: its prepare is refused, nothing is ever written.
            assert (await net.prepare_across(parts, "t4", RUN, 0, effects, ()))[0] == "voided"
            assert (await net.apply_chunk("t4", RUN, 0, effects, ()))[0] == "voided"
            assert await net.elements() == {}
            assert [m for m in await _marks(r, keys, "t4") if m is not None] == [b"v"] * len(parts)
            await net.put(elements[0], {"theirs": 1}, "operator/1")  # released

    asyncio.run(body())


async def _after(delay: float, work: Awaitable[T]) -> T:
    await asyncio.sleep(delay)
    return await work


def test_a_coordinator_and_a_resolver_racing_agree_on_one_outcome(settings: Settings) -> None:
    """However the two interleave, the chunk is on every partition or on none, and what
    the resolver answers is what the network holds."""

    async def body() -> None:
        s = _partitioned(settings)
        keys = Keys.of(s)
        rng = random.Random(7)
        async with connect(s) as r:
            net = NetworkStore(r, keys)
            elements = _spread_elements(keys, 3)
            outcomes = set()
            for n in range(40):
                token = f"race-{n}"
                stamps = await net.all_stamps()
                effects = _effects(elements, stamps)

                applied, resolved = await asyncio.gather(
                    _after(rng.random() / 500, net.apply_chunk(token, RUN, n * 10, effects, ())),
                    _after(rng.random() / 500, net.resolve_chunk(token, RUN, n * 10, effects, ())),
                )
                outcomes.add(resolved)
                now = await net.all_stamps()
                written = [now.get(e) == f"{RUN}/{n * 10 + i}" for i, e in enumerate(elements)]
                assert all(written) or not any(written), (n, applied, resolved, now)
                assert all(written) == (resolved == "applied"), (n, applied, resolved)
                assert (applied[0] in ("ok", "applied")) == (resolved == "applied"), applied
                assert await net.reservations() == {}
            assert outcomes == {"applied", "voided"}, "the race never went both ways"

    asyncio.run(body())


def test_a_revert_step_waits_for_a_reservation_and_is_exact_over_partitions(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 3)
            assert (await net.apply_chunk("t6", RUN, 0, _effects(elements), ()))[0] == "ok"
            items = [
                Compensation(i, e, f"{RUN}/{i}", "", "")
                for i, e in reversed(list(enumerate(elements)))
            ]
            # Another chunk reserves two of them, on the partitions the step reaches last.
            parts = [keys.partition_of(elements[0]), keys.partition_of(elements[1])]
            theirs = [
                EffectRecord(elements[0], "", '{"v":9}', f"{RUN}/0"),
                EffectRecord(elements[1], "", '{"v":9}', f"{RUN}/1"),
            ]
            assert (await net.prepare_across(parts, "t7", "run-b", 0, theirs, ()))[0] == "prepared"
            with pytest.raises(ElementReserved):
                await net.compensate(items, False, "step-1")
            # The free partition was compensated; the reserved ones were left alone.
            assert set(await net.elements()) == set(elements[:2])
            assert await net.resolve_chunk("t7", "run-b", 0, theirs, ()) == "applied"
            # Done again: the partition already compensated keeps its outcome (not done
            # twice), the others now see run-b's writes as conflicts.
            letters = "".join(d.letter for d in await net.compensate(items, False, "step-1"))
            assert letters == "cxx"
            assert await net.elements() == {e: '{"v":9}' for e in elements[:2]}
            await net.forget_revert_step("step-1", net.partitions_of_elements(elements))
            assert not [k async for k in r.scan_iter(match="*revert:step-1")]

    asyncio.run(body())


def test_real_runs_spread_over_partitions_are_applied_and_reverted_exactly(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(_partitioned(settings), chunk_items=7)
        async with worker_running(s), Client.connect(settings=s) as client:
            args = {"items": 40, "edges_per_item": 2, "spread": 5, "notify_every": 10}
            run_id = await client.start("synthetic", args)
            summary = await client.wait(run_id, timeout=30, poll=0.05)
            assert summary.state == "succeeded"
            elements = await client.network.elements()
            mine = [e for e in elements if e.startswith((f"n:{run_id}:", f"e:{run_id}:"))]
            assert len([e for e in mine if e.startswith("n:")]) == 40
            assert len({client.keys.partition_of(e) for e in mine}) > 1
            events = await history(client.redis, client.keys, run_id)
            prepared = [e for e in events if isinstance(e, ev.ChunkPrepared)]
            assert any(
                len(client.network.partitions_of(p.effects, p.notifications)) > 1 for p in prepared
            )
            assert len(await client.outbox()) == 4
            outcome = await client.execute(cmd.RevertRun(run_id=run_id), timeout=30)
            assert isinstance(outcome.event, ev.RunReverted), outcome.reason
            assert (outcome.event.compensated, outcome.event.skipped) == (
                summary.effects["applied"],
                0,
            )
            left = await client.network.elements()
            assert not [e for e in left if e.startswith((f"n:{run_id}:", f"e:{run_id}:"))]
            assert await client.network.reservations() == {}
            stats = await client.network_stats()
            assert stats["notifications"] == 4

    asyncio.run(body())


def test_the_partition_count_is_fixed_for_the_deployment(settings: Settings) -> None:
    async def body() -> None:
        async with connect(settings) as r:
            one = Keys(settings.prefix, 2, 1)
            await r.hset(one.net_values(0), "n:a", "{}")
            with pytest.raises(ShardCountMismatch, match="RUNSTREAM_NETWORK_PARTITIONS=1"):
                await ensure_partition_count(r, Keys(settings.prefix, 2, PARTITIONS))
            assert await ensure_partition_count(r, one) == 1
            with pytest.raises(ShardCountMismatch, match="has 1 network partitions"):
                await ensure_partition_count(r, Keys(settings.prefix, 2, PARTITIONS))

    asyncio.run(body())


def test_a_bad_partition_count_is_refused_by_name() -> None:
    from runstream.settings import load_settings

    with pytest.raises(ValueError, match="RUNSTREAM_NETWORK_PARTITIONS"):
        load_settings({"RUNSTREAM_NETWORK_PARTITIONS": "-1"})
    with pytest.raises(ValueError, match="RUNSTREAM_NETWORK_PARTITIONS"):
        load_settings({"RUNSTREAM_NETWORK_PARTITIONS": "5000"})


def test_an_applied_chunks_markers_are_removed_in_the_background(settings: Settings) -> None:
    """The run goes on without waiting for its chunk's markers (or a revert step's) to go
    (forget_*_soon); they go on every partition written, and a delete that fails is only
    logged."""

    async def body() -> None:
        async with _network(settings) as (r, keys, net):
            elements = _spread_elements(keys, 3)
            effects = _effects(elements)
            assert await net.apply_chunk("t-bg", RUN, 0, effects, ()) == ("ok", "")
            assert [m for m in await _marks(r, keys, "t-bg") if m is not None] == [b"a"] * 3
            net.forget_chunk_soon("t-bg", effects, ())
            assert await net.forgotten(timeout=5)
            assert await _marks(r, keys, "t-bg") == [None] * PARTITIONS
            # A revert step's marks, the same way.
            items = [Compensation(i, e, f"{RUN}/{i}", "", "") for i, e in enumerate(elements)]
            await net.compensate(items, False, "step-bg")
            assert [k async for k in r.scan_iter(match="*revert:step-bg")]
            net.forget_revert_step_soon("step-bg", net.partitions_of_elements(elements))
            assert await net.forgotten(timeout=5)
            assert not [k async for k in r.scan_iter(match="*revert:step-bg")]
            # Redis gone: the delete fails in its task, the caller is not disturbed.
            broken = NetworkStore(aredis.Redis(port=1, socket_connect_timeout=0.2), keys)
            broken.forget_chunk_soon("t-gone", effects, ())
            assert await broken.forgotten(timeout=5)

    asyncio.run(body())
