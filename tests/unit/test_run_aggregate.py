"""The Run aggregate: which commands fit which state, what they record, and what they count."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import pytest

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
from runstream.domain.run import Rejected, Run, RunState, apply
from runstream.ids import new_id

_clock = itertools.count(1_700_000_000)


def now() -> float:
    return float(next(_clock))


def effect(element: str = "n:a", before: str = "", after: str = '{"v":1}') -> ev.EffectRecord:
    return ev.EffectRecord(element, before, after, "")


def queued(**start: Any) -> Run:
    run_id = new_id()
    run = Run.blank(run_id)
    run.handle(StartRun(run_id=run_id, scenario="synthetic", **start), now())
    return run


def running() -> Run:
    run = queued()
    run.begin(now(), "worker-1")
    return run


def chunk(run: Run, effects: int = 1, notifications: int = 0, items: int = 1) -> None:
    """One chunk through both phases: prepared, then confirmed."""
    run.prepare_chunk(
        now(),
        items_to=run.state.items_processed + items,
        effects=[effect(f"n:{i}") for i in range(effects)],
        notifications=[f"note {i}" for i in range(notifications)],
        log=[],
        results={},
    )
    run.confirm_chunk(now())


def succeeded(effects: int = 2) -> Run:
    run = running()
    chunk(run, effects=effects)
    run.succeed(now())
    return run


def stopped(effects: int = 0) -> Run:
    run = running()
    if effects:
        chunk(run, effects=effects)
    run.handle(StopRun(run_id=run.state.run_id), now())
    return run


def failed() -> Run:
    run = running()
    run.fail(now(), "boom")
    return run


def cancelled() -> Run:
    run = running()
    run.handle(CancelRun(run_id=run.state.run_id), now())
    return run


def reverting(then_delete: bool = False) -> Run:
    run = succeeded()
    rid = run.state.run_id
    if then_delete:
        run.handle(DeleteRun(run_id=rid, mode="revert"), now())
    else:
        run.handle(RevertRun(run_id=rid), now())
    return run


def reverted() -> Run:
    run = reverting()
    run.record_compensation(now(), run.state.applied, [], "0-1", 0)
    run.finish_revert(now())
    return run


def deleted() -> Run:
    run = stopped()
    run.handle(DeleteRun(run_id=run.state.run_id), now())
    return run


BUILDERS = {
    "queued": queued,
    "running": running,
    "stopped": stopped,
    "succeeded": succeeded,
    "failed": failed,
    "cancelled": cancelled,
    "reverting": reverting,
    "reverted": reverted,
    "deleted": deleted,
}


def in_state(state: str) -> Run:
    run = BUILDERS[state]()
    assert run.state.state == state
    return run


def state_of(run: Run) -> str:
    return run.state.state


def snapshot(run: Run) -> dict[str, Any]:
    return msgspec.to_builtins(run.state)  # type: ignore[no-any-return]


def events_of(run: Run) -> list[type[ev.Event]]:
    return [type(e) for e in run.new_events]


def assert_rejected(run: Run, command: Command, reason: str) -> None:
    before = snapshot(run)
    recorded = len(run.new_events)
    with pytest.raises(Rejected, match=reason):
        run.handle(command, now())
    assert snapshot(run) == before
    assert len(run.new_events) == recorded


# --------------------------------------------------------------------------- start
def test_start_queues_the_run_with_its_scenario_and_arguments() -> None:
    run_id = new_id()
    run = Run.blank(run_id)
    command = StartRun(run_id=run_id, scenario="synthetic", args={"items": 3}, actor="ops")

    run.start(command, 10.0, scenario_version="1", items_total=3)

    s = run.state
    assert (s.state, s.scenario, s.scenario_version) == ("queued", "synthetic", "1")
    assert s.args == {"items": 3}
    assert (s.actor, s.items_total, s.created_at, s.version) == ("ops", 3, 10.0, 1)
    [queued_event] = run.new_events
    assert isinstance(queued_event, ev.RunQueued)
    assert queued_event.command_id == command.command_id


def test_start_uses_the_normalised_arguments_when_given() -> None:
    run_id = new_id()
    run = Run.blank(run_id)
    run.start(
        StartRun(run_id=run_id, scenario="synthetic", args={"items": "3"}),
        now(),
        args={"items": 3},
    )
    assert run.state.args == {"items": 3}


def test_start_of_an_existing_run_is_rejected() -> None:
    run = queued()
    assert_rejected(run, StartRun(run_id=run.state.run_id, scenario="x"), "already exists")


# --------------------------------------------------------------------------- stop / continue
@pytest.mark.parametrize("state", ["queued", "running"])
def test_stop_halts_a_queued_or_running_run(state: str) -> None:
    run = in_state(state)
    run.handle(StopRun(run_id=run.state.run_id, reason="too slow"), now())
    assert run.state.state == "stopped"
    assert run.state.stop_reason == "too slow"
    assert events_of(run)[-1] is ev.RunStopped


@pytest.mark.parametrize(
    "state", ["stopped", "succeeded", "failed", "cancelled", "reverting", "reverted"]
)
def test_stop_is_rejected_unless_queued_or_running(state: str) -> None:
    run = in_state(state)
    assert_rejected(run, StopRun(run_id=run.state.run_id), f"cannot stop a run that is {state}")


def test_continue_resumes_a_stopped_run_from_its_checkpoint() -> None:
    run = stopped(effects=2)
    processed = run.state.items_processed
    run.handle(ContinueRun(run_id=run.state.run_id), now())
    assert run.state.state == "running"
    assert run.state.stop_reason == ""
    assert run.state.items_processed == processed
    assert events_of(run)[-1] is ev.RunContinued


@pytest.mark.parametrize(
    "state", ["queued", "running", "succeeded", "failed", "cancelled", "reverting", "reverted"]
)
def test_continue_is_rejected_unless_stopped(state: str) -> None:
    run = in_state(state)
    assert_rejected(run, ContinueRun(run_id=run.state.run_id), "only a stopped run")


# --------------------------------------------------------------------------- cancel
@pytest.mark.parametrize("state", ["queued", "running", "stopped"])
def test_cancel_ends_a_run_for_good(state: str) -> None:
    run = in_state(state)
    run.handle(CancelRun(run_id=run.state.run_id, reason="wrong data"), now())
    assert run.state.state == "cancelled"
    assert run.state.stop_reason == "wrong data"
    assert_rejected(run, ContinueRun(run_id=run.state.run_id), "only a stopped run")


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled", "reverting", "reverted"])
def test_cancel_is_rejected_once_the_run_is_over(state: str) -> None:
    run = in_state(state)
    assert_rejected(run, CancelRun(run_id=run.state.run_id), "cannot cancel")


def test_cancel_keeps_the_effects() -> None:
    run = stopped(effects=3)
    run.handle(CancelRun(run_id=run.state.run_id), now())
    assert run.state.applied == 3
    assert run.state.effects_left == 3


# --------------------------------------------------------------------------- revert
@pytest.mark.parametrize("state", ["stopped", "succeeded", "failed", "cancelled"])
def test_revert_starts_from_a_finished_run(state: str) -> None:
    run = in_state(state)
    run.handle(RevertRun(run_id=run.state.run_id, force=True, actor="ops"), now())
    assert run.state.state == "reverting"
    assert run.state.revert is not None
    assert (run.state.revert.force, run.state.revert.then_delete) == (True, False)
    assert (run.state.revert.cursor, run.state.revert.cursor_offset) == ("+", 0)
    started = run.new_events[-1]
    assert isinstance(started, ev.RevertStarted)
    assert (started.actor, started.force, started.then_delete) == ("ops", True, False)


@pytest.mark.parametrize("state", ["queued", "running"])
def test_revert_of_an_active_run_is_rejected(state: str) -> None:
    run = in_state(state)
    assert_rejected(run, RevertRun(run_id=run.state.run_id), "stop or cancel it first")


def test_revert_twice_is_rejected_while_reverting() -> None:
    run = reverting()
    assert_rejected(run, RevertRun(run_id=run.state.run_id), "already being reverted")


def test_revert_twice_is_rejected_once_reverted() -> None:
    run = reverted()
    assert_rejected(run, RevertRun(run_id=run.state.run_id), "already reverted")


def test_revert_counts_compensated_and_skipped_and_moves_its_cursor() -> None:
    run = succeeded(effects=5)
    run.handle(RevertRun(run_id=run.state.run_id), now())
    skipped = [ev.SkippedEffect(4, "n:3", "changed")]
    run.record_compensation(now(), 2, skipped, "1-0", 3)
    assert run.state.revert is not None
    assert (run.state.revert.cursor, run.state.revert.cursor_offset) == ("1-0", 3)
    run.record_compensation(now(), 2, [], "(1-0", 0)
    run.finish_revert(now())

    s = run.state
    assert (s.state, s.compensated, s.skipped, s.applied) == ("reverted", 4, 1, 5)
    assert (s.effects_left, s.skipped_effects) == (1, [4])
    done = run.new_events[-1]
    assert isinstance(done, ev.RunReverted)
    assert (done.compensated, done.skipped, done.irreversible) == (4, 1, 0)


@pytest.mark.parametrize("state", ["running", "stopped", "succeeded", "reverted"])
def test_compensation_outside_a_revert_is_rejected(state: str) -> None:
    run = in_state(state)
    with pytest.raises(Rejected):
        run.record_compensation(now(), 1, [], "+", 0)
    with pytest.raises(Rejected):
        run.finish_revert(now())


# --------------------------------------------------------------------------- delete
@pytest.mark.parametrize("state", ["queued", "running", "reverting"])
@pytest.mark.parametrize("mode", ["plain", "revert", "keep_effects"])
def test_delete_is_refused_while_the_run_is_active(state: str, mode: DeleteMode) -> None:
    run = in_state(state)
    reason = "being reverted" if state == "reverting" else f"that is {state}"
    assert_rejected(run, DeleteRun(run_id=run.state.run_id, mode=mode), reason)


def test_plain_delete_is_refused_while_effects_are_unreverted() -> None:
    run = succeeded(effects=3)
    assert_rejected(
        run, DeleteRun(run_id=run.state.run_id), "3 network effects that are not reverted"
    )


@pytest.mark.parametrize("state", ["stopped", "failed", "cancelled"])
def test_plain_delete_of_a_run_without_effects_leaves_a_tombstone(state: str) -> None:
    run = in_state(state)
    run.handle(DeleteRun(run_id=run.state.run_id, actor="ops"), now())
    assert run.state.state == "deleted"
    gone = run.new_events[-1]
    assert isinstance(gone, ev.RunDeleted)
    assert (gone.actor, gone.effects_left) == ("ops", 0)


@pytest.mark.parametrize("mode", ["plain", "revert", "keep_effects"])
def test_delete_is_refused_while_a_chunk_is_pending(mode: DeleteMode) -> None:
    # The worker may have written the chunk to the network and died before confirming it;
    # until the chunk is confirmed or voided, no one knows which effects the run left.
    run = running()
    run.prepare_chunk(
        now(), items_to=1, effects=[effect("n:a")], notifications=[], log=[], results={}
    )
    run.handle(StopRun(run_id=run.state.run_id), now())
    assert run.state.pending is not None

    assert_rejected(run, DeleteRun(run_id=run.state.run_id, mode=mode), "still being recorded")

    run.confirm_chunk(now())
    assert_rejected(run, DeleteRun(run_id=run.state.run_id), "1 network effects")


def test_delete_of_a_running_run_with_a_chunk_pending_names_the_state() -> None:
    # The state is the reason: told to wait for the chunk, someone would try again and be
    # refused for another reason (CI's runctl flow met this when a delete caught a chunk).
    run = running()
    run.prepare_chunk(
        now(), items_to=1, effects=[effect("n:a")], notifications=[], log=[], results={}
    )
    assert_rejected(run, DeleteRun(run_id=run.state.run_id, mode="keep_effects"), "that is running")


def test_delete_with_keep_effects_counts_the_effects_left_behind() -> None:
    run = running()
    chunk(run, effects=3, notifications=2)
    run.handle(StopRun(run_id=run.state.run_id), now())

    run.handle(DeleteRun(run_id=run.state.run_id, mode="keep_effects"), now())

    assert run.state.state == "deleted"
    gone = run.new_events[-1]
    assert isinstance(gone, ev.RunDeleted)
    assert (gone.effects_left, gone.irreversible) == (3, 2)


def test_plain_delete_is_allowed_after_a_revert_that_took_everything_back() -> None:
    run = reverting()
    run.record_compensation(now(), 2, [], "(0-1", 0)
    run.finish_revert(now())

    run.handle(DeleteRun(run_id=run.state.run_id), now())

    gone = run.new_events[-1]
    assert isinstance(gone, ev.RunDeleted)
    assert gone.effects_left == 0
    assert run.state.state == "deleted"


def reverted_with_conflict() -> Run:
    """Two effects; the revert took back effect 1 and skipped effect 2 as a conflict."""
    run = reverting()
    run.record_compensation(now(), 1, [ev.SkippedEffect(2, "n:1", "changed by run X")], "(0-1", 0)
    run.finish_revert(now())
    return run


def test_plain_delete_of_a_reverted_run_with_skipped_effects_is_refused() -> None:
    run = reverted_with_conflict()
    assert run.state.effects_left == 1
    assert_rejected(
        run,
        DeleteRun(run_id=run.state.run_id),
        "1 network effects left by conflicts its revert skipped; use --revert",
    )


def test_delete_keeping_effects_of_a_reverted_run_counts_the_skipped_ones() -> None:
    run = reverted_with_conflict()
    run.handle(DeleteRun(run_id=run.state.run_id, mode="keep_effects"), now())
    gone = run.new_events[-1]
    assert isinstance(gone, ev.RunDeleted)
    assert gone.effects_left == 1


def test_delete_with_revert_of_a_reverted_run_with_skipped_effects_retries_them() -> None:
    run = reverted_with_conflict()
    run.take_events()
    run.handle(DeleteRun(run_id=run.state.run_id, mode="revert"), now())
    [started] = run.take_events()
    assert isinstance(started, ev.RevertStarted) and started.then_delete
    assert run.state.revert is not None and run.state.revert.only == [2]


@pytest.mark.parametrize("force", [False, True])
def test_a_reverted_run_with_skipped_effects_is_revertable_again(force: bool) -> None:
    run = reverted_with_conflict()
    run.handle(RevertRun(run_id=run.state.run_id, force=force), now())

    s = run.state
    assert s.state == "reverting"
    assert s.revert is not None
    # Only the skipped effect is retried, from the newest event again.
    assert (s.revert.only, s.revert.force, s.revert.cursor) == ([2], force, "+")
    assert (s.compensated, s.skipped, s.skipped_effects, s.effects_left) == (1, 0, [], 1)

    run.record_compensation(now(), 1, [], "(0-1", 0)
    run.finish_revert(now())
    assert (run.state.state, run.state.compensated, run.state.effects_left) == ("reverted", 2, 0)
    assert_rejected(run, RevertRun(run_id=run.state.run_id), "already reverted")


def test_a_retried_revert_that_meets_the_conflict_again_keeps_it_left() -> None:
    run = reverted_with_conflict()
    run.handle(RevertRun(run_id=run.state.run_id), now())
    run.record_compensation(now(), 0, [ev.SkippedEffect(2, "n:1", "changed by run X")], "(0-1", 0)
    run.finish_revert(now())
    s = run.state
    assert (s.state, s.compensated, s.skipped, s.skipped_effects) == ("reverted", 1, 1, [2])
    assert s.effects_left == 1


def test_the_summary_shows_the_effects_left() -> None:
    from runstream.domain.run import summarize

    assert summarize(reverted_with_conflict().state).effects_left == 1
    assert summarize(succeeded(effects=3).state).effects_left == 3


def test_delete_with_revert_reverts_first_then_deletes() -> None:
    run = succeeded(effects=2)
    rid = run.state.run_id
    run.take_events()

    run.handle(DeleteRun(run_id=rid, mode="revert", actor="ops"), now())

    [started] = run.take_events()
    assert isinstance(started, ev.RevertStarted)
    assert (started.then_delete, started.actor) == (True, "ops")
    assert run.state.state == "reverting"

    run.record_compensation(now(), 2, [], "(0-1", 0)
    run.finish_revert(now())

    reverted_event, deleted_event = run.take_events()[-2:]
    assert isinstance(reverted_event, ev.RunReverted)
    assert isinstance(deleted_event, ev.RunDeleted)
    assert (deleted_event.actor, deleted_event.effects_left) == ("ops", 0)
    assert state_of(run) == "deleted"


def test_delete_with_revert_of_a_reverted_run_just_deletes() -> None:
    run = reverted()
    run.take_events()
    run.handle(DeleteRun(run_id=run.state.run_id, mode="revert"), now())
    assert events_of(run) == [ev.RunDeleted]


# --------------------------------------------------------------------------- pin
@pytest.mark.parametrize("state", sorted(set(BUILDERS) - {"deleted"}))
def test_pin_and_unpin_in_any_state(state: str) -> None:
    run = in_state(state)
    run.handle(PinRun(run_id=run.state.run_id, actor="ops"), now())
    assert run.state.pinned
    assert run.state.state == state
    pinned = run.new_events[-1]
    assert isinstance(pinned, ev.RunPinned)
    assert (pinned.actor, pinned.pinned) == ("ops", True)

    run.handle(PinRun(run_id=run.state.run_id, pinned=False), now())
    assert not run.state.pinned


def test_pinning_twice_or_unpinning_an_unpinned_run_is_rejected() -> None:
    run = stopped()
    assert_rejected(run, PinRun(run_id=run.state.run_id, pinned=False), "already unpinned")
    run.handle(PinRun(run_id=run.state.run_id), now())
    assert_rejected(run, PinRun(run_id=run.state.run_id), "already pinned")


@pytest.mark.parametrize("mode", ["plain", "revert", "keep_effects"])
def test_delete_of_a_pinned_run_is_refused_until_it_is_unpinned(mode: DeleteMode) -> None:
    run = stopped()
    run.handle(PinRun(run_id=run.state.run_id), now())
    assert_rejected(run, DeleteRun(run_id=run.state.run_id, mode=mode), "pinned; unpin it first")

    run.handle(PinRun(run_id=run.state.run_id, pinned=False), now())
    run.handle(DeleteRun(run_id=run.state.run_id, mode=mode), now())
    assert run.state.state in ("deleted", "reverting")


def test_a_pinned_run_can_still_be_reverted() -> None:
    run = succeeded()
    run.handle(PinRun(run_id=run.state.run_id), now())
    run.handle(RevertRun(run_id=run.state.run_id), now())
    assert (run.state.state, run.state.pinned) == ("reverting", True)


def test_a_run_being_reverted_to_be_deleted_cannot_be_pinned() -> None:
    run = succeeded()
    run.handle(DeleteRun(run_id=run.state.run_id, mode="revert"), now())
    assert_rejected(run, PinRun(run_id=run.state.run_id), "cannot be pinned")
    run.record_compensation(now(), run.state.applied, [], "(0-1", 0)

    run.finish_revert(now())

    assert run.state.state == "deleted"


# --------------------------------------------------------------------------- no such run
COMMANDS = [StopRun, ContinueRun, CancelRun, RevertRun, DeleteRun, PinRun]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_on_a_run_that_does_not_exist_are_rejected(command: type[Command]) -> None:
    run = Run.blank(new_id())
    assert_rejected(run, command(run_id=run.state.run_id), "does not exist")  # type: ignore[call-arg]


@pytest.mark.parametrize("command", [*COMMANDS, StartRun])
def test_commands_on_a_deleted_run_are_rejected(command: type[Command]) -> None:
    run = deleted()
    kwargs: dict[str, Any] = {"scenario": "synthetic"} if command is StartRun else {}
    assert_rejected(run, command(run_id=run.state.run_id, **kwargs), "was deleted")


# --------------------------------------------------------------------------- rejections
@pytest.mark.parametrize("state", sorted(BUILDERS))
def test_a_recorded_rejection_changes_nothing_but_the_version(state: str) -> None:
    run = in_state(state)
    before = snapshot(run)
    command = ContinueRun(run_id=run.state.run_id, actor="ops")

    run.reject(command, "not now", before["updated_at"] + 1000.0)

    after = snapshot(run)
    assert after.pop("version") == before.pop("version") + 1
    # Not even updated_at: the rejection is in the history, but the run did not change.
    assert after == before
    rejected = run.new_events[-1]
    assert isinstance(rejected, ev.CommandRejected)
    assert (rejected.command_type, rejected.reason) == ("ContinueRun", "not now")
    assert rejected.actor == "ops"
    assert rejected.command_id == command.command_id


# --------------------------------------------------------------------------- execution
def test_begin_starts_a_queued_run_and_only_that() -> None:
    run = queued()
    run.begin(now(), "w")
    assert run.state.state == "running"
    versions = run.state.version
    run.begin(now(), "w")
    assert run.state.version == versions


def test_prepared_chunk_is_pending_until_confirmed() -> None:
    run = running()
    prepared = run.prepare_chunk(
        now(),
        items_to=4,
        effects=[effect("n:a"), effect("n:b"), effect("n:a")],
        notifications=["hi"],
        log=["line"],
        results={"out.txt": "x"},
    )
    assert (prepared.chunk, prepared.items_from, prepared.items_to, prepared.first_effect) == (
        0,
        0,
        4,
        1,
    )
    s = run.state
    assert s.pending is not None
    assert (s.pending.chunk, s.pending.items_to, s.pending.effects) == (0, 4, 3)
    # Nothing counts until the chunk is on the network.
    assert (s.items_processed, s.applied, s.irreversible, s.next_effect) == (0, 0, 0, 4)

    run.confirm_chunk(now())

    s = run.state
    assert s.pending is None
    assert (s.items_processed, s.applied, s.irreversible, s.next_chunk) == (4, 3, 1, 1)
    confirmed = run.new_events[-1]
    assert isinstance(confirmed, ev.ItemsProcessed)
    assert (confirmed.chunk, confirmed.items_to, confirmed.effects, confirmed.irreversible) == (
        0,
        4,
        3,
        1,
    )


def test_chunks_number_their_effects_consecutively() -> None:
    run = running()
    chunk(run, effects=3)
    second = run.prepare_chunk(
        now(), items_to=2, effects=[effect()], notifications=[], log=[], results={}
    )
    assert (second.chunk, second.first_effect, second.items_from) == (1, 4, 1)


def test_a_voided_chunk_counts_nothing_and_is_remembered() -> None:
    run = running()
    chunk(run, effects=2, items=2)
    run.prepare_chunk(
        now(), items_to=5, effects=[effect(), effect()], notifications=["x"], log=[], results={}
    )

    run.void_chunk(now(), "worker died")

    s = run.state
    assert s.pending is None
    assert (s.items_processed, s.applied, s.irreversible, s.voided_chunks) == (2, 2, 0, [1])
    # The voided chunk's numbers are used up: the next chunk follows it.
    redo = run.prepare_chunk(
        now(), items_to=5, effects=[effect()], notifications=[], log=[], results={}
    )
    assert (redo.chunk, redo.first_effect, redo.items_from) == (2, 5, 2)


def test_a_second_chunk_cannot_be_prepared_while_one_is_pending() -> None:
    run = running()
    run.prepare_chunk(now(), items_to=1, effects=[], notifications=[], log=[], results={})
    with pytest.raises(Rejected, match="still pending"):
        run.prepare_chunk(now(), items_to=2, effects=[], notifications=[], log=[], results={})


@pytest.mark.parametrize("state", ["queued", "stopped", "succeeded", "cancelled", "reverted"])
def test_items_are_processed_only_while_running(state: str) -> None:
    run = in_state(state)
    with pytest.raises(Rejected, match="cannot process items"):
        run.prepare_chunk(now(), items_to=1, effects=[], notifications=[], log=[], results={})


def test_confirm_or_void_without_a_pending_chunk_is_rejected() -> None:
    run = running()
    with pytest.raises(Rejected, match="no chunk is pending"):
        run.confirm_chunk(now())
    with pytest.raises(Rejected, match="no chunk is pending"):
        run.void_chunk(now(), "x")


def test_a_pending_chunk_can_be_confirmed_after_a_stop() -> None:
    run = running()
    run.prepare_chunk(now(), items_to=3, effects=[effect()], notifications=[], log=[], results={})
    run.handle(StopRun(run_id=run.state.run_id), now())

    run.confirm_chunk(now())

    assert (run.state.state, run.state.applied, run.state.items_processed) == ("stopped", 1, 3)


def test_succeed_only_a_running_run_with_no_pending_chunk() -> None:
    run = running()
    run.prepare_chunk(now(), items_to=1, effects=[], notifications=[], log=[], results={})
    run.succeed(now())
    assert state_of(run) == "running"
    run.confirm_chunk(now())
    run.succeed(now())
    assert state_of(run) == "succeeded"
    assert events_of(run)[-1] is ev.RunSucceeded


def test_fail_records_the_error() -> None:
    run = running()
    run.fail(now(), "item 3: boom")
    assert (run.state.state, run.state.error) == ("failed", "item 3: boom")


def test_fail_of_a_queued_run_is_possible_but_not_of_a_finished_one() -> None:
    run = queued()
    run.fail(now(), "bad arguments")
    assert run.state.state == "failed"
    run = stopped()
    version = run.state.version
    run.fail(now(), "late")
    assert (run.state.state, run.state.version) == ("stopped", version)


# --------------------------------------------------------------------------- events are the truth
def _lifecycle() -> Run:
    run = running()
    chunk(run, effects=3, notifications=1, items=2)
    run.prepare_chunk(now(), items_to=4, effects=[effect()], notifications=[], log=[], results={})
    run.void_chunk(now(), "lost")
    run.handle(StopRun(run_id=run.state.run_id, reason="pause"), now())
    run.reject(ContinueRun(run_id=run.state.run_id), "just testing", now())
    run.handle(ContinueRun(run_id=run.state.run_id), now())
    chunk(run, effects=2, items=3)
    run.succeed(now())
    run.handle(DeleteRun(run_id=run.state.run_id, mode="revert"), now())
    run.record_compensation(now(), 3, [ev.SkippedEffect(1, "n:0", "changed")], "1-0", 1)
    return run


def test_folding_the_recorded_events_gives_the_live_state() -> None:
    run = _lifecycle()
    events = list(run.new_events)

    rebuilt = RunState(run_id=run.state.run_id)
    for event in events:
        apply(rebuilt, event)

    assert snapshot(Run(rebuilt)) == snapshot(run)
    assert rebuilt.version == len(events)


def test_folding_after_the_events_went_through_json_gives_the_live_state() -> None:
    run = _lifecycle()
    run.finish_revert(now())
    rebuilt = RunState(run_id=run.state.run_id)
    for event in run.new_events:
        apply(rebuilt, ev.decode_event(ev.encode_event(event)))
    assert msgspec.to_builtins(rebuilt) == snapshot(run)
    assert rebuilt.state == "deleted"


def test_state_round_trips_through_a_msgpack_snapshot() -> None:
    run = _lifecycle()
    raw = msgspec.msgpack.encode(run.state)
    restored = msgspec.msgpack.decode(raw, type=RunState)
    assert restored == run.state
    assert restored.revert is not None

    # A snapshot plus the events after it gives the same state as all the events.
    run.finish_revert(now())
    for event in run.new_events[-2:]:
        apply(restored, event)
    assert restored == run.state


def test_runs_stand_in_line_started_first_then_by_priority_then_age() -> None:
    def state(**fields: Any) -> RunState:
        return RunState(run_id="01ARZ3NDEKTSV4RRFFQ69G5FAV", **fields)

    started = state(state="running", priority=9, created_at=300.0, started_at=400.0)
    urgent_old = state(state="queued", priority=1, created_at=100.0)
    urgent_new = state(state="queued", priority=1, created_at=200.0)
    normal_old = state(state="queued", priority=5, created_at=50.0)
    continued_before_start = state(state="queued", priority=9, created_at=10.0)
    line = [started, urgent_old, urgent_new, normal_old, continued_before_start]
    assert sorted(line, key=lambda s: s.runnable_score) == line


def test_a_conflict_names_the_run_that_changed_the_element_or_outside_runstream() -> None:
    from runstream.revert import conflict_reason

    run_id = new_id()
    assert conflict_reason(f"{run_id}/12") == f"changed by run {run_id} since this run wrote it"
    for holder in ("operator/edit-1", "", "seed", "not-a-run/3"):
        assert conflict_reason(holder) == "changed outside runstream since this run wrote it"
