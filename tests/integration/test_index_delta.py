"""The index change computed by the worker (store/index_delta.py, lua index_apply) leaves
the query index exactly as the full diff in Redis would, also when what the worker
remembers of a run's postings is out of date."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import Any

import pytest

from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.domain.run import Run, RunState
from runstream.ids import new_id
from runstream.query import Posting, Query
from runstream.settings import Settings
from runstream.store import events, index
from runstream.store.search import IndexOutdated

from .support import runctl_async
from .test_queries import ACTORS, ARGS, LABELS, NAMES, SCENARIOS, T0, dump_index


async def rebuilt_index(client: Client) -> dict[bytes, object]:
    """The index as a rebuild from the runs' histories writes it (the full diff, from
    nothing)."""
    for shard in range(client.keys.shards):
        keys = [
            k async for k in client.redis.scan_iter(match=client.keys.query_index_pattern(shard))
        ]
        await client.redis.delete(client.keys.index(shard), *keys)
    await index.rebuild(client.redis, client.keys, client.store)
    return await dump_index(client)


async def saved(client: Client, run: Run) -> Run:
    assert (await client.store.save(run)).status == "ok"
    return await client.store.load(run.state.run_id)


async def live_run(client: Client, rng: random.Random, at: float) -> None:
    """One run through several appends of one store: start, begin, chunks, an end (or a
    delete), each its own append."""
    run_id = new_id()
    run = Run.blank(run_id)
    args = rng.choice(ARGS)
    run.start(
        cmd.StartRun(
            run_id=run_id,
            scenario=rng.choice(SCENARIOS),
            args=args,
            name=rng.choice(NAMES),
            actor=rng.choice(ACTORS),
            labels=rng.choice(LABELS),
        ),
        at,
        scenario_version="1",
        args=args,
    )
    run = await saved(client, run)
    if rng.random() < 0.2:
        return  # stays queued
    run.begin(at + 1, "w")
    run = await saved(client, run)
    for chunk in range(rng.randrange(3)):
        run.prepare_chunk(
            at + 2 + chunk,
            items_to=run.state.items_processed + 5,
            effects=[],
            notifications=[],
            log=[],
            results={},
        )
        run = await saved(client, run)
        run.confirm_chunk(at + 2 + chunk)
        run = await saved(client, run)
    end = rng.randrange(4)
    if end == 0:
        run.succeed(at + 9)
    elif end == 1:
        run.fail(at + 9, "boom")
    elif end == 2:
        run.handle(cmd.StopRun(run_id=run_id, reason="enough"), at + 9)
    else:
        run.handle(cmd.PinRun(run_id=run_id), at + 9)
    run = await saved(client, run)
    if rng.random() < 0.3 and run.state.state in ("succeeded", "failed", "stopped"):
        run.handle(cmd.DeleteRun(run_id=run_id, mode="keep_effects"), at + 10)
        assert (await client.store.save(run)).status == "ok"


def test_appends_of_one_store_leave_the_index_as_a_rebuild_writes_it(settings: Settings) -> None:
    rng = random.Random(4)

    async def main() -> None:
        async with Client.connect(settings=settings) as client:
            for i in range(40):
                await live_run(client, rng, T0 + i)
            written = await dump_index(client)
            assert written  # the runs are in the index
            assert written == await rebuilt_index(client)

    asyncio.run(main())


def test_an_append_after_another_process_appended_uses_the_stored_postings(
    settings: Settings,
) -> None:
    """Store A remembers the run queued; B starts it (state=running in the index); A stops
    it. A's change from "queued" would leave state=running behind: the script must see that
    the stored postings are not the ones A's change is based on, and diff them itself."""

    async def main() -> None:
        async with (
            Client.connect(settings=settings) as a,
            Client.connect(settings=settings) as b,
        ):
            run_id = new_id()
            run = Run.blank(run_id)
            run.start(cmd.StartRun(run_id=run_id, scenario="synthetic", args={}), T0, args={})
            await saved(a, run)
            run = await b.store.load(run_id)
            run.begin(T0 + 1, "w")
            await saved(b, run)
            run = await a.store.load(run_id)
            run.handle(cmd.StopRun(run_id=run_id, reason="enough"), T0 + 2)
            await saved(a, run)
            written = await dump_index(a)
            running = [k for k, v in written.items() if k.endswith(b"state=running")]
            assert all(run_id.encode() not in v for k, v in written.items() if k in running)
            assert written == await rebuilt_index(a)

    asyncio.run(main())


def test_an_append_replaces_texts_stored_the_old_way_one_hash_per_field(
    settings: Settings,
) -> None:
    """Postings written before a run's texts became one JSON object kept them in a hash per
    field (<base>:t:<field>): the run's next append removes those and stores the object."""

    async def main() -> None:
        async with Client.connect(settings=settings) as client:
            run_id = new_id()
            run = Run.blank(run_id)
            run.start(cmd.StartRun(run_id=run_id, scenario="synthetic", args={}), T0, args={})
            run = await saved(client, run)
            base = client.keys.query_index(client.keys.shard_of(run_id))
            # The old layout, as an earlier version left it.
            raw = await client.redis.hget(f"{base}:p", run_id)
            assert raw is not None
            stored = json.loads(raw)
            old_texts = json.loads(stored["t"])
            stored["t"] = old_texts
            await client.redis.hset(f"{base}:p", run_id, json.dumps(stored))
            await client.redis.hdel(f"{base}:t", run_id)
            for field, text in old_texts.items():
                await client.redis.hset(f"{base}:t:{field}", run_id, text)
            client.store._indexed.forget(run_id)  # as after a restart

            run.begin(T0 + 1, "w")
            run = await saved(client, run)
            written = await dump_index(client)
            assert not [k for k in written if k.startswith(f"{base}:t:".encode())]
            assert json.loads(written[f"{base}:t".encode()][run_id.encode()])["state"] == (
                "running"
            )
            assert written == await rebuilt_index(client)

    asyncio.run(main())


def test_a_rebuild_keeps_what_workers_append_meanwhile(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run a is appended to after the rebuild dropped the index (its entries are there when
    the batch comes: diffed), run b after the rebuild read its events (the index holds a
    newer summary: kept). The result is what a rebuild without them writes."""

    async def main() -> None:
        async with Client.connect(settings=settings) as client:
            ids = []
            for i in range(6):
                run_id = new_id()
                run = Run.blank(run_id)
                run.start(cmd.StartRun(run_id=run_id, scenario="synthetic"), T0 + i)
                await saved(client, run)
                ids.append(run_id)
            a, b = ids[1], ids[4]

            async def begin(run_id: str) -> None:
                run = await client.store.load(run_id)
                run.begin(T0 + 50, "w")
                await saved(client, run)

            drop, summarize = index._drop, events.summary_and_postings

            async def drop_then_append(*args: Any) -> None:
                await drop(*args)
                await begin(a)

            def summarize_then_append(state: RunState) -> tuple[bytes, bytes, Posting]:
                if state.run_id == b and state.state == "queued":
                    # Another process appends now, before the rebuild writes b.
                    thread = threading.Thread(target=asyncio.run, args=(begin_elsewhere(b),))
                    thread.start()
                    thread.join()
                return summarize(state)

            async def begin_elsewhere(run_id: str) -> None:
                async with Client.connect(settings=settings) as other:
                    run = await other.store.load(run_id)
                    run.begin(T0 + 50, "w")
                    await saved(other, run)

            monkeypatch.setattr(index, "_drop", drop_then_append)
            monkeypatch.setattr(index, "summary_and_postings", summarize_then_append)
            await index.rebuild(client.redis, client.keys, client.store)
            monkeypatch.undo()
            assert (await client.get(a)).state == "running"
            assert (await client.get(b)).state == "running"
            assert (await client.get(ids[0])).state == "queued"
            written = await dump_index(client)
            assert written == await rebuilt_index(client)

    asyncio.run(main())


def test_queries_over_an_index_in_the_old_layout_ask_for_a_rebuild(settings: Settings) -> None:
    """Runs indexed by an older version have no value sets for some fields: a query would
    miss them. It is refused, naming the fix, until `runctl rebuild-index` ran."""

    async def main() -> None:
        async with Client.connect(settings=settings) as client:
            run_id = new_id()
            run = Run.blank(run_id)
            run.start(cmd.StartRun(run_id=run_id, scenario="synthetic"), T0)
            await saved(client, run)
            base = client.keys.query_index(client.keys.shard_of(run_id))
            await client.redis.hset(f"{base}:t:state", run_id, "queued")
        async with Client.connect(settings=settings) as client:
            with pytest.raises(IndexOutdated, match="runctl rebuild-index"):
                await client.search(Query())
        refused = await runctl_async(settings, "list")
        assert refused.code == 1, refused
        assert "rebuild-index" in refused.stderr
        rebuilt = await runctl_async(settings, "rebuild-index")
        assert rebuilt.code == 0, rebuilt
        listed = await runctl_async(settings, "list", "--json")
        assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]

    asyncio.run(main())
