"""Queries over the run index: each shard answers from its own index (lua/query.lua) and
the pages are merged here, in the query's order, so it works the same on Redis Cluster."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aredis

from runstream import lua, query
from runstream.domain.run import RunSummary
from runstream.keys import Keys
from runstream.query import ARGS_PREFIX, FIELDS, Filter, Kind, Query

_summary_decoder = msgspec.json.Decoder(RunSummary)
_encode = msgspec.json.Encoder().encode

# A walk in sort order that expects to read more runs than this intersects the index
# sets first (lua/query.lua).
WALK_BUDGET = 1000
# has/gt/lt on a keyword field or a label is answered from the sets of the field's values
# that match while it has at most MAX_VALUES values in a shard and at most MAX_MATCHING
# match; else each run's text is read (lua/query.lua).
MAX_VALUES = 5000
MAX_MATCHING = 200
# A keyword sort key with at most MAX_GROUPS values in a shard is walked value by value
# (each value's runs ordered by the next keys); with more, its runs are sorted by text.
MAX_GROUPS = 64


def first_share(limit: int, shards: int) -> int:
    """How many runs of a page of ``limit`` each shard is asked for first: its expected
    share (runs are spread over the shards by their id's hash) and three standard
    deviations, so that a second request to a shard is rare (about 1 page in 500 with 4
    shards and 50 runs)."""
    if shards <= 1:
        return limit
    p = 1 / shards
    return min(limit, math.ceil(limit * p + 3 * math.sqrt(limit * p * (1 - p))) + 1)


def _merged(
    found: dict[int, list[RunSummary]], key: Callable[[RunSummary], Any], limit: int
) -> list[RunSummary]:
    """The first ``limit`` runs of the shards' answers in the query's order, each once (a
    run that moved between two requests to its shard could be in both)."""
    runs = sorted((r for runs in found.values() for r in runs), key=key)
    seen: set[str] = set()
    out: list[RunSummary] = []
    for run in runs:
        if run.id not in seen:
            seen.add(run.id)
            out.append(run)
            if len(out) == limit:
                break
    return out


class MarkerNotFound(LookupError):
    """The --marker run is not in the index (deleted, or never existed)."""


class IndexOutdated(RuntimeError):
    """A shard's query index has entries in an older layout: queries would miss runs."""


# A key only the layout before the texts became one object per run had (a hash per text
# field); a rebuild drops it, a run's next append removes its own entries from it.
_OLD_LAYOUT_KEY = ":t:state"


def _bound(value: float, inclusive: bool) -> str:
    return ("" if inclusive else "(") + repr(float(value))


def _range(field: str, op: str, value: float) -> list[Any]:
    """[zset field, ZRANGE min, max, lo, lo inclusive, hi, hi inclusive]"""
    match op:
        case "eq":
            return [field, _bound(value, True), _bound(value, True), value, True, value, True]
        case "gt":
            return [field, _bound(value, False), "+inf", value, False, None, False]
        case "gte":
            return [field, _bound(value, True), "+inf", value, True, None, False]
        case "lt":
            return [field, "(-inf", _bound(value, False), None, False, value, False]
        case _:
            return [field, "(-inf", _bound(value, True), None, False, value, True]


def clause(f: Filter) -> dict[str, Any]:
    """How lua/query.lua tests one filter: index sets, score ranges, or reading the summary."""
    neg = f.op in ("neq", "nin")
    op = {"neq": "eq", "nin": "eq", "in": "eq"}.get(f.op, f.op)
    sets: list[str] = []
    ranges: list[list[Any]] = []
    scan: dict[str, Any] | bool = False
    if f.field.startswith(ARGS_PREFIX):
        arg = f.field[len(ARGS_PREFIX) :]
        if op == "eq":
            sets = [f"{f.field}={v}" for v in f.values]
        elif op == "has":
            scan = {"field": "args", "arg": arg, "op": op, "values": list(f.values), "text": False}
        else:
            ranges = [_range(f.field, op, f.values[0])]
        return {"neg": neg, "sets": sets, "ranges": ranges, "scan": scan}
    kind = FIELDS[f.field].kind
    if kind in (Kind.NUMBER, Kind.TIME):
        ranges = [_range(f.field, op, v) for v in f.values]
    elif kind in (Kind.KEYWORD, Kind.LABELS) and op == "eq":
        sets = [f"{f.field}={v}" for v in f.values]
    else:
        # Keyword and text fields are read from the index's text hashes.
        text = kind in (Kind.KEYWORD, Kind.TEXT)
        scan = {"field": f.field, "arg": False, "op": op, "values": list(f.values), "text": text}
        if kind in (Kind.KEYWORD, Kind.LABELS):
            # The values of the field that match, when there are not too many: their sets.
            values = {"field": f.field, "op": op, "values": list(f.values)}
            return {"neg": neg, "sets": sets, "ranges": ranges, "scan": scan, "values": values}
    return {"neg": neg, "sets": sets, "ranges": ranges, "scan": scan}


def _unsorted(field: str) -> str | bool:
    """How lua/query.lua orders by a key without a sorted set in the index: 'arg' (an
    argument: numbers, then texts), 'text' (a keyword: by its text); False: it has one."""
    if field not in FIELDS:
        return "arg"
    return False if FIELDS[field].sorted_set else "text"


def _marker_place(marker: RunSummary, q: Query) -> dict[str, list[Any]]:
    """Where the marker run stands per sort key, as lua/query.lua's tuple() has it."""
    z = query.postings(marker)["z"]
    classes: list[int] = []
    scores: list[str] = []
    texts: list[str] = []
    for k in q.sort:
        if k.field in FIELDS:
            value = FIELDS[k.field].read(marker)
            classes.append(1)
            scores.append(z.get(k.field, "0"))
            texts.append(value if isinstance(value, str) else "")
            continue
        cls, value = query.sort_value(marker, k.field)
        classes.append(cls)
        scores.append(repr(value) if cls == 1 else "0")
        texts.append(value.decode() if cls == 2 else "")
    return {"classes": classes, "scores": scores, "texts": texts}


class Searcher:
    def __init__(self, redis: aredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._query = redis.register_script(lua.source("query"))
        self._loaded = False

    def _plan(self, q: Query, count: bool, marker: RunSummary | None) -> bytes:
        sort = [
            [
                k.field,
                k.desc,
                k.field in FIELDS and FIELDS[k.field].kind in (Kind.ID, Kind.KEYWORD, Kind.TEXT),
                _unsorted(k.field),
                k.field in FIELDS and FIELDS[k.field].kind is Kind.KEYWORD,
                k.field in FIELDS and FIELDS[k.field].lexical,
            ]
            for k in q.sort
        ]
        marker_plan: dict[str, Any] | bool = False
        if marker is not None:
            marker_plan = {
                "id": marker.id,
                "id_score": query.id_score(marker.id),
                **_marker_place(marker, q),
            }
        return _encode(
            {
                "clauses": [clause(f) for f in q.filters],
                "sort": sort,
                "limit": q.limit,
                "count": count,
                "marker": marker_plan,
                "walk_budget": WALK_BUDGET,
                "max_values": MAX_VALUES,
                "max_matching": MAX_MATCHING,
                "max_groups": MAX_GROUPS,
            }
        )

    async def _each_shard(self, plan: bytes) -> list[Any]:
        return await self._on_shards({shard: plan for shard in range(self.keys.shards)})

    async def _on_shards(self, plans: dict[int, bytes]) -> list[Any]:
        """query.lua's reply of each shard to its plan, in the order of ``plans``."""
        k = self.keys
        if not self._loaded:  # EVALSHA in a pipeline does not load the script by itself
            await self._check_layout()
            await self.redis.script_load(self._query.script)
            self._loaded = True
        # One script call per shard (each touches only its shard's slot), pipelined.
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, plan in plans.items():
                base = k.query_index(shard)
                lua.queue_evalsha(
                    pipe, self._query.sha, [base, k.index(shard), f"{base}:tmp"], [plan]
                )
            return list(await pipe.execute())

    async def _check_layout(self) -> None:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(k.shards):
                pipe.exists(k.query_index(shard) + _OLD_LAYOUT_KEY)
            old = [shard for shard, n in enumerate(await pipe.execute()) if n]
        if old:
            raise IndexOutdated(
                f"the query index of shard {old[0]} was written by an older runstream and "
                "would miss runs: run `runctl rebuild-index` once"
            )

    async def _marker(self, run_id: str) -> RunSummary:
        raw = await self.redis.hget(self.keys.index(self.keys.shard_of(run_id)), run_id)
        if raw is None:
            raise MarkerNotFound(
                f"marker run {run_id} is not in the index (deleted, or never existed)"
            )
        return _summary_decoder.decode(raw)

    async def search(self, q: Query) -> list[RunSummary]:
        """One page of matching runs, in the query's order, after ``q.marker``.

        Each shard is asked first for its share of the page and a margin
        (``first_share``), not for a whole page: the shard's walk and the summaries it
        sends shrink with it (a page of 50 over 4 shards: about half). A shard whose
        share ran short (its last run is within the page) is asked again for a whole
        page after that run; then no run of it can be missing."""
        marker = await self._marker(q.marker) if q.marker else None
        key = functools.partial(query.sort_tuple, keys=q.sort)
        share = first_share(q.limit, self.keys.shards)
        plan = self._plan(msgspec.structs.replace(q, limit=share), False, marker)
        found: dict[int, list[RunSummary]] = {}
        for shard, reply in enumerate(await self._each_shard(plan)):
            found[shard] = [_summary_decoder.decode(raw) for raw in reply[1:]]
        page = _merged(found, key, q.limit)
        cut = key(page[-1]) if len(page) == q.limit else None
        # Shards that may hold more runs of the page: a full share, its last run before
        # the page's last (or the page is not full).
        again = {
            shard: self._plan(q, False, runs[-1])
            for shard, runs in found.items()
            if len(runs) == share < q.limit and (cut is None or key(runs[-1]) < cut)
        }
        if not again:
            return page
        for shard, reply in zip(again, await self._on_shards(again), strict=True):
            found[shard] += [_summary_decoder.decode(raw) for raw in reply[1:]]
        return _merged(found, key, q.limit)

    async def count(self, q: Query) -> int:
        replies = await self._each_shard(self._plan(q, True, None))
        return sum(int(reply[1]) for reply in replies)
