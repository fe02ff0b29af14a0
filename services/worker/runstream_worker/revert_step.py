"""One step of a revert: the next batch of a run's effects, newest first, taken back.

The executor drives a reverting run step by step with this; each step is recorded on the
run (``EffectsCompensated``, or ``RunReverted`` when nothing is left) for the caller to
append. What happens to each effect is decided by the network's ``compensate`` script.
"""

from __future__ import annotations

from dataclasses import dataclass

from runstream.contracts import events as ev
from runstream.domain.run import Rejected, Run
from runstream.revert import conflict_reason, next_batch
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore


@dataclass(frozen=True)
class Step:
    """A recorded step: ``mark`` names its outcome on the network ("" when the revert
    finished), to be forgotten once the step is appended."""

    mark: str
    skipped: list[ev.SkippedEffect]
    compensated: int = 0
    # The network partitions the step's mark is kept on.
    partitions: tuple[int, ...] = (0,)


async def take_revert_step(
    store: EventStore, network: NetworkStore, run: Run, batch_size: int, now: float
) -> Step | None:
    """Compensate the next batch and record it on ``run``; None if the run no longer
    takes it (its state changed: reload and look again)."""
    s = run.state
    if s.state != "reverting" or s.revert is None:
        return None
    progress = s.revert
    batch = await next_batch(
        store, s, progress.cursor, progress.cursor_offset, batch_size, only=progress.only
    )
    if not batch.items:
        run.finish_revert(now)
        return Step("", [])
    # Named by where the step starts: a step redone (its append lost a race, or its
    # worker died) gets the outcome of the first attempt, not a second compensation.
    mark = f"{s.run_id}:{progress.cursor}:{progress.cursor_offset}:{len(batch.items)}"
    decisions = await network.compensate(batch.items, progress.force, mark)
    skipped = [
        ev.SkippedEffect(c.effect_no, c.element, conflict_reason(d.holder))
        for c, d in zip(batch.items, decisions, strict=True)
        if not d.compensated
    ]
    compensated = len(batch.items) - len(skipped)
    try:
        run.record_compensation(now, compensated, skipped, batch.cursor, batch.cursor_offset)
    except Rejected:
        return None
    parts = tuple(network.partitions_of_elements(c.element for c in batch.items))
    return Step(mark, skipped, compensated, parts)
