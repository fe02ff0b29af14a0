"""Revert planning: a run's effects, newest first, as compensations.

The worker takes them batch by batch and applies them; ``runctl revert --dry-run`` walks
them all against the current network without changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from runstream.contracts import events as ev
from runstream.domain.run import FINISHED, RunState
from runstream.store.events import EventStore
from runstream.store.network import Compensation, NetworkStore

CONFLICT = "changed by someone else since this run wrote it"


@dataclass
class Batch:
    items: list[Compensation]
    cursor: str
    cursor_offset: int
    done: bool
    # Notifications of the chunks this batch entered (newest first): irreversible.
    notifications: list[str] = field(default_factory=list)


async def next_batch(
    store: EventStore,
    state: RunState,
    cursor: str,
    cursor_offset: int,
    limit: int,
) -> Batch:
    """Up to ``limit`` compensations from (cursor, offset) backwards through the history.

    ``cursor`` is an event id (inclusive), "(<id>" (exclusive) or "+"; ``cursor_offset``
    counts the effects of the event at ``cursor`` already taken, from its end.
    """
    voided = set(state.voided_chunks)
    items: list[Compensation] = []
    notifications: list[str] = []
    run_id = state.run_id
    while True:
        page = await store.chunks_before(run_id, cursor, count=8)
        if not page:
            return Batch(items, cursor, 0, done=True, notifications=notifications)
        for event_id, event in page:
            if not isinstance(event, ev.ChunkPrepared) or event.chunk in voided:
                cursor, cursor_offset = "(" + event_id, 0
                continue
            if cursor_offset == 0:  # entering this chunk, not resuming it
                notifications.extend(reversed(event.notifications))
            effects = event.effects
            remaining = len(effects) - cursor_offset
            take = min(remaining, limit - len(items))
            for j in range(remaining - 1, remaining - 1 - take, -1):
                record = effects[j]
                number = event.first_effect + j
                items.append(
                    Compensation(
                        effect_no=number,
                        element=record.element,
                        stamp=ev.stamp_of(run_id, number),
                        before_stamp=record.before_stamp,
                        before=record.before,
                    )
                )
            cursor_offset += take
            if cursor_offset >= len(effects):
                cursor, cursor_offset = "(" + event_id, 0
            else:
                cursor = event_id
            if len(items) >= limit:
                return Batch(items, cursor, cursor_offset, done=False, notifications=notifications)


class Conflict(msgspec.Struct, frozen=True):
    effect_no: int
    element: str
    reason: str


class Plan(msgspec.Struct, kw_only=True):
    """What a revert would do now."""

    run_id: str
    state: str
    force: bool
    compensate: int = 0
    already_compensated: int = 0
    conflicts: list[Conflict] = []
    overwritten_by_force: int = 0
    irreversible: list[str] = []


async def plan(store: EventStore, network: NetworkStore, state: RunState, force: bool) -> Plan:
    """Dry run: walk every effect newest first against the current network; change nothing."""
    result = Plan(run_id=state.run_id, state=state.state, force=force)
    if state.state not in FINISHED:
        return result
    stamps: dict[str, str] = {}  # elements as they would be, step by step
    irreversible: list[str] = []
    cursor, offset = "+", 0
    while True:
        batch = await next_batch(store, state, cursor, offset, limit=2000)
        unknown = sorted({c.element for c in batch.items if c.element not in stamps})
        for element, stamp in zip(unknown, await network.stamps(unknown), strict=True):
            stamps[element] = stamp
        for c in batch.items:
            current = stamps[c.element]
            if current == c.before_stamp:
                result.already_compensated += 1
            elif current == c.stamp or force:
                if current != c.stamp:
                    result.overwritten_by_force += 1
                result.compensate += 1
                stamps[c.element] = c.before_stamp
            else:
                result.conflicts.append(Conflict(c.effect_no, c.element, CONFLICT))
        irreversible.extend(batch.notifications)
        if batch.done:
            break
        cursor, offset = batch.cursor, batch.cursor_offset
    result.irreversible = irreversible[::-1]  # oldest first, as they were sent
    return result
