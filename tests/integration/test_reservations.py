"""Reservations of a dead worker's chunk: with the network in several partitions, a chunk
spanning some reserves its elements between prepare and commit. When its worker dies
there, another run's chunk meeting those reservations waits until whoever takes over the
dead worker's lease settles the chunk, instead of counting conflicts and failing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as aredis

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.contracts.events import EffectRecord
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.store.network import NetworkStore
from runstream_worker.chunk_protocol import ChunkProtocol, chunk_token

from .support import (
    assert_contiguous,
    chunk_ranges,
    connect,
    fast,
    history,
    prepare_chunk_under_lease,
    until,
    worker_running,
)

PARTITIONS = 4
# Two runs writing the same nodes, spread over namespaces (so over partitions).
SHARED = {"namespace": "shared", "spread": 3, "edges_per_item": 0}


async def _dead_worker_between_prepare_and_commit(
    r: aredis.Redis,
    s: Settings,
    run_id: str,
    args: dict[str, Any],
    partitions: int,
    last: bool = False,
) -> ev.ChunkPrepared:
    """A run whose worker took its lease, recorded its first chunk (all its items), prepared
    it on the first ``partitions`` of the partitions it spans (reserving its elements
    there) and died: its lease runs out ``s.lease_ms`` from now."""
    keys = Keys.of(s)
    network = NetworkStore(r, keys)
    prepared, _ = await prepare_chunk_under_lease(
        r, s, keys, run_id, args, None, "dead-worker", lease_ms=s.lease_ms
    )
    effects = prepared.effects
    parts = network.partitions_of(effects)
    assert 0 < partitions <= len(parts)
    # ``last``: prepared on its last partitions only (what a chunk sees whose worker died
    # after voiding its first ones), so another chunk meets it after its own first ones.
    parts = parts[-partitions:] if last else parts
    outcome = await network.prepare_across(
        parts[:partitions],
        chunk_token(run_id, prepared.chunk),
        run_id,
        prepared.first_effect,
        effects,
        (),
    )
    assert outcome == ("prepared", "")
    return prepared


@pytest.mark.parametrize("died", ["after preparing all", "while preparing"])
def test_a_run_meeting_a_dead_workers_reservations_waits_and_succeeds(
    settings: Settings, died: str
) -> None:
    """One worker with one run slot, so that the waiting run holds the only slot: the
    dead worker's run is settled by the waiter's worker taking over its lease. Before,
    the waiting run met 5 conflicts in a row within milliseconds and failed."""

    async def body() -> None:
        s = fast(settings, network_partitions=PARTITIONS, max_parallel_runs=1, lease_ms=1500)
        keys = Keys.of(s)
        dead_run = new_id()
        dead_args = {**SHARED, "items": 12}
        async with connect(s) as r, Client.connect(settings=s) as client:
            span = len(
                NetworkStore(r, keys).partitions_of_elements(
                    f"n:shared:{i % 3}:{i}" for i in range(12)
                )
            )
            prepared = await _dead_worker_between_prepare_and_commit(
                r, s, dead_run, dead_args, span if died == "after preparing all" else span - 1
            )
            reserved = await client.network.reservations()
            assert reserved and set(reserved.values()) == {chunk_token(dead_run, prepared.chunk)}
            async with worker_running(s):
                innocent = await client.start("synthetic", {**SHARED, "items": 30})
                summary = await client.wait(innocent, timeout=30, poll=0.05)
                assert summary.state == "succeeded", summary
                dead = await client.wait(dead_run, timeout=30, poll=0.05)
                assert dead.state == "succeeded", dead
            assert await client.network.reservations() == {}
            events = await history(r, keys, innocent)
            assert_contiguous(chunk_ranges(events), 30)
            dead_events = await history(r, keys, dead_run)
            outcome = next(
                e
                for e in dead_events
                if isinstance(e, ev.ItemsProcessed | ev.ChunkVoided) and e.chunk == prepared.chunk
            )
            # All partitions prepared: the commit is rolled forward; else voided.
            expected = ev.ItemsProcessed if died == "after preparing all" else ev.ChunkVoided
            assert isinstance(outcome, expected), outcome
            # The network holds, for each node, what the run that wrote it last wrote.
            values = await client.network.elements()
            assert len([e for e in values if e.startswith("n:shared:")]) == 30

    asyncio.run(body())


def test_a_reservation_never_settled_ends_the_wait_as_a_conflict(settings: Settings) -> None:
    """The wait is bounded: a holder no one settles (here: no run behind its token)
    is answered "reserved" once the wait is over, nothing written where it was met."""

    async def body() -> None:
        s = msgspec.structs.replace(settings, network_partitions=PARTITIONS)
        keys = Keys.of(s)
        async with connect(s) as r:
            network = NetworkStore(r, keys)
            elements = [f"n:ns{i}:x" for i in range(40)]
            by_part = {keys.partition_of(e): e for e in elements}
            first, second = (by_part[p] for p in sorted(by_part)[:2])
            # A chunk reserved both and was never settled.
            theirs = [EffectRecord(e, "", "{}", "") for e in (first, second)]
            prepared = await network.prepare_across(
                network.partitions_of(theirs), "stuck:1", "stuck", 0, theirs, ()
            )
            assert prepared == ("prepared", "")
            settled: list[str] = []

            async def settle(token: str) -> None:
                settled.append(token)

            async def unused(*_args: Any, **_kwargs: Any) -> Any:
                raise AssertionError("not called by write_waiting")

            protocol = ChunkProtocol(
                network, unused, unused, unused, reservation_wait_s=0.3, settle=settle
            )
            ours = [EffectRecord(e, "", "{}", "") for e in (first, second)]
            event = ev.ChunkPrepared(
                at=0.0, chunk=1, items_from=0, items_to=1, first_effect=1, effects=ours
            )
            started = time.monotonic()
            outcome = await protocol.write_waiting("mine:1", "mine", event)
            assert outcome[0] == "reserved"
            assert 0.3 <= time.monotonic() - started < 5
            assert set(settled) == {"stuck:1"} and len(settled) >= 3  # asked at each try
            assert await network.elements() == {}

    asyncio.run(body())


def test_a_run_waiting_for_a_reservation_stops_without_waiting_it_out(
    settings: Settings,
) -> None:
    """A stop sent while a run's chunk waits on a reservation no one settles yet (its
    holder's lease is still live) takes effect within about a second, not at the end of
    the wait (two leases plus 5 s: 15 s here); the run's own reservations are released."""

    async def body() -> None:
        s = fast(settings, network_partitions=PARTITIONS, lease_ms=5000)
        keys = Keys.of(s)
        dead_run = new_id()
        async with connect(s) as r, Client.connect(settings=s) as client:
            # The holder reserves only the last partition both runs write: the waiting run
            # has reserved its first one when it meets the holder.
            prepared = await _dead_worker_between_prepare_and_commit(
                r, s, dead_run, {**SHARED, "items": 12}, 1, last=True
            )
            holder = chunk_token(dead_run, prepared.chunk)
            # The holder's worker is merely slow: its lease lasts the whole test.
            await r.set(keys.lease(dead_run), "dead-worker", px=60_000)
            async with worker_running(s):
                waiting = await client.start("synthetic", {**SHARED, "items": 30})

                async def waits() -> bool:
                    events = await history(r, keys, waiting)
                    return any(isinstance(e, ev.ChunkPrepared) for e in events)

                await until(waits, "the run's chunk to be recorded and wait")

                async def holds_some() -> bool:
                    return len(set((await client.network.reservations()).values())) == 2

                await until(holds_some, "the waiting run to reserve its first partition")
                await asyncio.sleep(1.0)  # well into the wait (its backoff at its longest)
                sent = time.monotonic()
                outcome = await client.execute(cmd.StopRun(run_id=waiting), timeout=10)
                assert isinstance(outcome.event, ev.RunStopped), outcome.reason
                summary = await client.wait(waiting, timeout=10, poll=0.05)
                assert summary.state == "stopped"

                async def voided() -> bool:
                    return isinstance((await history(r, keys, waiting))[-1], ev.ChunkVoided)

                await until(voided, "the waiting chunk to be voided", timeout=20)
                assert time.monotonic() - sent < 5
                assert set((await client.network.reservations()).values()) == {holder}

    asyncio.run(body())
