"""The run's execution lease, taken with the executor's first load and given back with its
last append: the same rules as Leases.acquire / release, in the event store's scripts."""

from __future__ import annotations

import asyncio
import time

from runstream.contracts import commands as cmd
from runstream.domain.run import Run
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.store.events import EventStore

from .support import connect, fast, run_id_on


def _started(run_id: str) -> tuple[Run, cmd.StartRun]:
    scenario = load_registry().get("synthetic")
    run = Run.blank(run_id)
    start = cmd.StartRun(run_id=run_id, scenario="synthetic", args={"items": 2})
    run.start(start, time.time(), scenario_version=scenario.version, args={"items": 2})
    return run, start


def test_load_under_lease_takes_a_free_lease_and_leaves_a_held_one_alone(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings, lease_ms=5000)
        keys = Keys.of(s)
        async with connect(s) as r:
            store = EventStore(r, keys, s)
            run_id = run_id_on(keys, 1)
            run, start = _started(run_id)
            assert (await store.save(run, command_id=start.command_id)).status == "ok"

            loaded = await store.load_under_lease(run_id, "me", s.lease_ms)
            assert loaded is not None
            assert loaded.state == (await store.load(run_id)).state
            assert await r.get(keys.lease(run_id)) == b"me"
            assert 0 < await r.pttl(keys.lease(run_id)) <= s.lease_ms

            # Held (by us or anyone): nothing loaded, the holder's lease untouched.
            assert await store.load_under_lease(run_id, "other", s.lease_ms) is None
            assert await store.load_under_lease(run_id, "me", s.lease_ms) is None
            assert await r.get(keys.lease(run_id)) == b"me"

            # A deleted run is no one's to drive: loaded as deleted, no lease taken.
            await r.delete(keys.lease(run_id))
            ended = await store.load(run_id)
            ended.fail(time.time(), "ended before it was deleted")
            ended.delete(cmd.DeleteRun(run_id=run_id, mode="keep_effects"), time.time())
            assert (await store.save(ended)).status == "ok"
            gone = await store.load_under_lease(run_id, "me", s.lease_ms)
            assert gone is not None and gone.state.state == "deleted"
            assert await r.exists(keys.lease(run_id)) == 0

    asyncio.run(body())


def test_an_append_under_the_lease_renews_it_or_gives_it_back(settings: Settings) -> None:
    async def body() -> None:
        s = fast(settings, lease_ms=5000)
        keys = Keys.of(s)
        async with connect(s) as r:
            store = EventStore(r, keys, s)
            run_id = run_id_on(keys, 0)
            run, start = _started(run_id)
            assert (await store.save(run, command_id=start.command_id)).status == "ok"
            assert await store.load_under_lease(run_id, "me", 1000) is not None

            run.begin(time.time(), "me")
            assert (await store.save(run, lease_owner="me")).status == "ok"
            assert await r.get(keys.lease(run_id)) == b"me"
            assert await r.pttl(keys.lease(run_id)) > 1000  # renewed to lease_ms

            # Not the holder: refused, and the lease is neither renewed nor given back.
            run.fail(time.time(), "given up")
            refused = await store.save(run, lease_owner="other", release_lease=True)
            assert refused.status == "lease"
            assert await r.get(keys.lease(run_id)) == b"me"

            run = await store.load(run_id)
            run.fail(time.time(), "given up")
            assert (await store.save(run, lease_owner="me", release_lease=True)).status == "ok"
            assert await r.exists(keys.lease(run_id)) == 0
            assert (await store.load(run_id)).state.state == "failed"

    asyncio.run(body())
