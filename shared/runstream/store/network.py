"""The network: a graph of nodes and edges with attributes, in Redis.

Elements are ``n:<node>`` and ``e:<src>|<dst>``; ``values`` holds their attributes (JSON)
and ``stamps`` the stamp of the effect that last wrote each one. Stamps are how revert
tells "still as this run left it" from "changed by someone else since".

A chunk's effects reach the network in two phases, because the run's history and the
network live in different slots (different nodes on Redis Cluster) and no one script can
write both:

1. the run records the chunk's effects (``ChunkPrepared``) in its history;
2. ``apply_chunk`` writes them to the network in one script, all or nothing, marked by
   the chunk's token; the run then records ``ItemsProcessed``.

If the worker dies between 1 and 2, whoever resumes the run calls ``resolve_chunk``: it
finds the chunk applied (record ``ItemsProcessed``) or marks it void in the network's slot,
after which ``apply_chunk`` refuses it (record ``ChunkVoided``). So a network change is
never made without being in the history, and a late writer can't apply a voided chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import msgspec
import redis.asyncio as aredis

from runstream import lua
from runstream.contracts.events import EffectRecord
from runstream.keys import Keys
from runstream.store import replies

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


class NetworkStore:
    def __init__(self, redis: aredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._apply = redis.register_script(lua.source("apply_chunk"))
        self._resolve = redis.register_script(lua.source("resolve_chunk"))
        self._compensate = redis.register_script(lua.source("compensate"))

    async def read(self, elements: Sequence[str]) -> tuple[list[str], list[str]]:
        """Current values and stamps ("" where absent), read together."""
        if not elements:
            return [], []
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.keys.net_values, elements)
            pipe.hmget(self.keys.net_stamps, elements)
            values, stamps = await pipe.execute()
        return (
            [v.decode() if v is not None else "" for v in values],
            [s.decode() if s is not None else "" for s in stamps],
        )

    async def stamps(self, elements: Sequence[str]) -> list[str]:
        if not elements:
            return []
        raw = await self.redis.hmget(self.keys.net_stamps, elements)
        return [replies.text(s) if s is not None else "" for s in raw]

    async def apply_chunk(
        self,
        token: str,
        run_id: str,
        first_effect: int,
        effects: Sequence[EffectRecord],
        notifications: Sequence[str],
    ) -> tuple[ApplyOutcome, str]:
        """Phase two: write a prepared chunk, unless it was voided; idempotent."""
        args: list[str | int] = [run_id, first_effect, CHUNK_MARK_TTL_S, len(effects)]
        for e in effects:
            args += (e.element, e.before_stamp, e.after)
        args.append(len(notifications))
        args.extend(notifications)
        k = self.keys
        result = await self._apply(
            keys=[k.net_values, k.net_stamps, k.net_chunk(token), k.outbox], args=args
        )
        outcome = result[0].decode()
        return outcome, (result[1].decode() if len(result) > 1 else "")

    async def resolve_chunk(self, token: str) -> Literal["applied", "voided"]:
        """For a chunk whose worker died: was it applied? If not, make sure it never will be."""
        mark = await self._resolve(keys=[self.keys.net_chunk(token)], args=[CHUNK_MARK_TTL_S])
        return "applied" if mark == b"a" else "voided"

    async def forget_chunk(self, token: str) -> None:
        """Drop an applied chunk's marker once the run has recorded the outcome: only a chunk
        left pending by a dead worker needs it. (Void markers stay until they expire, to
        stop a late writer.)"""
        await self.redis.delete(self.keys.net_chunk(token))

    async def forget_revert_step(self, step: str) -> None:
        """Drop a revert step's mark once the run has recorded the step."""
        await self.redis.delete(self.keys.net_revert_step(step))

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
        stored stamps as ``overlay`` replaces them (what earlier steps would leave)."""
        if not items:
            return []
        args: list[str | int] = ["1" if force else "0", "1" if dry else "0", STEP_MARK_TTL_S]
        args.append(len(items))
        for c in items:
            args += (c.element, c.stamp, c.before_stamp, c.before)
        known = overlay or {}
        args.append(len(known))
        for element, stamp in known.items():
            args += (element, stamp)
        k = self.keys
        mark = k.net_revert_step(step if not dry else "dry")
        reply = await self._compensate(keys=[k.net_values, k.net_stamps, mark], args=args)
        letters, *holders = (replies.text(part) for part in reply)
        found = iter(holders)
        return [
            Decision(cast(Letter, letter), next(found, "") if letter in "fx" else "")
            for letter in letters
        ]

    async def put(self, element: str, attrs: dict[str, Any] | None, stamp: str) -> None:
        """A change made outside any run (an operator's edit): not revertable by runstream."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            if attrs is None:
                pipe.hdel(k.net_values, element)
            else:
                pipe.hset(k.net_values, element, msgspec.json.encode(attrs))
            pipe.hset(k.net_stamps, element, stamp)
            await pipe.execute()

    async def elements(self) -> dict[str, str]:
        out: dict[str, str] = {}
        async for field, value in self.redis.hscan_iter(self.keys.net_values, count=1000):
            out[field.decode()] = value.decode()
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
