"""Queries over the run index, on real Redis: every operator and field type, sorting,
paging while runs are added, rebuild equivalence, and a property test that the index
returns exactly what the same filter returns over the runs' own state."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runstream import query
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run, RunSummary
from runstream.ids import new_id
from runstream.query import BadQuery, Query
from runstream.settings import Settings
from runstream.store import index, search
from runstream.store.search import MarkerNotFound

T0 = 1_790_000_000.0  # 2026-09-21T...Z

SCENARIOS = ("synthetic", "graph-import", "notify")
NAMES = ("", "alpha", "beta", "alphabet", "Zeta", "é-name")
DESCRIPTIONS = ("", "nightly import", "one-off fix", "import of eu data")
ACTORS = ("alice", "bob", "retention")
LABELS: tuple[dict[str, str], ...] = (
    {},
    {"team": "eu"},
    {"team": "us"},
    {"team": "eu", "tier": "gold"},
)
ARGS: tuple[dict[str, Any], ...] = (
    {},
    {"namespace": "eu", "items": 10},
    {"namespace": "us", "items": 200},
    {"namespace": "eu-west", "items": 10.5, "flag": True},
    {"items": "10"},
)
ENDS = ("queued", "running", "stopped", "succeeded", "failed", "cancelled")


class Shape(msgspec.Struct, frozen=True):
    scenario: int
    name: int
    description: int
    actor: int
    labels: int
    args: int
    created: int  # seconds after T0
    started_after: int | None
    items: int
    end: int
    ended_after: int


async def store_run(
    client: Client, shape: Shape, run_id: str | None = None, name: str | None = None
) -> str:
    """A run in the given shape, written through the aggregate and the event store (the
    same append script a worker uses), with controlled times; ``name`` in place of the
    shape's."""
    run_id = run_id or new_id()
    run = Run.blank(run_id)
    created = T0 + shape.created
    args = ARGS[shape.args]
    run.start(
        cmd.StartRun(
            run_id=run_id,
            scenario=SCENARIOS[shape.scenario],
            args=args,
            name=NAMES[shape.name] if name is None else name,
            description=DESCRIPTIONS[shape.description],
            actor=ACTORS[shape.actor],
            labels=LABELS[shape.labels],
        ),
        created,
        scenario_version=str(1 + shape.scenario % 2),
        args=args,
    )
    end = ENDS[shape.end]
    if shape.started_after is not None and end != "queued":
        started = created + shape.started_after
        run.begin(started, "w")
        if shape.items:
            run.prepare_chunk(
                started, items_to=shape.items, effects=[], notifications=[], log=[], results={}
            )
            run.confirm_chunk(started)
        ended = started + shape.ended_after
        if end == "succeeded":
            run.succeed(ended)
        elif end == "failed":
            run.fail(ended, "item 3: boom")
        elif end == "stopped":
            run.handle(cmd.StopRun(run_id=run_id, reason="enough"), ended)
        elif end == "cancelled":
            run.handle(cmd.CancelRun(run_id=run_id), ended)
    elif end == "cancelled":
        run.handle(cmd.CancelRun(run_id=run_id), created + shape.ended_after)
    result = await client.store.save(run)
    assert result.status == "ok"
    return run_id


shapes = st.builds(
    Shape,
    scenario=st.integers(0, len(SCENARIOS) - 1),
    name=st.integers(0, len(NAMES) - 1),
    description=st.integers(0, len(DESCRIPTIONS) - 1),
    actor=st.integers(0, len(ACTORS) - 1),
    labels=st.integers(0, len(LABELS) - 1),
    args=st.integers(0, len(ARGS) - 1),
    created=st.integers(0, 50),
    started_after=st.none() | st.integers(0, 5),
    items=st.integers(0, 30),
    end=st.integers(0, len(ENDS) - 1),
    ended_after=st.integers(0, 5),
)


def iso(seconds: float) -> str:
    return query.iso(T0 + seconds) or ""


# Filters over every field type and operator, as a user writes them.
FILTER_TEXTS = [
    "id=has:0",
    "scenario=eq:synthetic",
    "scenario=neq:synthetic",
    "scenario=in:notify,graph-import",
    "scenario=nin:notify,graph-import",
    "scenario=gt:notify",
    "scenario=has:graph",
    "scenario_version=eq:2",
    "state=in:running,stopped",
    "state=nin:queued,running",
    "state=lte:queued",
    "name=eq:alpha",
    "name=has:alpha",
    "name=gte:alpha",
    "name=lt:beta",
    "name=eq:",
    "name=eq:é-name",
    "actor=neq:retention",
    "description=has:import",
    "description=eq:one-off fix",
    "description=in:one-off fix,",
    "labels=eq:team=eu",
    "labels=neq:team=eu",
    "labels=in:team=us,tier=gold",
    "labels=nin:team=us,tier=gold",
    "labels=has:gold",
    f"created_at=gte:{iso(20)}",
    f"created_at=lt:{iso(20)}",
    f"created_at=eq:{iso(7)}",
    f"created_at=neq:{iso(7)}",
    f"created_at=in:{iso(7)},{iso(9)}",
    f"updated_at=gt:{iso(30)}",
    f"started_at=lte:{iso(25)}",
    f"started_at=neq:{iso(25)}",
    f"ended_at=gt:{iso(10)}",
    "duration_ms=gte:2000",
    "duration_ms=lt:2000",
    "duration_ms=eq:0",
    "duration_ms=nin:0,1000",
    "items_processed=gt:10",
    "items_processed=in:0,30",
    "items_processed=neq:0",
    "args.namespace=eq:eu",
    "args.namespace=neq:eu",
    "args.namespace=has:eu",
    "args.namespace=in:us,eu-west",
    "args.items=eq:10",
    "args.items=gte:10",
    "args.items=lt:100",
    "args.items=nin:10",
    "args.flag=eq:true",
]


def reference(all_runs: list[RunSummary], q: Query) -> list[RunSummary]:
    hits = [r for r in all_runs if query.matches(r, q.filters)]
    return sorted(hits, key=lambda r: query.sort_tuple(r, q.sort))


def run_async(body: Callable[[Client], Awaitable[None]], s: Settings) -> None:
    async def main() -> None:
        async with Client.connect(settings=s) as client:
            await body(client)

    asyncio.run(main())


async def every_page(client: Client, q: Query, at_most: int = 500) -> list[RunSummary]:
    """Every page in turn; a page that does not move on fails instead of looping."""
    out: list[RunSummary] = []
    marker = None
    while True:
        page = await client.search(msgspec.structs.replace(q, marker=marker))
        out += page
        if len(page) < q.limit:
            return out
        marker = page[-1].id
        assert len(out) <= at_most, f"paging does not end: {_ids(out)[-10:]}"


def _ids(runs: list[RunSummary]) -> list[str]:
    return [r.id for r in runs]


def test_every_operator_and_field_type_matches_the_runs_own_state(settings: Settings) -> None:
    rng = random.Random(7)

    async def body(client: Client) -> None:
        for _ in range(120):
            await store_run(client, _random_shape(rng))
        runs = await client.list_runs()
        assert len(runs) == 120
        for text in FILTER_TEXTS:
            q = query.build([text], limit=1000)
            expected = reference(runs, q)
            assert _ids(await client.search(q)) == _ids(expected), text
            assert await client.count(q) == len(expected), text
        # Most filters above select something, a few nothing; none is vacuous.
        selected = [len(reference(runs, query.build([t], limit=1000))) for t in FILTER_TEXTS]
        assert sum(1 for n in selected if 0 < n < 120) >= len(FILTER_TEXTS) - 3

    run_async(body, settings)


def _random_shape(rng: random.Random) -> Shape:
    return Shape(
        scenario=rng.randrange(len(SCENARIOS)),
        name=rng.randrange(len(NAMES)),
        description=rng.randrange(len(DESCRIPTIONS)),
        actor=rng.randrange(len(ACTORS)),
        labels=rng.randrange(len(LABELS)),
        args=rng.randrange(len(ARGS)),
        created=rng.randrange(40),
        started_after=rng.choice([None, 0, 1, 2, 3]),
        items=rng.choice([0, 5, 10, 30]),
        end=rng.randrange(len(ENDS)),
        ended_after=rng.randrange(4),
    )


@pytest.mark.parametrize(
    ("budget", "max_values", "max_groups"),
    [
        (0, 5000, 64),
        (10**9, 5000, 64),
        (0, 0, 64),
        (10**9, 0, 64),
        (0, 5000, 0),
        (10**9, 5000, 0),
        (50, 5000, 64),
    ],
    ids=[
        "intersect",
        "walk",
        "intersect-read-texts",
        "walk-read-texts",
        "intersect-keywords-by-text",
        "walk-keywords-by-text",
        "walk-some-value-groups",
    ],
)
def test_both_query_strategies_agree_with_the_reference(
    settings: Settings,
    budget: int,
    max_values: int,
    max_groups: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runstream.store import search

    monkeypatch.setattr(search, "WALK_BUDGET", budget)
    monkeypatch.setattr(search, "MAX_VALUES", max_values)
    monkeypatch.setattr(search, "MAX_GROUPS", max_groups)
    rng = random.Random(11)

    async def body(client: Client) -> None:
        for _ in range(80):
            await store_run(client, _random_shape(rng))
        runs = await client.list_runs()
        combos = [
            ["state=nin:queued", "labels=eq:team=eu"],
            ["scenario=in:synthetic,notify", f"created_at=gte:{iso(10)}", "name=has:a"],
            ["args.items=gte:10", "actor=neq:bob"],
            ["duration_ms=gte:1000", "description=has:import"],
            ["labels=eq:team=us", "duration_ms=gte:0"],
            ["name=gte:alpha", "labels=has:gold", "scenario=has:i"],
            ["state=lt:running", "name=has:zz"],
        ]
        sorts = [
            ["created_at:desc"],
            ["state", "name:desc"],
            ["items_processed:desc", "id"],
            ["state", "duration_ms:desc"],  # a range on a later sort key: tested while read
            ["scenario:desc", "actor", "created_at"],  # keywords walked value by value
            ["actor", "args.items:desc"],  # a value group, then an argument
            ["description:desc"],  # the run id after the value groups
        ]
        for filters in combos:
            for sort in sorts:
                q = query.build(filters, sort=sort, limit=7)
                expected = reference(runs, q)
                assert _ids(await every_page(client, q)) == _ids(expected), (filters, sort)
                assert await client.count(q) == len(expected)

    run_async(body, settings)


@pytest.mark.parametrize(
    "sort",
    [
        ["created_at"],
        ["created_at:desc"],
        ["id:desc"],
        ["name", "created_at:desc"],
        ["state:desc", "items_processed"],
        ["started_at"],
        ["ended_at:desc", "duration_ms:desc"],
        ["scenario", "scenario_version:desc", "actor", "description", "updated_at"],
        ["args.items", "name:desc"],
        ["args.namespace:desc", "created_at"],
        ["state", "args.items:desc"],
    ],
)
def test_sorting_by_several_keys_each_asc_or_desc(settings: Settings, sort: list[str]) -> None:
    rng = random.Random(3)

    async def body(client: Client) -> None:
        for _ in range(60):
            await store_run(client, _random_shape(rng))
        runs = await client.list_runs()
        q = query.build([], sort=sort, limit=1000)
        assert _ids(await client.search(q)) == _ids(reference(runs, q))
        paged = query.build([], sort=sort, limit=9)
        assert _ids(await every_page(client, paged)) == _ids(reference(runs, q))

    run_async(body, settings)


@pytest.mark.parametrize("share", [1, 2, 5])
def test_pages_from_small_first_shares_are_the_reference_pages(
    settings: Settings, share: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each shard is first asked for only `share` runs: the second request to the shards
    # whose share ran short is made for nearly every page.
    from runstream.store import search

    monkeypatch.setattr(search, "first_share", lambda limit, shards: min(limit, share))
    rng = random.Random(21)

    async def body(client: Client) -> None:
        for _ in range(60):
            await store_run(client, _random_shape(rng))
        runs = await client.list_runs()
        for filters in ([], ["state=nin:queued"], ["scenario=in:synthetic,notify"]):
            for sort in (
                ["created_at:desc"],
                ["name", "created_at:desc"],
                ["args.items:desc"],
                ["scenario:desc", "actor", "created_at"],
            ):
                q = query.build(filters, sort=sort, limit=7)
                expected = _ids(reference(runs, q))
                assert _ids(await every_page(client, q)) == expected, (filters, sort)
                first = await client.search(msgspec.structs.replace(q, limit=1000))
                assert _ids(first) == expected

    run_async(body, settings)


def test_a_page_that_one_shard_holds_almost_whole_is_complete(settings: Settings) -> None:
    from runstream.store.search import first_share

    rng = random.Random(8)
    limit = 25
    assert first_share(limit, settings.shards) < limit  # its share runs short

    async def body(client: Client) -> None:
        def on_shard(shard: int) -> str:
            while True:
                run_id = new_id()
                if client.keys.shard_of(run_id) == shard:
                    return run_id

        # The newest 30 runs all on shard 0, older ones on the others.
        for i in range(30):
            shape = msgspec.structs.replace(_random_shape(rng), created=100 + i)
            await store_run(client, shape, on_shard(0))
        for shard in range(1, settings.shards):
            for i in range(10):
                shape = msgspec.structs.replace(_random_shape(rng), created=i)
                await store_run(client, shape, on_shard(shard))
        runs = await client.list_runs()
        q = query.build([], sort=["created_at:desc"], limit=limit)
        assert _ids(await client.search(q)) == _ids(reference(runs, q))[:limit]
        assert _ids(await every_page(client, q)) == _ids(reference(runs, q))

    run_async(body, settings)


def test_paging_is_stable_while_runs_are_added(settings: Settings) -> None:
    rng = random.Random(5)

    async def body(client: Client) -> None:
        for _ in range(40):
            await store_run(client, _random_shape(rng))
        before = await client.list_runs()
        q = query.build(["state=nin:queued"], sort=["created_at:desc"], limit=6)
        expected = _ids(reference(before, q))
        seen: list[RunSummary] = []
        marker = None
        while True:
            page = await client.search(msgspec.structs.replace(q, marker=marker))
            seen += page
            # New runs land both before and after the page boundary meanwhile.
            for created in (0, 45):
                shape = msgspec.structs.replace(_random_shape(rng), created=created, end=3)
                await store_run(client, shape)
            if len(page) < q.limit:
                break
            marker = page[-1].id
        # No run seen twice; every run that existed before and matches is seen, in order.
        ids = _ids(seen)
        assert len(ids) == len(set(ids))
        assert [i for i in ids if i in set(expected)] == expected

    run_async(body, settings)


def test_rebuild_index_gives_identical_query_results(settings: Settings) -> None:
    rng = random.Random(9)

    async def body(client: Client) -> None:
        for _ in range(60):
            await store_run(client, _random_shape(rng))
        queries = [
            query.build([t], sort=["name", "created_at:desc"], limit=1000) for t in FILTER_TEXTS
        ]
        before = [(_ids(await client.search(q)), await client.count(q)) for q in queries]
        raw_before = await dump_index(client)
        for shard in range(client.keys.shards):
            keys = [
                k
                async for k in client.redis.scan_iter(match=client.keys.query_index_pattern(shard))
            ]
            await client.redis.delete(client.keys.index(shard), *keys)
        assert await client.count(Query()) == 0
        done = await index.rebuild(client.redis, client.keys, client.store)
        assert done.runs == 60 and done.events >= 60
        after = [(_ids(await client.search(q)), await client.count(q)) for q in queries]
        assert after == before
        assert await dump_index(client) == raw_before

    run_async(body, settings)


async def dump_index(client: Client) -> dict[bytes, Any]:
    """Every key of the query index and its content."""
    out: dict[bytes, Any] = {}
    for shard in range(client.keys.shards):
        async for key in client.redis.scan_iter(match=client.keys.query_index_pattern(shard)):
            kind = await client.redis.type(key)
            if kind == b"zset":
                out[key] = await client.redis.zrange(key, 0, -1, withscores=True)
            elif kind == b"set":
                out[key] = sorted(await client.redis.smembers(key))
            else:
                out[key] = await client.redis.hgetall(key)
    return out


def test_deleting_a_run_removes_it_from_every_index_key(settings: Settings) -> None:
    async def body(client: Client) -> None:
        shape = Shape(0, 1, 1, 0, 3, 1, 5, 1, 10, 3, 2)
        keep = await store_run(client, shape)
        gone = await store_run(client, shape)
        run = await client.store.load(gone)
        run.handle(cmd.DeleteRun(run_id=gone, mode="keep_effects"), T0 + 100)
        assert (await client.store.save(run)).status == "ok"
        assert _ids(await client.search(Query())) == [keep]
        dumped = await dump_index(client)
        assert not any(gone.encode() in repr(v).encode() for v in dumped.values())
        assert any(keep.encode() in repr(v).encode() for v in dumped.values())

    run_async(body, settings)


def test_a_marker_that_is_not_in_the_index_is_refused(settings: Settings) -> None:
    async def body(client: Client) -> None:
        with pytest.raises(MarkerNotFound, match="not in the index"):
            await client.search(Query(marker=new_id()))

    run_async(body, settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour=eq:red", "unknown field 'colour'"),
        ("state=like:run", "unknown operator 'like'"),
        ("created_at=gt:yesterday", "not an ISO 8601 time"),
        ("created_at=gt:2026-11-01T00:00:00", "has no zone"),
        ("duration_ms=gt:fast", "'fast' is not a number"),
        ("items_processed=has:1", "'has' does not apply to items_processed"),
        ("labels=gt:a=b", "'gt' does not apply to labels"),
        ("labels=eq:team", "bad label 'team'"),
        ("args.items=gt:many", "'many' is not a number"),
        ("args.=eq:1", "names no argument"),
        ("state", "expected FIELD=OP:VALUE"),
    ],
)
def test_a_bad_filter_is_refused_naming_what_was_wrong(text: str, message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        query.parse_filter(text)


def test_bad_sort_keys_and_limits_are_refused() -> None:
    with pytest.raises(BadQuery, match="cannot sort by 'labels'"):
        query.parse_sort(["labels"])
    with pytest.raises(BadQuery, match="bad sort direction 'up'"):
        query.parse_sort(["name:up"])
    with pytest.raises(BadQuery, match="between 1 and 1000"):
        query.build([], limit=0)


PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

filter_texts = st.lists(st.sampled_from(FILTER_TEXTS), min_size=0, max_size=3)
SORT_KEYS = (*query.SORTABLE, "args.items", "args.namespace", "args.flag")
sort_specs = st.lists(
    st.tuples(st.sampled_from(SORT_KEYS), st.sampled_from(["asc", "desc"])),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t[0],
)


@PROPERTY
@given(
    runs=st.lists(shapes, min_size=0, max_size=25),
    filters=filter_texts,
    sort=sort_specs,
    limit=st.integers(1, 8),
    budget=st.sampled_from([0, 10**9]),
    max_values=st.sampled_from([0, 5000]),
    max_groups=st.sampled_from([0, 64]),
)
def test_a_query_over_the_index_returns_what_the_filter_returns_over_the_runs_state(
    settings: Settings,
    runs: list[Shape],
    filters: list[str],
    sort: list[tuple[str, str]],
    limit: int,
    budget: int,
    max_values: int,
    max_groups: int,
) -> None:
    from runstream.store import search

    s = msgspec.structs.replace(settings, prefix=settings.prefix + new_id()[-6:])
    old = search.WALK_BUDGET, search.MAX_VALUES, search.MAX_GROUPS
    search.WALK_BUDGET, search.MAX_VALUES, search.MAX_GROUPS = budget, max_values, max_groups

    async def body(client: Client) -> None:
        states = []
        for shape in runs:
            run_id = await store_run(client, shape)
            states.append(await client.store.load(run_id))
        # The reference reads each run's own state (folded from its events).
        from runstream.domain.run import summarize

        truth = [summarize(r.state) for r in states]
        q = query.build(filters, sort=[f"{k}:{d}" for k, d in sort], limit=limit)
        expected = reference(truth, q)
        assert _ids(await every_page(client, q)) == _ids(expected)
        assert await client.count(q) == len(expected)

    try:
        run_async(body, s)
    finally:
        search.WALK_BUDGET, search.MAX_VALUES, search.MAX_GROUPS = old


def test_history_events_carry_the_bulk_id_of_their_command() -> None:
    run = Run.blank(new_id())
    run_id = run.state.run_id
    run.handle(cmd.StartRun(run_id=run_id, scenario="x"), T0)
    run.handle(cmd.StopRun(run_id=run_id, bulk_id="b1"), T0 + 1)
    stopped = run.new_events[-1]
    assert isinstance(stopped, ev.RunStopped)
    assert stopped.bulk_id == "b1"


# Names with many values, most sharing the 6 bytes a text score keeps, a NUL inside one.
MANY_NAMES = [
    *(f"run-{i:06d}" for i in range(0, 300, 3)),
    *(f"run-00{i}" for i in range(40)),
    "run-0",
    "run-",
    "run-00\x000",
    "run-00\x01",
    "é-run",
    "",
]


def test_a_sort_by_a_text_with_many_values_pages_in_its_order(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More names than a shard walks value by value: the lexical index orders them (ties on
    # a name broken by the next key, then the id), on every page and after every marker.
    monkeypatch.setattr(search, "MAX_GROUPS", 8)
    rng = random.Random(13)

    async def body(client: Client) -> None:
        for i, name in enumerate(MANY_NAMES * 2):
            await store_run(client, _random_shape(rng), name=name if i % 5 else MANY_NAMES[7])
        runs = await client.list_runs()
        base = client.keys.query_index(0)
        assert await client.redis.zcard(f"{base}:l:name") == await client.redis.zcard(
            f"{base}:z:name"
        )
        for sort in (["name"], ["name:desc"], ["name", "created_at:desc"], ["name:desc", "id"]):
            for filters in ([], ["state=neq:queued"], ["labels=eq:team=eu"]):
                q = query.build(filters, sort=sort, limit=7)
                expected = _ids(reference(runs, query.build(filters, sort=sort, limit=1000)))
                assert _ids(await every_page(client, q)) == expected, (sort, filters)

    run_async(body, settings)


def test_a_store_indexed_before_lexical_indexes_answers_the_same_until_rebuilt(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs indexed by a version without lexical indexes (no l: in their postings, no
    # lexical keys): sorts by name are answered from the score index, an append adds the
    # run's entry, and a rebuild adds every run's.
    monkeypatch.setattr(search, "MAX_GROUPS", 8)
    rng = random.Random(17)

    async def body(client: Client) -> None:
        ids = [await store_run(client, _random_shape(rng), name=name) for name in MANY_NAMES]
        k = client.keys
        for shard in range(k.shards):
            base = k.query_index(shard)
            await client.redis.delete(f"{base}:l:name", f"{base}:l:description")
            stored = await client.redis.hgetall(f"{base}:p")
            for run_id, raw in stored.items():
                old = msgspec.json.decode(raw)
                del old["l"]
                await client.redis.hset(f"{base}:p", run_id, msgspec.json.encode(old))
        q = query.build(["state=neq:queued"], sort=["name", "created_at"], limit=6)
        full = query.build(["state=neq:queued"], sort=["name", "created_at"], limit=1000)
        runs = await client.list_runs()
        assert _ids(await every_page(client, q)) == _ids(reference(runs, full))

        run = await client.store.load(ids[0])
        run.reject(cmd.ContinueRun(run_id=ids[0]), "not now", T0 + 99)
        assert (await client.store.save(run)).status == "ok"
        shard = k.shard_of(ids[0])
        assert await client.redis.zcard(f"{k.query_index(shard)}:l:name") == 1
        assert _ids(await every_page(client, q)) == _ids(reference(runs, full))

        await index.rebuild(client.redis, k, client.store)
        total = 0
        for shard in range(k.shards):
            total += await client.redis.zcard(f"{k.query_index(shard)}:l:name")
        assert total == len(MANY_NAMES)
        assert _ids(await every_page(client, q)) == _ids(reference(runs, full))

    run_async(body, settings)
