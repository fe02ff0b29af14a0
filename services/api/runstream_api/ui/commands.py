"""Sending a command from the UI: the API's own path (role check, size check, the command
remembered for ``/commands/{id}``, then published), waiting only until a worker accepted
or rejected it; the page follows the rest live."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runstream.contracts import commands as cmd
from runstream.domain.run import RunState
from runstream.ids import new_id
from runstream.tokens import TokenRecord
from runstream_api import dispatch
from runstream_api.auth import project_of, require, require_run
from runstream_api.context import ApiContext
from runstream_api.errors import ApiError
from runstream_api.outcomes import CommandStatus
from runstream_api.runs_routes import ROLE_FOR, existing
from runstream_api.ui import present

# How long an action waits for a worker to take the command before the page says so.
ACCEPT_TIMEOUT_S = 10.0
BULK_PARALLEL = 16


async def send(api: ApiContext, caller: TokenRecord, command: cmd.Command) -> CommandStatus:
    """``command`` (its actor the caller's subject) published once the caller's role for
    the run's project allows it; where it stands after at most ACCEPT_TIMEOUT_S."""
    needed = ROLE_FOR[type(command)]
    if isinstance(command, cmd.StartRun):
        require(caller, needed, project_of(api, command.scenario))
    else:
        require_run(api, caller, needed, await existing(api.client, command.run_id))
    data = cmd.checked_bytes(command, api.settings.max_command_bytes)
    print_ = dispatch.fingerprint("UI", cmd.command_type(command), data)
    return await dispatch.publish(
        api.client, None, print_, command, until="accepted", timeout=ACCEPT_TIMEOUT_S
    )


def command_for(
    action: str,
    run_id: str,
    caller: TokenRecord,
    *,
    reason: str = "",
    force: bool = False,
    mode: cmd.DeleteMode = "revert",
    bulk_id: str = "",
) -> cmd.Command:
    base = cmd.ContinueRun(
        run_id=run_id, command_id="ui-" + new_id(), actor=caller.subject, bulk_id=bulk_id
    )
    match action:
        case "stop":
            return cmd.StopRun(**_fields(base), reason=reason)
        case "continue":
            return base
        case "cancel":
            return cmd.CancelRun(**_fields(base), reason=reason)
        case "revert":
            return cmd.RevertRun(**_fields(base), force=force)
        case "delete":
            return cmd.DeleteRun(**_fields(base), mode=mode)
    raise ValueError(f"unknown action {action!r}")


def _fields(command: cmd.Command) -> dict[str, Any]:
    return {f: getattr(command, f) for f in command.__struct_fields__}


@dataclass(frozen=True)
class Preview:
    """A bulk action before it is sent: which selected runs it fits, and why not the rest."""

    action: str
    fit: list[str]
    refused: list[tuple[str, str]]  # run id, the reason it would be rejected


async def preview(api: ApiContext, action: str, run_ids: Iterable[str]) -> Preview:
    fit: list[str] = []
    refused: list[tuple[str, str]] = []
    ids = list(run_ids)
    for run_id, run in zip(ids, await api.client.store.load_many(ids), strict=True):
        state = run.state if run.exists else None
        if state is None:
            refused.append((run_id, "no such run (deleted?)"))
        elif present.fits(state, action):
            fit.append(run_id)
        else:
            refused.append((run_id, present.why_not(state, action)))
    return Preview(action, fit, refused)


async def load_state(api: ApiContext, run_id: str) -> RunState | None:
    run = await api.client.store.load(run_id)
    return run.state if run.exists else None


async def send_all(
    api: ApiContext, caller: TokenRecord, commands: list[cmd.Command]
) -> list[CommandStatus]:
    gate = asyncio.Semaphore(BULK_PARALLEL)

    async def one(command: cmd.Command) -> CommandStatus:
        async with gate:
            try:
                return await send(api, caller, command)
            except ApiError as exc:  # not allowed, or gone since: that run only
                return CommandStatus(
                    run_id=command.run_id,
                    command_id=command.command_id,
                    command=cmd.command_type(command),
                    status="rejected",
                    reason=exc.problem.message,
                )

    return list(await asyncio.gather(*(one(c) for c in commands)))
