"""The Run aggregate: checks a request against the run's state, then records events.

Only ``apply`` changes state; every method that changes anything does so by recording an
event through it. No I/O here: the store loads and saves, the worker drives.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import msgspec

from runstream.contracts import events as ev
from runstream.contracts.commands import (
    CancelRun,
    Command,
    ContinueRun,
    DeleteRun,
    PinRun,
    RevertRun,
    StartRun,
    StopRun,
    TrackRun,
    command_type,
)

State = Literal[
    "new",
    "queued",
    "running",
    "stopped",
    "succeeded",
    "failed",
    "cancelled",
    "reverting",
    "reverted",
    "deleted",
]
# The states a listed run can be in (a new run has no listing, a deleted one a tombstone).
STATES: tuple[str, ...] = tuple(s for s in get_args(State) if s not in ("new", "deleted"))
FINISHED = frozenset({"stopped", "succeeded", "failed", "cancelled"})
# States in which an executor has work to do.
ACTIVE = frozenset({"queued", "running", "reverting"})


# Runnable-set scores of waiting runs: one band per priority, above any time in ms.
WAITING_BAND = 10**13


class Rejected(Exception):
    """A request that does not fit the run's state; the message is the reason."""


class Pending(msgspec.Struct, kw_only=True):
    chunk: int
    items_to: int
    effects: int
    notifications: int
    # Result files the chunk puts (name -> bytes): the run's once the chunk is confirmed.
    results: dict[str, int] = {}


class RevertProgress(msgspec.Struct, kw_only=True):
    force: bool
    then_delete: bool
    actor: str = ""
    cursor: str = "+"
    cursor_offset: int = 0
    # A retry of a revert that skipped conflicts takes only the effects it skipped.
    only: list[int] | None = None


class RunState(msgspec.Struct, kw_only=True):
    run_id: str
    version: int = 0
    state: State = "new"
    scenario: str = ""
    scenario_version: str = ""
    args: dict[str, Any] = {}
    name: str = ""
    description: str = ""
    actor: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    items_total: int | None = None
    items_processed: int = 0
    next_chunk: int = 0
    next_effect: int = 1
    applied: int = 0
    irreversible: int = 0
    compensated: int = 0
    skipped: int = 0
    # Effect numbers the current (or last) revert pass skipped as conflicts.
    skipped_effects: list[int] = []
    pending: Pending | None = None
    voided_chunks: list[int] = []
    revert: RevertProgress | None = None
    error: str = ""
    error_at_item: int | None = None  # the item the run failed on (its checkpoint then)
    stop_reason: str = ""
    pinned: bool = False
    labels: dict[str, str] = {}
    ended_at: float = 0.0  # succeeded, failed or cancelled (0: not ended)
    priority: int = 5
    source_run_id: str = ""
    started_at: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    # Result files kept (name -> bytes): the per-run limit counts them.
    result_sizes: dict[str, int] = {}
    # Recorded by TrackRun: executed elsewhere, no effects.
    tracked: bool = False
    tracked_duration_ms: int | None = None

    @property
    def needs_executor(self) -> bool:
        """An executor has work here: the run is active, or a chunk was left pending (even
        in a stopped or cancelled run it must be confirmed or voided)."""
        return self.state in ACTIVE or self.pending is not None

    @property
    def runnable_score(self) -> int:
        """Where the run stands among those needing an executor, lowest first: runs already
        started (by when they started, so a dead worker's are taken over first), then runs
        waiting their turn, by priority, then age. (Scores stay below 2**53: exact.)"""
        if self.state == "queued" and not self.started_at:
            return self.priority * WAITING_BAND + int(self.created_at * 1000)
        return int(self.started_at * 1000 if self.started_at else self.updated_at * 1000)

    @property
    def effects_left(self) -> int:
        """Revertable effects still on the network on this run's account (conflicts a
        revert skipped included)."""
        return max(0, self.applied - self.compensated)


class Run:
    def __init__(self, state: RunState) -> None:
        self.state = state
        self.new_events: list[ev.Event] = []

    @classmethod
    def blank(cls, run_id: str) -> Run:
        return cls(RunState(run_id=run_id))

    @property
    def exists(self) -> bool:
        return self.state.state != "new"

    # ------------------------------------------------------------------ recording
    def _record(self, event: ev.Event) -> None:
        apply(self.state, event)
        self.new_events.append(event)

    def take_events(self) -> list[ev.Event]:
        out, self.new_events = self.new_events, []
        return out

    # ------------------------------------------------------------------ commands
    # One method per command: each checks the command against the state, then records
    # what it leads to, or raises Rejected with the reason.
    def handle(self, command: Command, now: float) -> None:
        """Any command but StartRun (which needs its scenario checked first, see ``start``)."""
        match command:
            case StartRun():
                self.start(command, now)
            case StopRun():
                self.stop(command, now)
            case ContinueRun():
                self.continue_(command, now)
            case CancelRun():
                self.cancel(command, now)
            case RevertRun():
                self.revert(command, now)
            case DeleteRun():
                self.delete(command, now)
            case PinRun():
                self.pin(command, now)
            case TrackRun():
                self.track(command, now)

    def _existing(self) -> RunState:
        s = self.state
        if s.state == "deleted":
            raise Rejected(f"run {s.run_id} was deleted")
        if not self.exists:
            raise Rejected(f"run {s.run_id} does not exist")
        return s

    def start(
        self,
        command: StartRun,
        now: float,
        *,
        scenario_version: str = "",
        args: dict[str, Any] | None = None,
        items_total: int | None = None,
        input_bytes: int = 0,
    ) -> None:
        """The scenario and arguments are validated by the caller (it knows the registry)
        and passed in normalised."""
        s = self.state
        if s.state == "deleted":
            raise Rejected(f"run {s.run_id} was deleted")
        if self.exists:
            raise Rejected(f"run {s.run_id} already exists")
        self._record(
            ev.RunQueued(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                run_id=s.run_id,
                scenario=command.scenario,
                scenario_version=scenario_version,
                args=args if args is not None else dict(command.args),
                name=command.name,
                description=command.description,
                actor=command.actor,
                items_total=items_total,
                labels=dict(command.labels),
                priority=command.priority,
                source_run_id=command.source_run_id,
                input_bytes=input_bytes,
            )
        )

    def stop(self, command: StopRun, now: float) -> None:
        s = self._existing()
        if s.state not in ("queued", "running"):
            raise Rejected(f"cannot stop a run that is {s.state}")
        self._record(
            ev.RunStopped(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                actor=command.actor,
                reason=command.reason,
            )
        )

    def continue_(self, command: ContinueRun, now: float) -> None:
        s = self._existing()
        if s.state != "stopped":
            raise Rejected(f"cannot continue a run that is {s.state}; only a stopped run")
        self._record(
            ev.RunContinued(
                at=now, command_id=command.command_id, bulk_id=command.bulk_id, actor=command.actor
            )
        )

    def cancel(self, command: CancelRun, now: float) -> None:
        s = self._existing()
        if s.state not in ("queued", "running", "stopped"):
            raise Rejected(f"cannot cancel a run that is {s.state}")
        self._record(
            ev.RunCancelled(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                actor=command.actor,
                reason=command.reason,
            )
        )

    def revert(self, command: RevertRun, now: float) -> None:
        if self._existing().tracked:
            raise Rejected("a tracked run has no effects to revert")
        self._check_revertable()
        self._record(
            ev.RevertStarted(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                actor=command.actor,
                force=command.force,
            )
        )

    def pin(self, command: PinRun, now: float) -> None:
        s = self._existing()
        if command.pinned and s.state == "reverting" and s.revert and s.revert.then_delete:
            raise Rejected("run is being reverted to be deleted; it cannot be pinned")
        if command.pinned == s.pinned:
            raise Rejected(f"run is already {'pinned' if s.pinned else 'unpinned'}")
        self._record(
            ev.RunPinned(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                actor=command.actor,
                pinned=command.pinned,
            )
        )

    def track(self, command: TrackRun, now: float, *, scenario_version: str = "") -> None:
        if self.state.state == "deleted":
            raise Rejected(f"run {self.state.run_id} was deleted")
        if self.exists:
            raise Rejected(f"run {self.state.run_id} already exists")
        if command.error and command.status != "failed":
            raise Rejected("an error message is only allowed with status failed")
        for what, text in (("input", command.input), ("output", command.output)):
            try:
                msgspec.json.decode(text)
            except (msgspec.DecodeError, RecursionError) as exc:
                raise Rejected(f"the {what} must be JSON: {exc}") from None
        self._record(
            ev.RunTracked(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                run_id=self.state.run_id,
                scenario=command.scenario,
                scenario_version=scenario_version,
                status=command.status,
                input=command.input,
                output=command.output,
                duration_ms=command.duration_ms,
                error=command.error,
                log=command.log,
                name=command.name,
                description=command.description,
                actor=command.actor,
            )
        )

    def _check_revertable(self) -> None:
        """A finished run, or a reverted one whose revert skipped conflicts (a retry takes
        back what no one else holds now, or everything with force)."""
        s = self.state
        if s.state == "reverted" and s.effects_left == 0:
            raise Rejected("run is already reverted")
        if s.state == "reverting":
            raise Rejected("run is already being reverted")
        if s.state not in FINISHED and s.state != "reverted":
            raise Rejected(f"cannot revert a run that is {s.state}; stop or cancel it first")

    def delete(self, command: DeleteRun, now: float) -> None:
        s = self._existing()
        cid = command.command_id
        if s.pinned:
            raise Rejected("run is pinned; unpin it first")
        # The state first: a running run's pending chunk is not why it can't be deleted.
        if s.state in ACTIVE:
            raise Rejected(
                f"cannot delete a run that is {s.state}; stop or cancel it first"
                if s.state != "reverting"
                else "cannot delete a run while it is being reverted"
            )
        if s.pending is not None:
            raise Rejected("a chunk of the run is still being recorded; try again shortly")
        left = s.effects_left
        if command.mode == "revert" and left > 0:
            self._check_revertable()
            self._record(
                ev.RevertStarted(
                    at=now,
                    command_id=cid,
                    bulk_id=command.bulk_id,
                    actor=command.actor,
                    then_delete=True,
                )
            )
            return
        if command.mode == "plain" and left > 0:
            what = (
                "that are not reverted"
                if s.state != "reverted"
                else "left by conflicts its revert skipped"
            )
            raise Rejected(
                f"run has {left} network effects {what}; "
                "use --revert to revert then delete, or --keep-effects to delete anyway"
            )
        self._record(
            ev.RunDeleted(
                at=now,
                command_id=cid,
                bulk_id=command.bulk_id,
                actor=command.actor,
                effects_left=left,
                irreversible=s.irreversible,
            )
        )

    def reject(self, command: Command, reason: str, now: float) -> None:
        """Record a rejection in the run's history: state does not change."""
        self._record(
            ev.CommandRejected(
                at=now,
                command_id=command.command_id,
                bulk_id=command.bulk_id,
                command_type=command_type(command),
                reason=reason,
                actor=command.actor,
            )
        )

    # ------------------------------------------------------------------ execution
    def begin(self, now: float, worker: str) -> None:
        if self.state.state == "queued":
            self._record(ev.RunStarted(at=now, worker=worker))

    def prepare_chunk(
        self,
        now: float,
        *,
        items_to: int,
        effects: list[ev.EffectRecord],
        notifications: list[str],
        log: list[str],
        results: dict[str, str],
        result_types: dict[str, str] | None = None,
    ) -> ev.ChunkPrepared:
        s = self.state
        if s.state != "running":
            raise Rejected(f"cannot process items of a run that is {s.state}")
        if s.pending is not None:
            raise Rejected(f"chunk {s.pending.chunk} is still pending")
        event = ev.ChunkPrepared(
            at=now,
            chunk=s.next_chunk,
            items_from=s.items_processed,
            items_to=items_to,
            first_effect=s.next_effect,
            effects=effects,
            notifications=notifications,
            log=log,
            results=results,
            result_types=result_types or {},
        )
        self._record(event)
        return event

    def confirm_chunk(self, now: float) -> None:
        """The pending chunk's effects are on the network (valid in any state)."""
        p = self.state.pending
        if p is None:
            raise Rejected("no chunk is pending")
        self._record(
            ev.ItemsProcessed(
                at=now,
                chunk=p.chunk,
                items_to=p.items_to,
                effects=p.effects,
                irreversible=p.notifications,
            )
        )

    def void_chunk(self, now: float, reason: str) -> None:
        p = self.state.pending
        if p is None:
            raise Rejected("no chunk is pending")
        self._record(ev.ChunkVoided(at=now, chunk=p.chunk, reason=reason))

    def succeed(self, now: float) -> None:
        if self.state.state == "running" and self.state.pending is None:
            self._record(ev.RunSucceeded(at=now))

    def fail(self, now: float, error: str) -> None:
        if self.state.state in ("queued", "running"):
            self._record(ev.RunFailed(at=now, error=error))

    def record_compensation(
        self,
        now: float,
        compensated: int,
        skipped: list[ev.SkippedEffect],
        cursor: str,
        cursor_offset: int,
    ) -> None:
        if self.state.state != "reverting":
            raise Rejected(f"cannot compensate effects of a run that is {self.state.state}")
        self._record(
            ev.EffectsCompensated(
                at=now,
                compensated=compensated,
                skipped=skipped,
                cursor=cursor,
                cursor_offset=cursor_offset,
            )
        )

    def finish_revert(self, now: float) -> None:
        s = self.state
        if s.state != "reverting" or s.revert is None:
            raise Rejected(f"cannot finish reverting a run that is {s.state}")
        then_delete = s.revert.then_delete
        actor = s.revert.actor
        self._record(
            ev.RunReverted(
                at=now, compensated=s.compensated, skipped=s.skipped, irreversible=s.irreversible
            )
        )
        if then_delete:
            self._record(
                ev.RunDeleted(
                    at=now, actor=actor, effects_left=s.effects_left, irreversible=s.irreversible
                )
            )


def apply(s: RunState, event: ev.Event) -> None:
    """Fold one event into the state. The only place state changes."""
    s.version += 1
    if not isinstance(event, ev.CommandRejected):
        # A rejection is kept in the history but changes nothing about the run.
        s.updated_at = event.at
    match event:
        case ev.RunQueued():
            s.state = "queued"
            s.scenario = event.scenario
            s.scenario_version = event.scenario_version
            s.args = event.args
            s.name = event.name
            s.description = event.description
            s.actor = event.actor
            s.created_at = event.at
            s.items_total = event.items_total
            s.labels = event.labels
            s.priority = event.priority
            s.source_run_id = event.source_run_id
            s.input_bytes = event.input_bytes
        case ev.RunTracked():
            s.state = "succeeded" if event.status == "succeeded" else "failed"
            s.tracked = True
            s.scenario = event.scenario
            s.scenario_version = event.scenario_version
            s.name = event.name
            s.description = event.description
            s.actor = event.actor
            s.created_at = s.started_at = s.ended_at = event.at
            s.error = event.error
            s.tracked_duration_ms = event.duration_ms
            s.input_bytes = len(event.input.encode())
            s.output_bytes = len(event.output.encode())
        case ev.RunStarted():
            s.state = "running"
            s.started_at = s.started_at or event.at
        case ev.ChunkPrepared():
            s.pending = Pending(
                chunk=event.chunk,
                items_to=event.items_to,
                effects=len(event.effects),
                notifications=len(event.notifications),
                results={name: len(text.encode()) for name, text in event.results.items()},
            )
            s.next_chunk = event.chunk + 1
            s.next_effect = event.first_effect + len(event.effects)
        case ev.ItemsProcessed():
            if s.pending is not None and s.pending.results:
                s.result_sizes = {**s.result_sizes, **s.pending.results}
                s.output_bytes = sum(s.result_sizes.values())
            s.pending = None
            s.items_processed = event.items_to
            s.applied += event.effects
            s.irreversible += event.irreversible
        case ev.ChunkVoided():
            s.pending = None
            s.voided_chunks = [*s.voided_chunks, event.chunk]
        case ev.RunStopped():
            s.state = "stopped"
            s.stop_reason = event.reason
        case ev.RunContinued():
            # A run stopped before it ever started goes back to waiting its turn.
            s.state = "running" if s.started_at else "queued"
            s.stop_reason = ""
        case ev.RunSucceeded():
            s.state = "succeeded"
            s.ended_at = event.at
        case ev.RunFailed():
            s.state = "failed"
            s.error = event.error
            s.error_at_item = s.items_processed
            s.ended_at = event.at
        case ev.RunCancelled():
            s.state = "cancelled"
            s.stop_reason = event.reason
            s.ended_at = event.at
        case ev.RevertStarted():
            # Started again on a reverted run: a retry of the effects the last pass skipped.
            retry = s.skipped_effects if s.state == "reverted" else None
            s.state = "reverting"
            s.revert = RevertProgress(
                force=event.force, then_delete=event.then_delete, actor=event.actor, only=retry
            )
            s.skipped = 0
            s.skipped_effects = []
        case ev.EffectsCompensated():
            s.compensated += event.compensated
            s.skipped += len(event.skipped)
            s.skipped_effects = [*s.skipped_effects, *(x.effect_no for x in event.skipped)]
            if s.revert is not None:
                s.revert.cursor = event.cursor
                s.revert.cursor_offset = event.cursor_offset
        case ev.RunReverted():
            s.state = "reverted"
        case ev.RunDeleted():
            s.state = "deleted"
        case ev.RunPinned():
            s.pinned = event.pinned
        case ev.CommandRejected():
            pass


class RunSummary(msgspec.Struct, kw_only=True):
    """The read model of one run (what ``runctl show`` and ``list`` print)."""

    id: str
    scenario: str
    scenario_version: str
    state: str
    name: str
    description: str
    actor: str
    args: dict[str, Any]
    items_processed: int
    items_total: int | None
    effects: dict[str, int]
    created_at: float
    updated_at: float
    error: str
    reason: str
    version: int
    pinned: bool = False
    priority: int = 5
    source_run_id: str = ""
    input_bytes: int = 0
    output_bytes: int = 0
    tracked: bool = False
    tracked_duration_ms: int | None = None
    started_at: float = 0.0
    # Revertable effects still on the network on this run's account (see RunState).
    effects_left: int = 0
    labels: dict[str, str] = {}
    ended_at: float = 0.0
    duration_ms: int | None = None  # started to ended (or as tracked)
    error_at_item: int | None = None
    # New fields go here with a default, and a row in runstream.query.FIELDS to query them.


def summarize(s: RunState) -> RunSummary:
    return RunSummary(
        id=s.run_id,
        scenario=s.scenario,
        scenario_version=s.scenario_version,
        state=s.state,
        name=s.name,
        description=s.description,
        actor=s.actor,
        args=s.args,
        items_processed=s.items_processed,
        items_total=s.items_total,
        effects={
            "applied": s.applied,
            "compensated": s.compensated,
            "skipped": s.skipped,
            "irreversible": s.irreversible,
        },
        created_at=s.created_at,
        updated_at=s.updated_at,
        error=s.error,
        reason=s.stop_reason,
        version=s.version,
        pinned=s.pinned,
        priority=s.priority,
        source_run_id=s.source_run_id,
        input_bytes=s.input_bytes,
        output_bytes=s.output_bytes,
        tracked=s.tracked,
        tracked_duration_ms=s.tracked_duration_ms,
        started_at=s.started_at,
        effects_left=s.effects_left,
        labels=s.labels,
        ended_at=s.ended_at,
        duration_ms=_duration_ms(s),
        error_at_item=s.error_at_item,
    )


def _duration_ms(s: RunState) -> int | None:
    if s.tracked:
        return s.tracked_duration_ms
    if s.started_at and s.ended_at:
        return round((s.ended_at - s.started_at) * 1000)
    return None
