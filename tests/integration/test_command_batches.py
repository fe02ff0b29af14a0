"""A batch of commands read from a shard's stream: the first command of every run in it is
loaded in one pipelined round trip and saved in another; a run's later commands follow one
by one, in order. Every outcome is as if each command had been handled alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.store import replies
from runstream.store.events import AppendResult, EventStore, Save
from runstream_worker.handlers import CommandProcessor

from .support import feed_events, pending_count, run_id_on


class RecordingStore(EventStore):
    """The real event store, noting how many runs each pipelined call carried."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.loads: list[int] = []
        self.saves: list[int] = []

    async def load_many(self, run_ids: Sequence[str]) -> list[Run]:
        self.loads.append(len(run_ids))
        return await super().load_many(run_ids)

    async def save_many(self, saves: Sequence[Save]) -> list[AppendResult | Exception]:
        self.saves.append(len(saves))
        return await super().save_many(saves)


class Slots:
    """Run slots that only note which runs were woken (no executor in this test)."""

    def __init__(self) -> None:
        self.woken: list[str] = []

    @property
    def free_slots(self) -> int:
        return 8

    def wake(self, run_id: str, *, at_once: bool = False) -> None:
        self.woken.append(run_id)


def test_a_batch_saves_every_runs_first_command_in_one_round_trip(settings: Settings) -> None:
    async def body() -> None:
        keys = Keys.of(settings)
        async with Client.connect(settings=settings) as client:
            r = client.redis
            await r.xgroup_create(keys.commands(0), keys.group, id="0", mkstream=True)
            store = RecordingStore(r, keys, settings)
            slots = Slots()
            processor = CommandProcessor(store, settings, load_registry(), slots)

            queued, fresh, twice, unknown = (run_id_on(keys, 0) for _ in range(4))
            scenario = load_registry().get("synthetic")
            existing = Run.blank(queued)
            existing.start(
                cmd.StartRun(run_id=queued, scenario="synthetic", args={"items": 2}),
                time.time(),
                scenario_version=scenario.version,
                args={"items": 2},
            )
            # Stored by another worker: this one has to load it.
            assert (await EventStore(r, keys, settings).save(existing)).status == "ok"

            start_fresh = cmd.StartRun(run_id=fresh, scenario="synthetic", args={"items": 1})
            start_twice = cmd.StartRun(run_id=twice, scenario="synthetic", args={"items": 1})
            stop_twice = cmd.StopRun(run_id=twice, reason="second in the batch")
            stop_queued = cmd.StopRun(run_id=queued, reason="first in the batch")
            stop_unknown = cmd.StopRun(run_id=unknown)
            bad_start = cmd.StartRun(
                run_id=run_id_on(keys, 0), scenario="synthetic", args={"items": "many"}
            )
            sent: list[cmd.Command] = [
                start_fresh,
                start_twice,
                stop_queued,
                stop_twice,
                stop_unknown,
                bad_start,
            ]
            for command in sent:
                await client.send(command)
            reply = await r.xreadgroup(keys.group, "me", {keys.commands(0): ">"}, count=100)
            entries = [(i.decode(), fields) for i, fields in replies.streams(reply)[0][1]]
            assert len(entries) == len(sent)

            await processor.handle_batch(0, entries)

            # Five runs' first commands: the two that are not starts loaded together; one
            # save round trip for the three that are stored (the unknown run's stop and the
            # bad start are rejected on the feed only).
            assert store.loads == [2]
            assert store.saves == [3]
            assert await pending_count(r, keys.commands(0), keys.group) == 0

            async def kinds(run_id: str) -> list[str]:
                return [ev.event_type(e) for _, e in await feed_events(r, keys, run_id)]

            assert await kinds(fresh) == ["RunQueued"]
            assert await kinds(twice) == ["RunQueued", "RunStopped"]
            assert (await kinds(queued))[-1] == "RunStopped"
            assert await kinds(unknown) == ["CommandRejected"]
            assert await kinds(bad_start.run_id) == ["CommandRejected"]
            rejected = [e for _, e in await feed_events(r, keys, bad_start.run_id)]
            assert isinstance(rejected[0], ev.CommandRejected) and rejected[0].bad_input
            assert (await client.get(twice)).state == "stopped"
            assert slots.woken == [fresh, twice]

            # The same batch again (a redelivery): every command is known, nothing changes.
            versions = {i: await r.hget(keys.meta(i), "v") for i in (fresh, twice, queued)}
            await processor.handle_batch(0, entries)
            assert {i: await r.hget(keys.meta(i), "v") for i in versions} == versions

    asyncio.run(body())


def test_a_run_this_worker_saved_last_is_not_loaded_again_unless_it_changed_since(
    settings: Settings,
) -> None:
    """The worker keeps the runs it saved: the next command for one is decided on that copy,
    without a load. If another process appended meanwhile, the append meets the newer
    version, and the command is decided again on the run as stored."""

    async def body() -> None:
        keys = Keys.of(settings)
        async with Client.connect(settings=settings) as client:
            r = client.redis
            await r.xgroup_create(keys.commands(0), keys.group, id="0", mkstream=True)
            store = RecordingStore(r, keys, settings)
            processor = CommandProcessor(store, settings, load_registry(), Slots())
            kept, changed = run_id_on(keys, 0), run_id_on(keys, 0)

            async def handle(*commands: cmd.Command) -> None:
                for command in commands:
                    await client.send(command)
                reply = await r.xreadgroup(keys.group, "me", {keys.commands(0): ">"}, count=100)
                entries = [(i.decode(), f) for i, f in replies.streams(reply)[0][1]]
                await processor.handle_batch(0, entries)

            starts = [
                cmd.StartRun(run_id=i, scenario="synthetic", args={"items": 1})
                for i in (kept, changed)
            ]
            await handle(*starts)
            # Someone else (another worker's store) stops one of them meanwhile.
            other = EventStore(r, keys, settings)
            elsewhere = await other.load(changed)
            elsewhere.stop(cmd.StopRun(run_id=changed, reason="elsewhere"), time.time())
            assert (await other.save(elsewhere)).status == "ok"

            store.loads.clear()
            await handle(
                cmd.StopRun(run_id=kept, reason="here"),
                cmd.CancelRun(run_id=changed, reason="here"),
            )
            assert store.loads == [], "both were decided on the runs as saved here"
            assert (await client.get(kept)).state == "stopped"
            # The cancel met the newer version, was decided again on the stored run (the
            # one stopped elsewhere) and applied to it.
            cancelled = [ev.event_type(e) for _, e in await feed_events(r, keys, changed)]
            assert cancelled == ["RunQueued", "RunStopped", "RunCancelled"]
            assert (await client.get(changed)).state == "cancelled"
            assert await pending_count(r, keys.commands(0), keys.group) == 0

    asyncio.run(body())
