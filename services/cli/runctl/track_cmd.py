"""runctl track: record a run executed elsewhere (Nextmv's tracked run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from runctl import errors
from runctl.common import (
    DEFAULT_ACTOR,
    ActorOpt,
    JsonOpt,
    _check_command,
    _print_json,
    _run,
    out,
)
from runctl.errors import CliError
from runstream.client import Client, Outcome
from runstream.contracts import commands as cmd
from runstream.ids import new_id

STATUSES = ("succeeded", "failed")


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {option} {path}: {exc}", errors.BAD_INPUT) from None


def _json_file(path: Path, option: str) -> str:
    text = _read(path, option)
    try:
        json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CliError(f"{option} {path} is not JSON: {exc}", errors.BAD_INPUT) from None
    return text


def track(
    scenario: Annotated[str, typer.Argument(help="The scenario (app) the run belongs to.")],
    status: Annotated[str, typer.Option(help="How it ended: succeeded or failed.")],
    input_file: Annotated[Path, typer.Option("--input", help="Its input, a JSON file.")],
    output_file: Annotated[Path, typer.Option("--output", help="Its output, a JSON file.")],
    duration_ms: Annotated[
        int | None, typer.Option("--duration-ms", help="How long it took.", min=0)
    ] = None,
    error: Annotated[str, typer.Option(help="What went wrong (only with --status failed).")] = "",
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="Its log, one line per line.")
    ] = None,
    name: Annotated[str, typer.Option(help="A name for the run.")] = "",
    description: Annotated[str, typer.Option(help="What the run was for.")] = "",
    as_json: JsonOpt = False,
    actor: ActorOpt = DEFAULT_ACTOR,
) -> None:
    """Record a run executed elsewhere: listed and shown like any other, with no effects."""
    if status not in STATUSES:
        raise CliError(f"bad --status {status!r}: succeeded or failed", errors.BAD_INPUT)
    if error and status != "failed":
        raise CliError("--error is only allowed with --status failed", errors.BAD_INPUT)
    command = cmd.TrackRun(
        run_id=new_id(),
        actor=actor,
        scenario=scenario,
        status="succeeded" if status == "succeeded" else "failed",
        input=_json_file(input_file, "--input"),
        output=_json_file(output_file, "--output"),
        duration_ms=duration_ms,
        error=error,
        log=_read(log_file, "--log-file").splitlines() if log_file else [],
        name=name,
        description=description,
    )
    _check_command(command)

    async def body(client: Client) -> Outcome:
        return await client.execute(command, wait=False)

    outcome = _run(body)
    if outcome.rejected:
        raise CliError(f"track rejected: {outcome.reason}", errors.REJECTED)
    if as_json:
        _print_json({"id": command.run_id, "state": status, "tracked": True})
        return
    out.print(f"{command.run_id} {status} (tracked)")


def register(app: typer.Typer) -> None:
    app.command()(track)
