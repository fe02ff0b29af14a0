"""The run index (the read models ``list``/``show``/queries use), rebuilt from the runs'
events; with each run's log and result files (``runstream.store.outputs``).

Every append writes its run's summary and query postings in the same script, so the
index is always current; this rebuilds it from scratch (after a bug, a manual edit, a
restore, a new queryable field) with the same result.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import msgspec
import redis.asyncio as aredis
from redis.commands.core import AsyncScript

from runstream import lua, query
from runstream.contracts import events as ev
from runstream.domain.run import RunState, apply
from runstream.keys import Fields, Keys
from runstream.store import outputs, replies
from runstream.store.events import EventStore, summary_and_postings

BATCH = 500  # runs loaded, and written back, per pipelined round trip
# Batches in flight at once: Redis writes one batch while this process folds the next
# (each side is about half of the time: one batch at a time leaves both half idle).
IN_FLIGHT = 3
SCAN_COUNT = 1000
# Events read per run by the batch's script; a longer history's rest is read page by page.
HISTORY_PAGE = 64

_msgpack = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class Rebuilt:
    runs: int
    events: int  # the events the rebuilt runs' states fold (snapshots included)


@dataclass(frozen=True, slots=True)
class _Scripts:
    put: AsyncScript  # lua/index_put_batch.lua
    histories: AsyncScript  # lua/histories.lua


def _scripts(redis: aredis.Redis) -> _Scripts:
    return _Scripts(
        put=redis.register_script(lua.source("index_put_batch")),
        histories=redis.register_script(lua.source("histories")),
    )


@dataclass(slots=True)
class _Found:
    """What one pass over the deployment's shard keys found, per shard."""

    run_ids: list[list[str]]
    index_keys: list[list[str]]  # the query index's keys (dropped before the rebuild)


@dataclass(slots=True)
class _Batch:
    shard: int
    run_ids: list[str]
    runs: int = 0
    events: int = 0
    with_outputs: list[tuple[str, list[ev.Event]]] = field(default_factory=list)
    # What _read found: per run, lua/index_put_batch.lua's arguments; the postings by key.
    entries: list[str | bytes | int | float] = field(default_factory=list)
    grouped: _Grouped = field(default_factory=lambda: _Grouped())


async def _scan(redis: aredis.Redis, keys: Keys) -> _Found:
    """Every run (by its meta key) and every query index key of every shard, in one SCAN
    of the shards' keys (a pass per shard and per pattern read the whole keyspace each)."""
    found = _Found([[] for _ in range(keys.shards)], [[] for _ in range(keys.shards)])
    async for raw in redis.scan_iter(match=keys.shard_keys_pattern(), count=SCAN_COUNT):
        key = replies.text(raw)
        shard = keys.shard_of_key(key)
        if shard is None:
            continue
        if keys.is_query_index_key(shard, key):
            found.index_keys[shard].append(key)
        elif key.endswith(":meta") and keys.is_run_key(shard, key):
            found.run_ids[shard].append(keys.run_id_of_meta(key))
    return found


async def _drop(redis: aredis.Redis, keys: Keys, shard: int, index_keys: list[str]) -> None:
    doomed = [keys.index(shard), keys.runnable(shard), *index_keys]
    for i in range(0, len(doomed), 1000):
        await redis.unlink(*doomed[i : i + 1000])


async def rebuild(redis: aredis.Redis, keys: Keys, store: EventStore) -> Rebuilt:
    """Drop each shard's read models and rebuild them from the runs' events."""
    found = await _scan(redis, keys)
    for shard in range(keys.shards):
        await _drop(redis, keys, shard, found.index_keys[shard])
    return await _reindex(redis, keys, store, found.run_ids)


async def _reindex(
    redis: aredis.Redis, keys: Keys, store: EventStore, run_ids: list[list[str]]
) -> Rebuilt:
    scripts = _scripts(redis)
    todo = deque(
        _Batch(shard, ids[i : i + BATCH])
        for shard, ids in enumerate(run_ids)
        for i in range(0, len(ids), BATCH)
    )
    done: list[_Batch] = []

    async def rebuild_batches() -> None:
        while todo:
            batch = todo.popleft()
            await _read(redis, keys, scripts, batch)
            await _write(redis, keys, scripts, batch, store.settings.max_log_lines)
            done.append(batch)

    await asyncio.gather(*(rebuild_batches() for _ in range(IN_FLIGHT)))
    return Rebuilt(sum(b.runs for b in done), sum(b.events for b in done))


class _Grouped:
    """A batch's query index entries by key, as lua/index_put_batch.lua writes them."""

    def __init__(self) -> None:
        self.z: dict[str, list[str]] = {}  # field -> score, run_id, score, run_id ...
        self.s: dict[str, list[str]] = {}  # member -> run ids
        self.t: list[str] = []  # run_id, texts ...
        self.l: dict[str, list[str]] = {}  # field -> lex prefix, run_id ...

    def add(self, run_id: str, posted: query.Posting) -> None:
        z, s = self.z, self.s
        for name, score in posted["z"].items():
            if name in z:
                z[name] += (score, run_id)
            else:
                z[name] = [score, run_id]
        for member in posted["s"]:
            if member in s:
                s[member].append(run_id)
            else:
                s[member] = [run_id]
        if posted["t"]:
            self.t += (run_id, posted["t"])
        lexical = self.l
        for name, prefix in posted["l"].items():
            if name in lexical:
                lexical[name] += (prefix, run_id)
            else:
                lexical[name] = [prefix, run_id]

    def encode(self) -> bytes:
        return _msgpack.encode({"z": self.z, "s": self.s, "t": self.t, "l": self.l})


async def _histories(
    redis: aredis.Redis, keys: Keys, scripts: _Scripts, run_ids: list[str]
) -> list[list[bytes]]:
    """The runs' events (as stored), each run's whole history, oldest first."""
    reply = await scripts.histories(keys=[keys.events(r) for r in run_ids], args=[HISTORY_PAGE])
    out: list[list[bytes]] = []
    for run_id, (events, last) in zip(run_ids, reply, strict=True):
        while last is not None:  # a long history: the rest page by page
            tail = replies.entries(
                await redis.xrange(keys.events(run_id), b"(" + last, "+", count=HISTORY_PAGE)
            )
            events += [fields[Fields.EVENT] for _, fields in tail]
            last = tail[-1][0] if len(tail) == HISTORY_PAGE else None
        out.append(events)
    return out


def _fold(run_id: str, raw: list[bytes]) -> tuple[RunState, list[ev.Event] | None]:
    """The run's state from its whole history; with the history fully decoded when it
    holds outputs (log lines, result files), None when it has none to keep."""
    folded = [ev.decode_for_fold(data) for data in raw]
    state = RunState(run_id=run_id)
    for event in folded:
        apply(state, event)
    if not outputs.may_have_outputs(folded):
        return state, None
    return state, [ev.decode_event(data) for data in raw]


async def _read(redis: aredis.Redis, keys: Keys, scripts: _Scripts, batch: _Batch) -> None:
    """The batch's runs' entries, from their events."""
    # Each run's whole history, read once: it folds into the run's state and gives its
    # log and result files.
    histories = await _histories(redis, keys, scripts, batch.run_ids)
    entries, grouped = batch.entries, batch.grouped
    for run_id, stream in zip(batch.run_ids, histories, strict=True):
        state, history = _fold(run_id, stream)
        if state.state in ("new", "deleted"):
            continue
        summary, postings, posted = summary_and_postings(state)
        grouped.add(run_id, posted)
        has_outputs = history is not None and bool(outputs.outputs_in(history))
        entries += (
            run_id,
            summary,
            state.version,
            "1" if state.needs_executor else "0",
            state.runnable_score,
            postings,
            "1" if has_outputs else "0",
        )
        if has_outputs:
            assert history is not None
            batch.with_outputs.append((run_id, history))
        batch.runs += 1
        batch.events += state.version


async def _write(
    redis: aredis.Redis, keys: Keys, scripts: _Scripts, batch: _Batch, max_lines: int
) -> None:
    """Write what ``_read`` found (keeping entries a worker wrote meanwhile, if newer)."""
    entries, shard = batch.entries, batch.shard
    if entries:
        # The script also clears the log and result files of the runs without any (what
        # outputs.rebuild would leave).
        await scripts.put(
            keys=[
                keys.index(shard),
                keys.runnable(shard),
                keys.query_index(shard),
                keys.run_keys_base(shard),
            ],
            args=[len(entries) // 7, batch.grouped.encode(), *entries],
        )
    for run_id, history in batch.with_outputs:
        await outputs.rebuild(redis, keys, run_id, history, max_lines)
