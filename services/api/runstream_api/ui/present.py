"""How things read on a page: times, durations, sizes, and the actions a run's state and
the caller's role allow (decided by the Run aggregate's own checks, never a copy of them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from runstream.contracts import commands as cmd
from runstream.domain.run import Rejected, Run, RunState
from runstream.tokens import Role, TokenRecord, allows

_state_codec = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(RunState)


def when(ts: float | None) -> str:
    """A stored time as UTC, to the second ('' for not happened)."""
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Action:
    name: str  # stop, continue, cancel, revert, delete, rerun
    label: str
    role: Role


ACTIONS: tuple[Action, ...] = (
    Action("stop", "Stop", "operator"),
    Action("continue", "Continue", "operator"),
    Action("cancel", "Cancel", "operator"),
    Action("revert", "Revert", "admin"),
    Action("delete", "Delete", "admin"),
)
BY_NAME = {a.name: a for a in ACTIONS}


def probe(name: str, run_id: str) -> list[cmd.Command]:
    """The commands that stand for an action in the state check (delete: any mode)."""
    match name:
        case "stop":
            return [cmd.StopRun(run_id=run_id)]
        case "continue":
            return [cmd.ContinueRun(run_id=run_id)]
        case "cancel":
            return [cmd.CancelRun(run_id=run_id)]
        case "revert":
            return [cmd.RevertRun(run_id=run_id)]
        case "delete":
            return [cmd.DeleteRun(run_id=run_id, mode=m) for m in ("plain", "revert")]
    raise ValueError(f"no action {name!r}")


def fits(state: RunState, name: str) -> bool:
    """Would the workers accept the action now? The aggregate's check, on a copy."""
    raw = _state_codec.encode(state)
    for command in probe(name, state.run_id):
        try:
            Run(_state_decoder.decode(raw)).handle(command, 0.0)
            return True
        except Rejected:
            continue
    return False


def why_not(state: RunState, name: str) -> str:
    """The reason the aggregate would give for refusing the action ('' when it fits)."""
    try:
        Run(_state_decoder.decode(_state_codec.encode(state))).handle(probe(name, "")[0], 0.0)
    except Rejected as exc:
        return str(exc)
    return ""


def offered(state: RunState, caller: TokenRecord, project: str) -> list[Action]:
    """The actions the run's state fits and the caller's role allows."""
    return [a for a in ACTIONS if allows(caller, a.role, project) and fits(state, a.name)]


def may(caller: TokenRecord, role: Role, project: str) -> bool:
    return allows(caller, role, project)
