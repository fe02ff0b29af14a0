"""Revert planning: a run's effects, newest first, as compensations.

The worker takes them batch by batch and applies them; ``runctl revert --dry-run`` walks
them all against the current network without changing anything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import msgspec

from runstream.contracts import events as ev
from runstream.domain.run import FINISHED, RunState
from runstream.ids import is_run_id
from runstream.store.events import EventStore
from runstream.store.network import Compensation, NetworkStore


def changed_by(holder: str) -> str:
    """Who changed an element, from the stamp it carries: a run, or someone outside."""
    run_id = holder.partition("/")[0]
    return f"by run {run_id}" if is_run_id(run_id) else "outside runstream"


def conflict_reason(holder: str) -> str:
    return f"changed {changed_by(holder)} since this run wrote it"


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
    only: Collection[int] | None = None,
) -> Batch:
    """Up to ``limit`` compensations from (cursor, offset) backwards through the history.

    ``cursor`` is an event id (inclusive), "(<id>" (exclusive) or "+"; ``cursor_offset``
    counts the effects of the event at ``cursor`` already passed, from its end. ``only``:
    the effect numbers to take (a retry of the conflicts a revert skipped); the rest are
    passed over.
    """
    wanted = set(only) if only is not None else None
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
            for j in range(len(effects) - 1 - cursor_offset, -1, -1):
                if len(items) >= limit:
                    break
                cursor_offset += 1
                number = event.first_effect + j
                if wanted is not None and number not in wanted:
                    continue
                record = effects[j]
                items.append(
                    Compensation(
                        effect_no=number,
                        element=record.element,
                        stamp=ev.stamp_of(run_id, number),
                        before_stamp=record.before_stamp,
                        before=record.before,
                    )
                )
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


def retried(state: RunState) -> list[int] | None:
    """The effects a revert of the run would take: None for all, else the conflicts its
    last revert skipped (a reverted run is reverted again only for those)."""
    if state.revert is not None and state.state == "reverting":
        return state.revert.only
    return list(state.skipped_effects) if state.state == "reverted" else None


async def plan(store: EventStore, network: NetworkStore, state: RunState, force: bool) -> Plan:
    """Dry run: walk every effect newest first against the current network; change nothing.

    Each effect is decided by the same script the revert runs (in its dry mode), over the
    stamps the steps before it would leave."""
    result = Plan(run_id=state.run_id, state=state.state, force=force)
    if state.state not in FINISHED and not (state.state == "reverted" and state.effects_left):
        return result
    only = retried(state)
    left: dict[str, str] = {}  # element -> stamp, as the plan's earlier steps leave it
    irreversible: list[str] = []
    cursor, offset = "+", 0
    while True:
        batch = await next_batch(store, state, cursor, offset, limit=2000, only=only)
        overlay = {c.element: left[c.element] for c in batch.items if c.element in left}
        decisions = await network.compensate(batch.items, force, "plan", dry=True, overlay=overlay)
        for c, decision in zip(batch.items, decisions, strict=True):
            match decision.letter:
                case "a":
                    result.already_compensated += 1
                case "c" | "f":
                    result.compensate += 1
                    result.overwritten_by_force += decision.letter == "f"
                    left[c.element] = c.before_stamp
                case "x":
                    reason = conflict_reason(decision.holder)
                    result.conflicts.append(Conflict(c.effect_no, c.element, reason))
        irreversible.extend(batch.notifications)
        if batch.done:
            break
        cursor, offset = batch.cursor, batch.cursor_offset
    result.irreversible = irreversible[::-1]  # oldest first, as they were sent
    return result
