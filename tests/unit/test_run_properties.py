"""Any sequence of commands and execution steps leaves a run in a valid state.

Commands (stop, continue, cancel, revert, delete) arrive at any moment; execution steps
are driven the way the executor drives them: a pending chunk is resolved (confirmed or
voided) before anything else, a revert compensates the confirmed effects newest first in
batches and finishes when none are left.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from runstream.contracts import events as ev
from runstream.contracts.commands import (
    CancelRun,
    Command,
    ContinueRun,
    DeleteMode,
    DeleteRun,
    PinRun,
    RevertRun,
    StartRun,
    StopRun,
)
from runstream.domain.run import FINISHED, STATES, Rejected, Run, RunState, apply
from runstream.ids import new_id

# The state graph of DESIGN.md (stop and cancel also apply to a queued run, and a queued
# run whose arguments no longer validate fails).
EDGES = {
    ("new", "queued"),
    ("queued", "running"),
    ("queued", "stopped"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("running", "stopped"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("stopped", "running"),
    ("stopped", "queued"),  # continued before it ever started: waits its turn again
    ("stopped", "cancelled"),
    *((done, "reverting") for done in ("stopped", "succeeded", "failed", "cancelled")),
    ("reverting", "reverted"),
    ("reverted", "reverting"),  # a retry of the effects a revert skipped as conflicts
    *((done, "deleted") for done in ("stopped", "succeeded", "failed", "cancelled", "reverted")),
}
VALID_STATES = {*STATES, "deleted"}


def _deep(state: RunState) -> dict[str, Any]:
    """The state's fields, deep-copied so that nested structs mutated in place show up."""
    return msgspec.structs.asdict(copy.deepcopy(state))


class RunModel:
    """A started run plus what the executor would know of it from the run's history."""

    def __init__(self) -> None:
        self.clock = itertools.count(1)
        self.run = Run.blank(new_id())
        self.open_chunk: int | None = None  # effects of the prepared, unresolved chunk
        self.pending_items = 0  # the open chunk's checkpoint
        self.confirmed = 0  # effects of confirmed chunks
        self.reverted = 0  # effects compensated or skipped so far (this revert pass)
        self.compensated = 0  # effects compensated so far
        self.prepared_effects = 0  # effects of every prepared chunk, voided ones included
        self.items = 0
        assert self.command(StartRun(run_id=self.rid, scenario="synthetic"))
        assert self.run.state.state == "queued"

    def now(self) -> float:
        return float(next(self.clock))

    @property
    def rid(self) -> str:
        return self.run.state.run_id

    @property
    def was(self) -> str:
        return self.run.state.state

    # ------------------------------------------------------------------ plumbing
    def attempt(self, action: Callable[[], object]) -> bool:
        """Run one step; a rejection must leave every field as it was and record nothing.

        Each recorded event must move the run along an edge of the state graph.
        """
        before = _deep(self.run.state)
        recorded = list(self.run.new_events)
        try:
            action()
        except Rejected:
            assert _deep(self.run.state) == before
            assert self.run.new_events == recorded
            return False
        replay = msgspec.convert(before, RunState)
        for event in self.run.new_events[len(recorded) :]:
            previous = replay.state
            apply(replay, event)
            if replay.state != previous:
                assert (previous, replay.state) in EDGES, f"{previous} -> {replay.state}"
        assert replay == self.run.state
        return True

    def command(self, command: Command) -> bool:
        was = self.was
        accepted = self.attempt(lambda: self.run.handle(command, self.now()))
        if was == "deleted":
            assert not accepted, "a deleted run accepted a command"
        return accepted

    def step(self, name: str, *args: Any) -> None:
        if self.was == "deleted" and name not in COMMAND_STEPS:
            # The store refuses every append to a deleted run: nothing executes there.
            return
        getattr(self, name)(*args)
        self.check()

    # ------------------------------------------------------------------ commands
    def stop(self, reason: str) -> None:
        was = self.was
        accepted = self.command(StopRun(run_id=self.rid, reason=reason))
        assert accepted == (was in ("queued", "running"))

    def continue_(self) -> None:
        was = self.was
        assert self.command(ContinueRun(run_id=self.rid)) == (was == "stopped")

    def cancel(self) -> None:
        was = self.was
        assert self.command(CancelRun(run_id=self.rid)) == (was in ("queued", "running", "stopped"))

    def revert(self, force: bool) -> None:
        was = self.was
        left = self.confirmed - self.compensated
        accepted = self.command(RevertRun(run_id=self.rid, force=force))
        assert accepted == (was in FINISHED or (was == "reverted" and left > 0))
        if accepted:
            assert self.was == "reverting"
            self._started_revert(was)

    def _started_revert(self, was: str) -> None:
        if was == "reverted":  # a retry: the skipped effects are taken again
            self.reverted = self.compensated

    def delete(self, mode: DeleteMode) -> None:
        was = self.was
        left = self.confirmed - self.compensated
        pinned = self.run.state.pinned
        accepted = self.command(DeleteRun(run_id=self.rid, mode=mode))
        refused = (
            was in ("queued", "running", "reverting", "deleted")
            or pinned
            or self.open_chunk is not None  # its effects may be on the network
            or (mode == "plain" and left > 0)
        )
        assert accepted != refused
        if accepted and mode == "revert" and left > 0:
            assert self.was == "reverting"
            assert self.run.state.revert is not None
            assert self.run.state.revert.then_delete
            self._started_revert(was)
        elif accepted:
            assert self.was == "deleted"

    def pin(self, pinned: bool) -> None:
        was, before = self.was, self.run.state.pinned
        revert = self.run.state.revert
        to_be_deleted = was == "reverting" and revert is not None and revert.then_delete
        accepted = self.command(PinRun(run_id=self.rid, pinned=pinned))
        refused_pin = pinned and to_be_deleted
        assert accepted == (was != "deleted" and pinned != before and not refused_pin)
        assert self.run.state.pinned == (pinned if accepted else before)

    # ------------------------------------------------------------------ execution
    def begin(self) -> None:
        was = self.was
        self.attempt(lambda: self.run.begin(self.now(), "worker"))
        assert self.was == ("running" if was == "queued" else was)

    def chunk(self, effects: int, notes: int, items: int, outcome: str) -> None:
        was = self.was
        first = self.run.state.next_effect

        def prepare() -> None:
            self.run.prepare_chunk(
                self.now(),
                items_to=self.items + items,
                effects=[ev.EffectRecord(f"n:{i}", "", "{}", "") for i in range(effects)],
                notifications=["note"] * notes,
                log=[],
                results={},
            )

        accepted = self.attempt(prepare)
        assert accepted == (was == "running" and self.open_chunk is None)
        if not accepted:
            return
        assert first == 1 + self.prepared_effects
        self.prepared_effects += effects
        self.open_chunk = effects
        self.pending_items = self.items + items
        if outcome != "leave pending":
            self.resolve(outcome)

    def resolve(self, outcome: str) -> None:
        """What the executor does with a pending chunk, in whatever state the run is."""
        if self.open_chunk is None:
            assert not self.attempt(lambda: self.run.confirm_chunk(self.now()))
            assert not self.attempt(lambda: self.run.void_chunk(self.now(), "x"))
            return
        if outcome == "confirm":
            assert self.attempt(lambda: self.run.confirm_chunk(self.now()))
            self.confirmed += self.open_chunk
            self.items = self.pending_items
        else:
            assert self.attempt(lambda: self.run.void_chunk(self.now(), "worker died"))
        self.open_chunk = None

    def succeed(self) -> None:
        was = self.was
        self.attempt(lambda: self.run.succeed(self.now()))
        if was == "running" and self.open_chunk is None:
            assert self.was == "succeeded"
        else:
            assert self.was == was

    def fail(self, error: str) -> None:
        was = self.was
        self.attempt(lambda: self.run.fail(self.now(), error))
        if was in ("queued", "running"):
            assert (self.was, self.run.state.error) == ("failed", error)
        else:
            assert self.was == was

    def revert_step(self, batch: int, conflicts: int, pending_outcome: str) -> None:
        """One round of Executor._drive_held while reverting: resolve, compensate or finish."""
        if self.was != "reverting":
            assert not self.attempt(lambda: self.run.record_compensation(self.now(), 1, [], "+", 0))
            assert not self.attempt(lambda: self.run.finish_revert(self.now()))
            return
        if self.open_chunk is not None:
            self.resolve(pending_outcome)
            return
        take = min(batch, self.confirmed - self.reverted)
        if take == 0:
            self.finish_revert()
            return
        skipped = [ev.SkippedEffect(n, f"n:{n}", "changed") for n in range(min(conflicts, take))]
        cursor = f"{self.confirmed - self.reverted}-0"
        assert self.attempt(
            lambda: self.run.record_compensation(
                self.now(), take - len(skipped), skipped, cursor, 0
            )
        )
        self.reverted += take
        self.compensated += take - len(skipped)
        assert self.run.state.revert is not None
        assert self.run.state.revert.cursor == cursor

    def finish_revert(self) -> None:
        s = self.run.state
        if s.state != "reverting":
            assert not self.attempt(lambda: self.run.finish_revert(self.now()))
            return
        if self.open_chunk is not None or self.confirmed > self.reverted:
            return  # the executor still has work to do
        assert s.revert is not None
        then_delete = s.revert.then_delete
        assert self.attempt(lambda: self.run.finish_revert(self.now()))
        # A run being reverted to be deleted cannot be pinned meanwhile.
        assert self.was == ("deleted" if then_delete else "reverted")
        kinds = [type(e) for e in self.run.new_events[-2:]]
        if then_delete:
            assert kinds == [ev.RunReverted, ev.RunDeleted]
        else:
            assert kinds[-1] is ev.RunReverted

    # ------------------------------------------------------------------ invariants
    def check(self) -> None:
        s = self.run.state
        assert s.state in VALID_STATES
        for name in ("items_processed", "applied", "irreversible", "compensated", "skipped"):
            assert getattr(s, name) >= 0, name
        assert s.next_effect >= 1
        assert s.next_chunk >= 0
        # Counts are what was done, and a revert takes back no more than was applied.
        assert s.compensated + s.skipped <= s.applied
        assert s.applied == self.confirmed
        assert s.compensated + s.skipped == self.reverted
        assert s.compensated == self.compensated
        assert s.effects_left == self.confirmed - self.compensated
        assert s.items_processed == self.items
        assert s.next_effect == 1 + self.prepared_effects
        if s.state == "reverted":
            assert s.skipped == s.effects_left == len(s.skipped_effects)
        # A chunk is pending exactly while it is open.
        assert (s.pending is not None) == (self.open_chunk is not None)
        if s.pending is not None:
            assert s.pending.effects == self.open_chunk
        if s.state in ("reverting", "reverted"):
            assert s.revert is not None
        if s.state in ("queued", "running"):
            assert s.revert is None
        # The recorded events are the state.
        rebuilt = RunState(run_id=self.rid)
        for event in self.run.new_events:
            apply(rebuilt, event)
        assert rebuilt == s


COMMAND_STEPS = {"stop", "continue_", "cancel", "revert", "delete", "pin"}

STEPS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "stop": st.tuples(st.just("stop"), st.sampled_from(["", "slow"])),
    "continue_": st.tuples(st.just("continue_")),
    "cancel": st.tuples(st.just("cancel")),
    "revert": st.tuples(st.just("revert"), st.booleans()),
    "delete": st.tuples(st.just("delete"), st.sampled_from(["plain", "revert", "keep_effects"])),
    "pin": st.tuples(st.just("pin"), st.booleans()),
    "begin": st.tuples(st.just("begin")),
    "chunk": st.tuples(
        st.just("chunk"),
        st.integers(0, 5),
        st.integers(0, 3),
        st.integers(0, 4),
        st.sampled_from(["confirm", "void", "leave pending"]),
    ),
    "resolve": st.tuples(st.just("resolve"), st.sampled_from(["confirm", "void"])),
    "succeed": st.tuples(st.just("succeed")),
    "fail": st.tuples(st.just("fail"), st.sampled_from(["boom", "item 3: KeyError"])),
    "revert_step": st.tuples(
        st.just("revert_step"),
        st.integers(1, 4),
        st.integers(0, 4),
        st.sampled_from(["confirm", "void"]),
    ),
    "finish_revert": st.tuples(st.just("finish_revert")),
}


@st.composite
def step_lists(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Swarm testing: each example uses a random subset of the step kinds, so that long
    runs of work (many chunks, a whole revert) happen as often as early stops."""
    kinds = draw(st.sets(st.sampled_from(sorted(STEPS)), min_size=1))
    return draw(st.lists(st.one_of([STEPS[k] for k in sorted(kinds)]), max_size=60))


@settings(max_examples=500, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from(["confirm"] * 4 + ["void", "leave pending"])),
        max_size=4,
    ),
    ending=st.sampled_from([(), ("stop", ""), ("succeed",), ("fail", "boom"), ("cancel",)]),
    then=st.sampled_from(
        [(), ("revert", False), ("revert", True), ("delete", "revert"), ("pin", True)]
    ),
    steps=step_lists(),
)
def test_any_sequence_of_commands_and_steps_leaves_a_valid_run(
    chunks: list[tuple[int, str]],
    ending: tuple[Any, ...],
    then: tuple[Any, ...],
    steps: list[tuple[Any, ...]],
) -> None:
    # A prefix that reaches the deeper states often (some work done, finished, reverting),
    # then anything at all.
    model = RunModel()
    if chunks:
        model.step("begin")
    for effects, outcome in chunks:
        model.step("chunk", effects, 1, 1, outcome)
    for name, *args in [step for step in (ending, then, *steps) if step]:
        model.step(name, *args)
