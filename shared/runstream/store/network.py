"""The network: a graph of nodes and edges with attributes, in Redis.

Elements are ``n:<node>`` and ``e:<src>|<dst>``; ``values`` holds their attributes (JSON)
and ``stamps`` the stamp of the effect that last wrote each one. Stamps are how revert
tells "still as this run left it" from "changed by someone else since".

The network is split into P partitions, each its own Redis Cluster slot; an element's
partition comes from its namespace (``Keys.partition_of``). P=1, the default on one Redis,
is one slot, as before partitions existed.

A chunk's effects reach the network in two phases, because the run's history and the
network live in different slots (different nodes on Redis Cluster) and no one script can
write both:

1. the run records the chunk's effects (``ChunkPrepared``) in its history;
2. the effects are written to the network, marked by the chunk's token; the run then
   records ``ItemsProcessed``.

If the worker dies between 1 and 2, whoever resumes the run calls ``resolve_chunk``: it
finds the chunk applied (record ``ItemsProcessed``) or makes sure it never will be (record
``ChunkVoided``). So a network change is never made without being in the history, and a
late writer can't apply a voided chunk.

**A chunk on one partition** (every chunk when P=1; with P>1 every chunk of a run working
in one namespace) is written by one script, ``apply_chunk``, all or nothing; resolving it
marks it void in that partition unless it is marked applied ('a' / 'v').

**A chunk on k>1 partitions** is written by a two-phase commit whose coordinator's log is
the run's history (``ChunkPrepared`` holds every effect, so anyone can finish the commit).
Each partition holds a mark for the chunk's token: none, 'p' prepared, 'a' applied, 'v'
voided.

- ``prepare`` (partitions in ascending order): checks the stamps the effects were computed
  over, reserves the elements (``pending``: element -> token) and marks 'p'. On a conflict
  (a stamp changed) it marks 'v' there itself. An element another chunk reserves leaves
  the partition unmarked (``ElementReserved``): the writer tries again once that chunk is
  settled (see "Waiting for a reservation" below).
- ``commit``, once every partition answered 'p' (or 'a'): writes the effects, releases the
  reservations, marks 'a'. It refuses a partition not marked 'p'.
- ``void``: an unmarked or prepared partition becomes 'v' (releasing); 'a' stays.
- ``resolve`` (a dead worker's chunk): on every partition, its mark, or 'v' set where there
  was none; then all 'p'/'a': commit all (roll forward); else void all.

Marks move only none -> p -> a, none -> v and p -> v; 'v' and 'a' are final (until they
expire after CHUNK_MARK_TTL_S, or the run has recorded the outcome and forgets them).

*Invariant: a chunk never has both an 'a' and a 'v' partition, so its effects are written
everywhere or nowhere.* An 'a' needs a commit, issued only by someone who saw every
partition in 'p'/'a', one after the other. The first 'v' the chunk ever gets is set on an
unmarked partition m (``prepare`` on a conflict, or ``resolve``): a 'p' -> 'v' only comes
from a ``void`` run by someone who saw a 'v' first. If the committer saw m in 'p'/'a'
before the 'v' was set, m was marked then and could not be set 'v' as unmarked; if after,
it would have seen 'v' (final). Either way a contradiction: once any partition is 'v', no
commit ever happens, and once one happened, no 'v' ever appears. Commits and voids are
idempotent, so a coordinator and a resolver racing each other both finish the same way.

Replication being asynchronous, a failover can lose a master's last writes, marks among
them, and leave a chunk applied on one partition but unmarked on another (which resolve
then marks 'v'): the commit was decided, so resolve finishes it everywhere (logged as
``chunk_marks_lost``) instead of leaving the run stuck.

Reservations keep a prepared element exactly as ``prepare`` checked it until the commit:
every other writer respects them (``apply_chunk`` and ``prepare`` change nothing and raise
``ElementReserved``, a revert step waits, ``put`` refuses). Readers may see a committing
chunk on one partition before another: each element's write is atomic, the chunk's are not.

**Waiting for a reservation.** A chunk that meets another's reservation is left as it is
(recorded, unmarked where it met it) and written again later under the same token; the
worker waits for that (runstream_worker.chunk_protocol). That is safe: stamps are checked
before reservations, so a chunk is never told "reserved" when it is already in conflict;
when the reservation goes, its stamps are checked again (the holder committed: a conflict,
voided and redone over the new values; the holder voided: the stamps still hold). Waiting
holds reservations only on partitions below the one waited on (prepare goes in ascending
order), so whoever it waits for waits, if at all, on a higher partition: the waits form no
cycle. A chunk on one partition, a revert step and ``put`` hold none while they wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aredis
import structlog

from runstream import lua
from runstream.contracts.events import EffectRecord
from runstream.keys import Keys
from runstream.store import replies

log = structlog.get_logger("runstream.network")

CHUNK_MARK_TTL_S = 30 * 24 * 3600
STEP_MARK_TTL_S = 24 * 3600

ApplyOutcome = Literal["ok", "applied", "voided", "conflict"]


class Compensation(msgspec.Struct, frozen=True, array_like=True):
    """One effect to take back: put ``element`` back to ``before`` if it still carries ``stamp``."""

    effect_no: int
    element: str
    stamp: str
    before_stamp: str
    before: str


Letter = Literal["a", "c", "f", "x"]


class Decision(msgspec.Struct, frozen=True, array_like=True):
    """What revert does with one effect (decided by the ``compensate`` script): ``a``
    already as before, ``c`` compensated, ``f`` compensated over someone else's change
    (force), ``x`` skipped as a conflict. ``holder``: for f and x, the stamp the element
    carried instead of the effect's (who changed it since)."""

    letter: Letter
    holder: str = ""

    @property
    def compensated(self) -> bool:
        return self.letter != "x"


class ElementReserved(Exception):
    """A write met an element reserved by a chunk being written on several partitions;
    reservations last until that chunk is committed or voided: try again later.
    ``holder``: that chunk's token (``<run_id>:<chunk>``) where known."""

    def __init__(self, element: str, holder: str = "") -> None:
        super().__init__(f"{element} is reserved by chunk {holder or '(another)'} being written")
        self.element = element
        self.holder = holder


class ChunkProtocolBroken(RuntimeError):
    """A partition answered what the two-phase commit's invariant rules out."""


class NetworkStore:
    def __init__(self, redis: aredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._apply = redis.register_script(lua.source("apply_chunk"))
        self._resolve = redis.register_script(lua.source("resolve_chunk"))
        self._compensate = redis.register_script(lua.source("compensate"))
        self._prepare = redis.register_script(lua.source("prepare_chunk"))
        self._commit = redis.register_script(lua.source("commit_chunk"))
        self._void = redis.register_script(lua.source("void_chunk"))
        self._put = redis.register_script(lua.source("put_element"))
        # forget_*_soon's deletes under way (kept: a task nobody holds may be dropped).
        self._forgetting: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ partitions
    @property
    def partitioned(self) -> bool:
        return self.keys.partitions > 1

    def partitions_of(
        self, effects: Sequence[EffectRecord], notifications: Sequence[str] = ()
    ) -> list[int]:
        """The partitions a chunk writes, ascending (the outbox is partition 0's)."""
        if not self.partitioned:
            return [0]
        parts = {self.keys.partition_of(e.element) for e in effects}
        if notifications:
            parts.add(0)
        return sorted(parts) or [0]

    def partitions_of_elements(self, elements: Iterable[str]) -> list[int]:
        if not self.partitioned:
            return [0]
        return sorted({self.keys.partition_of(e) for e in elements}) or [0]

    def _by_partition(self, elements: Sequence[str]) -> dict[int, list[int]]:
        """Positions of ``elements`` grouped by partition, in order."""
        groups: dict[int, list[int]] = {}
        for at, element in enumerate(elements):
            groups.setdefault(self.keys.partition_of(element), []).append(at)
        return groups

    # ------------------------------------------------------------------ reads
    async def read(self, elements: Sequence[str]) -> tuple[list[str], list[str]]:
        """Current values and stamps ("" where absent), read together (per partition)."""
        if not elements:
            return [], []
        if not self.partitioned:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hmget(self.keys.net_values(0), elements)
                pipe.hmget(self.keys.net_stamps(0), elements)
                raw_values, raw_stamps = await pipe.execute()
            return (
                [v.decode() if v is not None else "" for v in raw_values],
                [s.decode() if s is not None else "" for s in raw_stamps],
            )
        values: list[str] = [""] * len(elements)
        stamps: list[str] = [""] * len(elements)
        for part, positions in self._by_partition(elements).items():
            names = [elements[at] for at in positions]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hmget(self.keys.net_values(part), names)
                pipe.hmget(self.keys.net_stamps(part), names)
                got_values, got_stamps = await pipe.execute()
            for at, value, stamp in zip(positions, got_values, got_stamps, strict=True):
                values[at] = value.decode() if value is not None else ""
                stamps[at] = stamp.decode() if stamp is not None else ""
        return values, stamps

    async def stamps(self, elements: Sequence[str]) -> list[str]:
        return (await self.read(elements))[1]

    # ------------------------------------------------------------------ chunks
    async def apply_chunk(
        self,
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> tuple[ApplyOutcome, str]:
        """Phase two: write a prepared chunk, unless it was voided; idempotent. A chunk in
        conflict is left so that it can never be applied (``resolve_chunk`` voids it).
        ElementReserved if another chunk reserves one of its elements: nothing was changed
        where it met it (partitions before it stay prepared); call again later."""
        parts = self.partitions_of(effects, notifications)
        if len(parts) == 1:
            return await self._apply_one(
                parts[0], token, run_id, first_effect, effects, notifications
            )
        return await self._apply_across(parts, token, run_id, first_effect, effects, notifications)

    async def _apply_one(
        self,
        part: int,
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> tuple[ApplyOutcome, str]:
        args: list[str | int] = [run_id, first_effect, CHUNK_MARK_TTL_S, len(effects)]
        for e in effects:
            args += (e.element, e.before_stamp, e.after)
        args.append(len(notifications))
        args.extend(notifications)
        k = self.keys
        # Notifications make partition 0 part of the chunk: another partition's chunk has
        # none, and names an outbox of its own slot (a script's keys share one slot).
        keys = [
            k.net_values(part),
            k.net_stamps(part),
            k.net_chunk(part, token),
            k.net_outbox(part),
        ]
        if self.partitioned:
            keys.append(k.net_pending(part))
        result = await self._apply(keys=keys, args=args)
        outcome = replies.text(result[0])
        if outcome == "reserved":
            raise ElementReserved(replies.text(result[1]), replies.text(result[2]))
        return cast(ApplyOutcome, outcome), (replies.text(result[1]) if len(result) > 1 else "")

    async def _apply_across(
        self,
        parts: list[int],
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> tuple[ApplyOutcome, str]:
        """The two-phase commit over several partitions (see the module's docstring)."""
        outcome, element = await self.prepare_across(
            parts, token, run_id, first_effect, effects, notifications
        )
        if outcome != "prepared":
            return outcome, element
        await self.commit_across(parts, token, run_id, first_effect, effects, notifications)
        return "ok", ""

    async def prepare_across(
        self,
        parts: Sequence[int],
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> tuple[Literal["prepared", "voided", "conflict"], str]:
        """Phase one on every partition, in order; on a conflict or a void, voids the chunk
        everywhere (releasing what it reserved) and says which. ElementReserved where
        another chunk reserves an element: the partitions before it stay prepared (called
        again, they answer 'prepared' and it goes on from there)."""
        numbered = self._numbered(first_effect, effects)
        k = self.keys
        for part in parts:
            args: list[str | int] = [token, run_id, CHUNK_MARK_TTL_S, len(numbered.get(part, ()))]
            for no, e in numbered.get(part, ()):
                args += (e.element, e.before_stamp, no)
            reply = await self._prepare(
                keys=[k.net_stamps(part), k.net_chunk(part, token), k.net_pending(part)],
                args=args,
            )
            outcome = replies.text(reply[0])
            if outcome == "reserved":
                raise ElementReserved(replies.text(reply[1]), replies.text(reply[2]))
            if outcome == "conflict":
                await self._void_all(parts, token, numbered)
                return "conflict", replies.text(reply[1])
            if outcome == "voided":
                await self._void_all(parts, token, numbered)
                return "voided", ""
        return "prepared", ""

    async def commit_across(
        self,
        parts: Sequence[int],
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> None:
        """Phase two on every partition, once every one is prepared; idempotent."""
        numbered = self._numbered(first_effect, effects)
        await self._commit_all(parts, token, run_id, numbered, notifications)

    def _numbered(
        self, first_effect: int, effects: Sequence[EffectRecord]
    ) -> dict[int, list[tuple[int, EffectRecord]]]:
        """The chunk's effects with their numbers in the run, by partition, in order."""
        out: dict[int, list[tuple[int, EffectRecord]]] = {}
        for offset, e in enumerate(effects):
            out.setdefault(self.keys.partition_of(e.element), []).append((first_effect + offset, e))
        return out

    async def _commit_all(
        self,
        parts: Sequence[int],
        token: str,
        run_id: str,
        numbered: dict[int, list[tuple[int, EffectRecord]]],
        notifications: Sequence[str],
        force: bool = False,
    ) -> None:
        k = self.keys
        for part in parts:
            mine = numbered.get(part, [])
            notes = notifications if part == 0 else ()
            args: list[str | int] = [token, run_id, CHUNK_MARK_TTL_S, len(mine)]
            args.append("1" if force else "0")
            for no, e in mine:
                args += (e.element, no, e.after)
            args.append(len(notes))
            args.extend(notes)
            reply = await self._commit(
                keys=[
                    k.net_values(part),
                    k.net_stamps(part),
                    k.net_chunk(part, token),
                    k.net_pending(part),
                    k.outbox,
                ]
                if part == 0
                else [
                    k.net_values(part),
                    k.net_stamps(part),
                    k.net_chunk(part, token),
                    k.net_pending(part),
                ],
                args=args,
            )
            if replies.text(reply[0]) == "refused":
                raise ChunkProtocolBroken(
                    f"chunk {token}: partition {part} refused the commit (mark "
                    f"{replies.text(reply[1])!r}) though every partition was prepared"
                )

    async def _void_all(
        self, parts: Sequence[int], token: str, numbered: dict[int, list[tuple[int, EffectRecord]]]
    ) -> None:
        k = self.keys
        for part in parts:
            elements = list(dict.fromkeys(e.element for _, e in numbered.get(part, ())))
            mark = await self._void(
                keys=[k.net_chunk(part, token), k.net_pending(part)],
                args=[token, CHUNK_MARK_TTL_S, *elements],
            )
            if mark == b"a":
                raise ChunkProtocolBroken(
                    f"chunk {token}: partition {part} is applied though another is voided"
                )

    async def resolve_chunk(
        self,
        token: str,
        run_id: str = "",
        first_effect: int = 0,
        effects: Sequence[EffectRecord] = (),
        notifications: Sequence[str] = (),
    ) -> Literal["applied", "voided"]:
        """For a chunk whose worker died: was it applied? If not, make sure it never will
        be. With several partitions, the chunk's effects and notifications (from its
        ``ChunkPrepared``) say where it was written, and finish a commit begun."""
        parts = self._parts_named(token, effects, notifications)
        k = self.keys
        if len(parts) == 1:
            mark = await self._resolve(keys=[k.net_chunk(parts[0], token)], args=[CHUNK_MARK_TTL_S])
            return "applied" if mark == b"a" else "voided"
        marks = [
            await self._resolve(keys=[k.net_chunk(part, token)], args=[CHUNK_MARK_TTL_S])
            for part in parts
        ]
        numbered = self._numbered(first_effect, effects)
        if all(mark in (b"p", b"a") for mark in marks):
            await self._commit_all(parts, token, run_id, numbered, notifications)
            return "applied"
        if b"a" in marks:
            # Applied on one partition, unmarked or voided on another: only when a
            # failover lost a master's last writes (its marks). The commit was decided:
            # finish it, over whatever the lost partition holds now.
            log.warning("chunk_marks_lost", token=token, marks=[replies.text(m) for m in marks])
            await self._commit_all(parts, token, run_id, numbered, notifications, force=True)
            return "applied"
        await self._void_all(parts, token, numbered)
        return "voided"

    def _parts_named(
        self, token: str, effects: Sequence[EffectRecord], notifications: Sequence[str]
    ) -> list[int]:
        if self.partitioned and not effects and not notifications:
            raise ValueError(
                f"chunk {token}: with {self.keys.partitions} network partitions, its effects "
                f"and notifications are needed to know where it was written"
            )
        return self.partitions_of(effects, notifications)

    async def forget_chunk(
        self,
        token: str,
        effects: Sequence[EffectRecord] = (),
        notifications: Sequence[str] = (),
    ) -> None:
        """Drop an applied chunk's markers once the run has recorded the outcome: only a
        chunk left pending by a dead worker needs them. (Void markers stay until they
        expire, to stop a late writer.)"""
        parts = self._parts_named(token, effects, notifications)
        await self._delete_each([self.keys.net_chunk(part, token) for part in parts])

    def forget_chunk_soon(
        self,
        token: str,
        effects: Sequence[EffectRecord] = (),
        notifications: Sequence[str] = (),
    ) -> None:
        """forget_chunk in the background: the run goes on without waiting a round trip
        for a cleanup. A delete that never happens (the worker died, Redis failed) costs
        nothing but the marker's memory until it expires (apply_chunk.lua: ttl)."""
        self._soon(self.forget_chunk(token, effects, notifications), f"chunk {token}")

    def forget_revert_step_soon(self, step: str, partitions: Sequence[int] = (0,)) -> None:
        """forget_revert_step in the background, as forget_chunk_soon (its mark expires
        too: compensate.lua)."""
        self._soon(self.forget_revert_step(step, partitions), f"revert step {step}")

    def _soon(self, deleting: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(self._quietly(deleting, what))
        # Held here: a task no one refers to may be collected before it ends.
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)

    @staticmethod
    async def _quietly(deleting: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await deleting
        except Exception as exc:  # a cleanup: never worth more than a line in the log
            log.info("marker_left", marker=what, error=str(exc) or type(exc).__name__)

    async def forgotten(self, timeout: float) -> bool:
        """Waits (at most ``timeout`` seconds) for the background deletes under way; True
        when none is left."""
        if self._forgetting:
            await asyncio.wait(set(self._forgetting), timeout=timeout)
        return not self._forgetting

    # ------------------------------------------------------------------ revert
    async def forget_revert_step(self, step: str, partitions: Sequence[int] = (0,)) -> None:
        """Drop a revert step's marks (on the partitions it wrote) once the run has
        recorded the step."""
        await self._delete_each([self.keys.net_revert_step(part, step) for part in partitions])

    async def _delete_each(self, keys: list[str]) -> None:
        """Keys of several partitions (so several slots on a cluster): a DEL each, sent in
        one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            await pipe.execute()

    async def compensate(
        self,
        items: Sequence[Compensation],
        force: bool,
        step: str,
        *,
        dry: bool = False,
        overlay: Mapping[str, str] | None = None,
    ) -> list[Decision]:
        """Take back one revert step's effects, newest first; ``step`` names the step so
        that doing it again returns the first outcome instead of compensating twice.

        ``dry``: decide the same way but change nothing (and keep no mark), over the
        stored stamps as ``overlay`` replaces them (what earlier steps would leave).

        With several partitions, each partition's share is decided on its own (an element
        and all its effects live in one partition, so each keeps its order); ElementReserved
        if one would write an element a chunk being written reserves (the partitions done
        keep their outcome under the step's mark)."""
        if not items:
            return []
        known = overlay or {}
        if not self.partitioned:
            return await self._compensate_on(0, items, force, step, dry, known)
        decisions: list[Decision | None] = [None] * len(items)
        for part, positions in self._by_partition([c.element for c in items]).items():
            mine = [items[at] for at in positions]
            named = {c.element for c in mine}
            share = {e: st for e, st in known.items() if e in named}
            done = await self._compensate_on(part, mine, force, step, dry, share)
            for at, decision in zip(positions, done, strict=True):
                decisions[at] = decision
        return [d for d in decisions if d is not None]

    async def _compensate_on(
        self,
        part: int,
        items: Sequence[Compensation],
        force: bool,
        step: str,
        dry: bool,
        overlay: Mapping[str, str],
    ) -> list[Decision]:
        args: list[str | int] = ["1" if force else "0", "1" if dry else "0", STEP_MARK_TTL_S]
        args.append(len(items))
        for c in items:
            args += (c.element, c.stamp, c.before_stamp, c.before)
        args.append(len(overlay))
        for element, stamp in overlay.items():
            args += (element, stamp)
        k = self.keys
        keys = [
            k.net_values(part),
            k.net_stamps(part),
            k.net_revert_step(part, step if not dry else "dry"),
        ]
        if self.partitioned:
            keys.append(k.net_pending(part))
        reply = await self._compensate(keys=keys, args=args)
        letters, *holders = (replies.text(part) for part in reply)
        if letters == "busy":
            raise ElementReserved(holders[0])
        found = iter(holders)
        return [
            Decision(cast(Letter, letter), next(found, "") if letter in "fx" else "")
            for letter in letters
        ]

    # ------------------------------------------------------------------ the rest
    async def put(self, element: str, attrs: dict[str, Any] | None, stamp: str) -> None:
        """A change made outside any run (an operator's edit): not revertable by runstream.
        ElementReserved while a chunk being written on several partitions reserves it."""
        k = self.keys
        part = k.partition_of(element)
        if self.partitioned:
            value = "" if attrs is None else msgspec.json.encode(attrs).decode()
            holder = await self._put(
                keys=[k.net_values(part), k.net_stamps(part), k.net_pending(part)],
                args=[element, value, stamp, "1" if attrs is None else "0"],
            )
            if holder:
                raise ElementReserved(element, replies.text(holder))
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            if attrs is None:
                pipe.hdel(k.net_values(part), element)
            else:
                pipe.hset(k.net_values(part), element, msgspec.json.encode(attrs))
            pipe.hset(k.net_stamps(part), element, stamp)
            await pipe.execute()

    async def elements(self) -> dict[str, str]:
        """Every element's attributes JSON (over all partitions)."""
        return await self._whole_hash(self.keys.net_values)

    async def all_stamps(self) -> dict[str, str]:
        """Every element's stamp (over all partitions)."""
        return await self._whole_hash(self.keys.net_stamps)

    async def _whole_hash(self, key_of: Callable[[int], str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in range(self.keys.partitions):
            async for field, value in self.redis.hscan_iter(key_of(part), count=1000):
                out[field.decode()] = value.decode()
        return out

    async def reservations(self) -> dict[str, str]:
        """Elements reserved by chunks being written (element -> token): empty at rest."""
        out: dict[str, str] = {}
        if self.partitioned:
            for part in range(self.keys.partitions):
                raw = await self.redis.hgetall(self.keys.net_pending(part))
                out.update({replies.text(e): replies.text(t) for e, t in raw.items()})
        return out

    async def export(self) -> dict[str, Any]:
        """The whole network as plain data, in a stable order."""
        return export_elements((await self.elements()).items())

    async def stats(self) -> dict[str, int]:
        elements = await self.elements()
        nodes = sum(1 for e in elements if e.startswith("n:"))
        return {
            "nodes": nodes,
            "edges": len(elements) - nodes,
            "notifications": await self.redis.xlen(self.keys.outbox),
        }

    async def outbox(self, count: int = 100) -> list[dict[str, str]]:
        entries = replies.entries(await self.redis.xrevrange(self.keys.outbox, count=count))
        return [
            {"id": i.decode(), **{k.decode(): v.decode() for k, v in f.items()}} for i, f in entries
        ]


def export_elements(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for element, value in sorted(items):
        attrs = msgspec.json.decode(value)
        if element.startswith("n:"):
            nodes.append({"id": element[2:], "attrs": attrs})
        else:
            src, _, dst = element[2:].partition("|")
            edges.append({"source": src, "target": dst, "attrs": attrs})
    return {"nodes": nodes, "edges": edges}
