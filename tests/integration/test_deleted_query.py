"""Tombstones of deleted runs are queried like runs (filters, sort keys, paging, count,
the same errors), through the client and ``runctl list --deleted``; ``runctl list`` marks
tracked runs. On real Redis."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from runstream import query
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run
from runstream.ids import new_id
from runstream.query import TOMBSTONES, BadQuery, Query
from runstream.settings import Settings
from runstream.store.events import Tombstone
from runstream.store.search import MarkerNotFound

from .support import runctl_async

T0 = 1_790_000_000.0
SCENARIOS = ("synthetic", "graph-import", "notify")
ACTORS = ("alice", "bob")


async def deleted_run(client: Client, i: int) -> str:
    """A run of scenario i % 3 with i % 4 effects left on the network, deleted by an actor
    at T0 + 10 * i (keeping its effects)."""
    run_id = new_id()
    run = Run.blank(run_id)
    run.start(cmd.StartRun(run_id=run_id, scenario=SCENARIOS[i % 3]), T0, scenario_version="1")
    run.begin(T0 + 1, "w")
    effects = [ev.EffectRecord(f"n:{run_id}-{n}", "", "{}", "") for n in range(i % 4)]
    run.prepare_chunk(T0 + 1, items_to=1, effects=effects, notifications=[], log=[], results={})
    run.confirm_chunk(T0 + 2)
    run.succeed(T0 + 3)
    assert (await client.store.save(run)).status == "ok"
    run = await client.store.load(run_id)
    actor = ACTORS[i % 2]
    run.handle(cmd.DeleteRun(run_id=run_id, actor=actor, mode="keep_effects"), T0 + 10 * i)
    assert (await client.store.save(run)).status == "ok"
    return run_id


def reference(tombs: list[Tombstone], q: Query) -> list[str]:
    hits = [t for t in tombs if query.matches(t, q.filters, TOMBSTONES)]
    hits.sort(key=lambda t: query.sort_tuple(t, q.sort, TOMBSTONES))
    return [t.run_id for t in hits]


async def every_page(client: Client, q: Query) -> list[str]:
    out: list[str] = []
    marker = None
    while True:
        page = await client.search_deleted(msgspec.structs.replace(q, marker=marker))
        out += [t.run_id for t in page]
        if len(page) < q.limit:
            return out
        marker = page[-1].run_id
        assert len(out) <= 100, "paging does not end"


def iso(seconds: float) -> str:
    return query.iso(T0 + seconds) or ""


FILTERS = [
    [],
    ["scenario=eq:notify"],
    ["scenario=in:synthetic,graph-import", "effects_left=gte:2"],
    ["actor=neq:alice"],
    [f"deleted_at=gt:{iso(50)}"],
    ["effects_left=lt:1"],
    ["id=has:0"],
    ["irreversible=eq:0", "scenario=has:graph"],
]
SORTS = [[], ["deleted_at:desc"], ["effects_left:desc", "scenario"], ["actor", "id:desc"]]


def test_tombstones_filter_sort_page_and_count_as_the_reference_says(
    settings: Settings,
) -> None:
    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            for i in range(14):
                await deleted_run(client, i)
            tombs = await client.tombstones()
            assert len(tombs) == 14
            assert {t.effects_left for t in tombs} == {0, 1, 2, 3}
            for filters in FILTERS:
                for sort in SORTS:
                    q = query.build(filters, sort=sort, limit=4, schema=TOMBSTONES)
                    expected = reference(tombs, q)
                    assert await every_page(client, q) == expected, (filters, sort)
                    assert await client.count_deleted(q) == len(expected)
            # Not vacuous: the filters select different, non-empty parts.
            sizes = [len(reference(tombs, query.build(f, schema=TOMBSTONES))) for f in FILTERS]
            assert all(n > 0 for n in sizes) and len(set(sizes)) > 3
            # The default order is oldest first.
            assert [t.run_id for t in await client.search_deleted()] == [
                t.run_id for t in sorted(tombs, key=lambda t: t.deleted_at)
            ]
            with pytest.raises(MarkerNotFound, match="not a deleted run"):
                await client.search_deleted(Query(marker=new_id(), sort=TOMBSTONES.default_sort))

    asyncio.run(body())


@pytest.mark.parametrize(
    ("filters", "sort", "message"),
    [
        (["state=eq:running"], [], "unknown field 'state'.*fields: id, scenario, actor"),
        (["args.items=eq:1"], [], "unknown field 'args.items'"),
        (["deleted_at=gt:yesterday"], [], "not an ISO 8601 time"),
        (["effects_left=has:1"], [], "'has' does not apply to effects_left"),
        (["actor=like:a"], [], "unknown operator 'like'"),
        ([], ["state"], "cannot sort by 'state'; sort keys: id, scenario, actor, deleted_at"),
        ([], ["args.items"], "cannot sort by 'args.items'"),
    ],
)
def test_a_bad_tombstone_query_is_refused_naming_what_was_wrong(
    filters: list[str], sort: list[str], message: str
) -> None:
    with pytest.raises(BadQuery, match=message):
        query.build(filters, sort=sort, schema=TOMBSTONES)


def test_runctl_list_deleted_filters_sorts_pages_and_counts(settings: Settings) -> None:
    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            for i in range(6):
                await deleted_run(client, i)
            tombs = await client.tombstones()
        q = query.build(["effects_left=gte:1"], sort=["deleted_at:desc"], schema=TOMBSTONES)
        expected = reference(tombs, q)
        assert len(expected) == 4

        args = ["list", "--deleted", "--filter", "effects_left=gte:1", "--sort", "deleted_at:desc"]
        first = await runctl_async(settings, *args, "--limit", "3", "--json")
        assert first.code == 0, first.stderr
        rows = json.loads(first.stdout)
        assert [r["run_id"] for r in rows] == expected[:3]
        assert rows[0]["deleted_at"].endswith("Z")
        assert f"--marker {expected[2]}" in first.stderr
        rest = await runctl_async(
            settings, *args, "--limit", "3", "--marker", expected[2], "--json"
        )
        assert [r["run_id"] for r in json.loads(rest.stdout)] == expected[3:]
        counted = await runctl_async(settings, *args, "--count")
        assert counted.stdout.strip() == "4"
        table = await runctl_async(settings, "list", "--deleted", "--scenario", "notify")
        assert table.code == 0, table.stderr
        notify = [t.run_id for t in tombs if t.scenario == "notify"]
        assert notify and all(run_id in table.stdout for run_id in notify)

        for bad, wanted in (
            (["--state", "running"], "no state or labels"),
            (["--filter", "colour=eq:red"], "unknown field 'colour'"),
            (["--sort", "name"], "cannot sort by 'name'"),
        ):
            refused = await runctl_async(settings, "list", "--deleted", *bad)
            assert refused.code == 2, refused
            assert wanted in refused.stderr
        gone = await runctl_async(settings, "list", "--deleted", "--marker", new_id())
        assert gone.code == 3, gone
        assert "not a deleted run" in gone.stderr

    asyncio.run(body())


def test_runctl_list_marks_tracked_runs(settings: Settings) -> None:
    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            tracked = new_id()
            run = Run.blank(tracked)
            run.handle(
                cmd.TrackRun(
                    run_id=tracked, scenario="solver", status="succeeded", input="{}", output="1"
                ),
                T0,
            )
            assert (await client.store.save(run)).status == "ok"
            plain = new_id()
            run = Run.blank(plain)
            run.start(cmd.StartRun(run_id=plain, scenario="synthetic"), T0, scenario_version="1")
            assert (await client.store.save(run)).status == "ok"
        listed = await runctl_async(settings, "list")
        assert listed.code == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if tracked[:10] in line]
        assert rows and "(tracked)" in rows[0], listed.stdout
        rows = [line for line in listed.stdout.splitlines() if plain[:10] in line]
        assert rows and "(tracked)" not in rows[0], listed.stdout
        only = await runctl_async(settings, "list", "--filter", "tracked=eq:true", "--json")
        assert [r["id"] for r in json.loads(only.stdout)] == [tracked]

    asyncio.run(body())
