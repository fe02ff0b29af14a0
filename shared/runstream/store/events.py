"""The event store: one Redis stream of events per run, appended atomically by Lua.

An append checks, in one script on the run's shard slot: the run is not deleted, the
command was not applied before (``command_id`` dedupe), the expected version, and the
executor's lease. It then appends the events, copies them to the shard's feed, updates
the read model and the runnable set, stores a snapshot when due, and acks the command
message, all at once. So a command is acknowledged exactly when its events are stored.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import redis.asyncio as aredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from runstream import lua, query
from runstream.contracts import events as ev
from runstream.domain.run import Run, RunState, apply, summarize
from runstream.keys import Fields, Keys
from runstream.settings import Settings
from runstream.store import index_delta, outputs, replies
from runstream.store.index_delta import IndexMemory

# How long a rejection of a command for a run without history is remembered (dedupe).
REJECTION_MEMORY_S = 7 * 24 * 3600

LOAD_PAGE = 500
# Runs kept as this process last saved them (see EventStore.recent): a few KB each.
RECENT_RUNS = 4096

Status = Literal["ok", "dup", "stale", "lease", "deleted"]

_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(RunState)
_summary_encoder = msgspec.json.Encoder()
_postings_encoder = msgspec.json.Encoder()


def encoded_summary(s: RunState) -> tuple[bytes, bytes]:
    """The run's read-model entry and its query index postings, as the scripts take them."""
    summary, postings, _ = summary_and_postings(s)
    return summary, postings


def summary_and_postings(s: RunState) -> tuple[bytes, bytes, query.Posting]:
    """encoded_summary, with the postings also as they are (for the index delta)."""
    summary = summarize(s)
    postings = query.postings(summary)
    return _summary_encoder.encode(summary), _postings_encoder.encode(postings), postings


def _field(fields: object, name: bytes) -> bytes:
    """A stream entry's field, from XRANGE (a dict) or from a script (a flat list)."""
    if isinstance(fields, dict):
        return fields[name]  # type: ignore[no-any-return]
    assert isinstance(fields, list)
    return fields[fields.index(name) + 1]  # type: ignore[no-any-return]


class Tombstone(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    scenario: str
    actor: str
    deleted_at: float
    effects_left: int
    irreversible: int
    command_id: str = ""


@dataclass(frozen=True, slots=True)
class AppendResult:
    status: Status
    version: int


@dataclass(frozen=True, slots=True)
class Ack:
    """The command message to acknowledge together with an append."""

    shard: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class Save:
    """One run's new events to append, as ``EventStore.save`` takes them."""

    run: Run
    command_id: str = ""
    lease_owner: str = ""
    release_lease: bool = False
    ack: Ack | None = None
    output: outputs.RunOutput | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """A script call made ready: sent alone or in a pipeline; ``done`` reads its reply."""

    script: AsyncScript
    keys: list[str]
    args: list[Any]
    done: Callable[[Any], Any]


async def _call_all(redis: aredis.Redis, calls: Sequence[_Call]) -> list[Any]:
    """Every call in one pipelined round trip (not a transaction: each script is atomic on
    its own); each call's ``done(reply)``, or the error it met. A script Redis does not
    have cached yet (NOSCRIPT: nothing ran) is sent again alone, which loads it."""
    if not calls:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            lua.queue_evalsha(pipe, call.script.sha, call.keys, call.args)
        raw = await pipe.execute(raise_on_error=False)
    out: list[Any] = []
    for call, reply in zip(calls, raw, strict=True):
        if isinstance(reply, NoScriptError):
            try:
                reply = await call.script(keys=call.keys, args=call.args)
            except Exception as exc:
                reply = exc
        out.append(reply if isinstance(reply, Exception) else call.done(reply))
    return out


class EventStore:
    def __init__(self, redis: aredis.Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self._append = redis.register_script(lua.source("append"))
        self._delete = redis.register_script(lua.source("delete"))
        self._reject = redis.register_script(lua.source("reject"))
        self._load = redis.register_script(lua.source("load"))
        self._indexed = IndexMemory()
        # run id -> (version, the Run as saved at that version): see ``recent``.
        self._recent: OrderedDict[str, tuple[int, Run]] = OrderedDict()

    # ------------------------------------------------------------------ reading
    def _load_keys(self, run_id: str) -> list[str]:
        k = self.keys
        return [k.meta(run_id), k.snapshot(run_id), k.tombs(k.shard_of(run_id)), k.events(run_id)]

    async def load(self, run_id: str) -> Run:
        """The run as of its latest event: snapshot plus the events after it."""
        reply = await self._load(keys=self._load_keys(run_id), args=[run_id, LOAD_PAGE])
        return await self._fold(run_id, reply)

    async def load_under_lease(self, run_id: str, owner: str, lease_ms: int) -> Run | None:
        """Take the run's execution lease (as Leases.acquire) and load it, in one round
        trip; None if someone else holds the lease. A deleted run is not leased."""
        call = self._lease_load_call(run_id, owner, lease_ms)
        reply = await self._load(keys=call.keys, args=call.args)
        return await self._fold_leased(run_id, reply)

    async def load_many_under_lease(
        self, run_ids: Sequence[str], owner: str, lease_ms: int
    ) -> list[Run | Exception | None]:
        """load_under_lease for several runs in one pipelined round trip (plus one per run
        with a long tail); in place of a run, the error its call met (its lease may have
        been taken all the same)."""
        calls = [self._lease_load_call(run_id, owner, lease_ms) for run_id in run_ids]
        out: list[Run | Exception | None] = []
        for run_id, reply in zip(run_ids, await _call_all(self.redis, calls), strict=True):
            if isinstance(reply, Exception):
                out.append(reply)
                continue
            try:
                out.append(await self._fold_leased(run_id, reply))
            except Exception as exc:  # the long tail's round trip
                out.append(exc)
        return out

    def _lease_load_call(self, run_id: str, owner: str, lease_ms: int) -> _Call:
        keys = [
            *self._load_keys(run_id),
            self.keys.lease(run_id),
            self.keys.leases(self.keys.shard_of(run_id)),
        ]
        return _Call(self._load, keys, [run_id, LOAD_PAGE, owner, lease_ms], _identity)

    async def _fold_leased(self, run_id: str, reply: list[Any]) -> Run | None:
        return None if reply[0] == b"leased" else await self._fold(run_id, reply)

    def recent(self, run_id: str) -> Run | None:
        """A copy of the run as this process last saved it, if that object has not changed
        since (else None). It may be stale (another process appended since): good for a
        decision whose append checks the version, as every append does; on 'stale', load."""
        kept = self._recent.get(run_id)
        if kept is None:
            return None
        version, run = kept
        if run.state.version != version or run.new_events:
            del self._recent[run_id]  # changed since (by whoever holds it): not as saved
            return None
        return Run(_state_decoder.decode(_state_encoder.encode(run.state)))

    def _saved(self, run: Run) -> None:
        run_id = run.state.run_id
        self._recent[run_id] = (run.state.version, run)
        self._recent.move_to_end(run_id)
        while len(self._recent) > RECENT_RUNS:
            self._recent.popitem(last=False)

    async def load_many(self, run_ids: Sequence[str]) -> list[Run]:
        """Several runs in one pipelined round trip (plus one per run with a long tail)."""
        calls = [
            _Call(self._load, self._load_keys(run_id), [run_id, LOAD_PAGE], _identity)
            for run_id in run_ids
        ]
        loaded = await _call_all(self.redis, calls)
        for reply in loaded:
            if isinstance(reply, Exception):
                raise reply
        return [
            await self._fold(run_id, reply) for run_id, reply in zip(run_ids, loaded, strict=True)
        ]

    async def _fold(self, run_id: str, reply: list[Any]) -> Run:
        if reply[0] == b"deleted":
            return Run(RunState(run_id=run_id, state="deleted"))
        _, snapshot, entries = reply
        run = Run(_state_decoder.decode(snapshot) if snapshot else RunState(run_id=run_id))
        while True:
            for _entry_id, fields in entries:
                apply(run.state, ev.decode_for_fold(_field(fields, Fields.EVENT)))
            if len(entries) < LOAD_PAGE:
                return run
            # A long tail (no snapshot yet written): page through the rest.
            start = b"(" + entries[-1][0]
            entries = await self.redis.xrange(self.keys.events(run_id), start, "+", count=LOAD_PAGE)

    async def history(self, run_id: str) -> list[tuple[str, ev.Event]]:
        entries = replies.entries(await self.redis.xrange(self.keys.events(run_id)))
        return [(i.decode(), ev.decode_event(f[Fields.EVENT])) for i, f in entries]

    async def chunks_before(
        self, run_id: str, cursor: str, count: int
    ) -> list[tuple[str, ev.Event]]:
        """Events from ``cursor`` (inclusive; "+" = the newest) backwards."""
        entries = replies.entries(
            await self.redis.xrevrange(self.keys.events(run_id), cursor, "-", count=count)
        )
        return [(i.decode(), ev.decode_event(f[Fields.EVENT])) for i, f in entries]

    # ------------------------------------------------------------------ writing
    async def save(
        self,
        run: Run,
        *,
        command_id: str = "",
        lease_owner: str = "",
        release_lease: bool = False,
        ack: Ack | None = None,
        output: outputs.RunOutput | None = None,
    ) -> AppendResult:
        """Append the run's new events, if its version is still the one they were based on;
        ``output`` (log lines, result files) becomes visible with them. ``lease_owner``: only
        while it holds the run's lease (renewed), given back if ``release_lease``."""
        return await self.save_one(Save(run, command_id, lease_owner, release_lease, ack, output))

    async def save_one(self, save: Save) -> AppendResult:
        """``save``, as a ``Save``."""
        call = self._save_call(save)
        result: AppendResult = call.done(await call.script(keys=call.keys, args=call.args))
        return result

    async def save_many(self, saves: Sequence[Save]) -> list[AppendResult | Exception]:
        """Several runs' saves (as ``save``) in one pipelined round trip; in place of a
        result, the error its append met (it may or may not have been applied)."""
        return await _call_all(self.redis, [self._save_call(save) for save in saves])

    def _save_call(self, save: Save) -> _Call:
        run = save.run
        events = run.take_events()
        s = run.state
        expected = s.version - len(events)
        if any(isinstance(e, ev.RunDeleted) for e in events):
            return self._delete_call(run, events, expected, save.command_id, save.ack)
        k = self.keys
        run_id = s.run_id
        shard = k.shard_of(run_id)
        due = expected // self.settings.snapshot_every != s.version // self.settings.snapshot_every
        summary, postings, posting = summary_and_postings(s)
        based_on, index_ops = self._indexed.change(run_id, posting, new_run=expected == 0)
        output = save.output
        args: list[str | bytes | int | float] = [
            expected,
            save.command_id,
            save.lease_owner,
            self.settings.lease_ms,
            run_id,
            summary,
            s.runnable_score if s.needs_executor else "-",
            k.group,
            save.ack.entry_id if save.ack else "",
            _state_encoder.encode(s) if due else "",
            len(events),
        ]
        output_args, n_lines, n_results = outputs.script_args(output)
        args += [
            self.settings.max_log_lines,
            repr(output.at) if output else "",
            n_lines,
            n_results,
            postings,
            based_on,
            index_ops,
            "1" if save.release_lease else "",
        ]
        for e in events:
            stored = ev.encode_event(e)
            args.append(stored)
            slimmed = isinstance(e, ev.ChunkPrepared | ev.RunTracked)
            args.append(ev.encode_event(ev.slim(e)) if slimmed else stored)
        args += output_args

        def done(reply: Any) -> AppendResult:
            status, version = reply
            result = AppendResult(status.decode(), int(version))
            if result.status == "ok":
                self._indexed.wrote(run_id, postings, posting)
                self._saved(run)
            else:
                self._indexed.forget(run_id)  # someone else's append may have come first
                self._recent.pop(run_id, None)
            return result

        keys = [
            k.events(run_id),
            k.meta(run_id),
            k.seen(run_id),
            k.feed(shard),
            k.index(shard),
            k.runnable(shard),
            k.lease(run_id),
            k.commands(shard),
            k.tombs(shard),
            k.snapshot(run_id),
            k.logs(run_id),
            k.results(run_id),
            k.result_meta(run_id),
            k.query_index(shard),
            k.leases(shard),
        ]
        return _Call(self._append, keys, args, done)

    def _delete_call(
        self,
        run: Run,
        events: list[ev.Event],
        expected: int,
        command_id: str,
        ack: Ack | None,
    ) -> _Call:
        k = self.keys
        s = run.state
        run_id = s.run_id
        shard = k.shard_of(run_id)
        deleted = next(e for e in events if isinstance(e, ev.RunDeleted))
        tomb = Tombstone(
            run_id=run_id,
            scenario=s.scenario,
            actor=deleted.actor,
            deleted_at=deleted.at,
            effects_left=deleted.effects_left,
            irreversible=deleted.irreversible,
            command_id=command_id,
        )
        keys = [
            k.meta(run_id),
            k.seen(run_id),
            k.feed(shard),
            k.index(shard),
            k.runnable(shard),
            k.commands(shard),
            k.tombs(shard),
            k.audit(shard),
            k.query_index(shard),
            *k.run_keys(run_id),
        ]
        args = [
            expected,
            command_id,
            run_id,
            k.group,
            ack.entry_id if ack else "",
            msgspec.json.encode(tomb),
            len(events),
            *self._indexed.change(run_id, index_delta.NONE, new_run=False),
            *(ev.encode_event(ev.slim(e)) for e in events),
        ]

        def done(reply: Any) -> AppendResult:
            status, version = reply
            self._indexed.forget(run_id)
            self._recent.pop(run_id, None)
            return AppendResult(status.decode(), int(version))

        return _Call(self._delete, keys, args, done)

    async def reject_unknown(self, run_id: str, event: ev.CommandRejected, ack: Ack | None) -> None:
        """A rejection for a run with no history: told on the feed once per command_id
        (redeliveries and re-publishing don't repeat it); nothing else changes."""
        k = self.keys
        shard = k.shard_of(run_id)
        await self._reject(
            keys=[k.feed(shard), k.rejected(run_id, event.command_id), k.commands(shard)],
            args=[
                run_id,
                ev.encode_event(event),
                REJECTION_MEMORY_S,
                k.group,
                ack.entry_id if ack else "",
            ],
        )

    async def tombstone(self, run_id: str) -> Tombstone | None:
        raw = await self.redis.hget(self.keys.tombs(self.keys.shard_of(run_id)), run_id)
        return msgspec.json.decode(raw, type=Tombstone) if raw else None


def _identity(reply: Any) -> Any:
    return reply
