"""A revert that skipped conflicts can be finished: two real runs write the same elements,
driven by an in-process worker against a real Redis."""

from __future__ import annotations

import asyncio

from runstream import revert
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.settings import Settings
from runstream.store.network import NetworkStore

from .support import fast, history, worker_running


async def _run(client: Client, items: int, namespace: str) -> str:
    run_id = await client.start(
        "synthetic", {"items": items, "edges_per_item": 0, "namespace": namespace}
    )
    assert (await client.wait(run_id, timeout=20, poll=0.05)).state == "succeeded"
    return run_id


async def _revert(client: Client, run_id: str, force: bool = False) -> ev.RunReverted:
    outcome = await client.execute(cmd.RevertRun(run_id=run_id, force=force), timeout=20)
    assert not outcome.rejected, outcome.reason
    assert isinstance(outcome.event, ev.RunReverted)
    return outcome.event


async def _skipped(client: Client, run_id: str) -> list[ev.SkippedEffect]:
    """The conflicts of the run's latest revert pass."""
    events = await history(client.redis, client.keys, run_id)
    last_start = max(i for i, e in enumerate(events) if isinstance(e, ev.RevertStarted))
    return [
        x for e in events[last_start:] if isinstance(e, ev.EffectsCompensated) for x in e.skipped
    ]


def test_a_revert_skipped_for_another_run_is_finished_once_that_run_is_reverted(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            first = await _run(client, 5, "shared")
            second = await _run(client, 3, "shared")  # overwrites nodes 0..2 of the first

            done = await _revert(client, first)

            assert (done.compensated, done.skipped) == (2, 3)
            skipped = await _skipped(client, first)
            assert {x.element for x in skipped} == {f"n:shared:{i}" for i in range(3)}
            assert {x.reason for x in skipped} == {
                f"changed by run {second} since this run wrote it"
            }
            summary = await client.get(first)
            assert (summary.state, summary.effects_left) == ("reverted", 3)
            # Its effects are still there: a plain delete is refused like any such run's.
            refused = await client.execute(cmd.DeleteRun(run_id=first), timeout=20)
            assert refused.rejected
            assert "3 network effects" in refused.reason and "--keep-effects" in refused.reason

            # The dry run of a retry: only the skipped effects, still held by the second run.
            network_store = NetworkStore(client.redis, client.keys)
            stored = (await client.store.load(first)).state
            plan = await revert.plan(client.store, network_store, stored, force=False)
            assert (plan.compensate, plan.already_compensated) == (0, 0)
            assert sorted(c.effect_no for c in plan.conflicts) == [1, 2, 3]
            assert {c.reason for c in plan.conflicts} == {
                f"changed by run {second} since this run wrote it"
            }
            # Retried while the second run still holds the elements: nothing changes.
            again = await _revert(client, first)
            assert (again.compensated, again.skipped) == (2, 3)

            await _revert(client, second)  # gives the elements back to the first run
            stored = (await client.store.load(first)).state
            plan = await revert.plan(client.store, network_store, stored, force=False)
            assert (plan.compensate, plan.conflicts) == (3, [])
            finished = await _revert(client, first)

            assert (finished.compensated, finished.skipped) == (5, 0)
            assert (await client.get(first)).effects_left == 0
            network = await NetworkStore(client.redis, client.keys).export()
            assert network == {"nodes": [], "edges": []}
            deleted = await client.execute(cmd.DeleteRun(run_id=first), timeout=20)
            assert not deleted.rejected, deleted.reason

    asyncio.run(body())


def test_a_revert_skipped_for_a_change_outside_runstream_is_finished_with_force(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await _run(client, 3, "edited")
            network = NetworkStore(client.redis, client.keys)
            await network.put("n:edited:1", {"by": "hand"}, "operator/edit-1")

            done = await _revert(client, run_id)

            assert (done.compensated, done.skipped) == (2, 1)
            [conflict] = await _skipped(client, run_id)
            assert (conflict.element, conflict.reason) == (
                "n:edited:1",
                "changed outside runstream since this run wrote it",
            )
            forced = await _revert(client, run_id, force=True)
            assert (forced.compensated, forced.skipped) == (3, 0)
            assert await network.export() == {"nodes": [], "edges": []}
            summary = await client.get(run_id)
            assert (summary.state, summary.effects_left) == ("reverted", 0)
            refused = await client.execute(cmd.RevertRun(run_id=run_id), timeout=20)
            assert refused.rejected and refused.reason == "run is already reverted"

    asyncio.run(body())


def test_delete_with_revert_retries_the_skipped_effects_first(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            first = await _run(client, 2, "both")
            second = await _run(client, 1, "both")
            assert (await _revert(client, first)).skipped == 1
            await _revert(client, second)

            outcome = await client.execute(cmd.DeleteRun(run_id=first, mode="revert"), timeout=20)

            assert isinstance(outcome.event, ev.RunDeleted), outcome
            assert outcome.event.effects_left == 0
            network = await NetworkStore(client.redis, client.keys).export()
            assert network == {"nodes": [], "edges": []}

    asyncio.run(body())
