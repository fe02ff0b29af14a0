"""runctl logs: a run's log lines (what its scenario wrote with ``ctx.log``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from runctl.common import JsonOpt, _check_id, _print_json, _run, out
from runctl.timeparse import iso, parse_time
from runstream.client import Client
from runstream.store.outputs import LogLine


def _as_dict(line: LogLine) -> dict[str, str]:
    return {"at": iso(line.at), "line": line.line}


def logs(
    run_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines until the run ends.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Only lines logged since: ISO 8601 time, or an age (10m, 2h)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A run's log lines, oldest first (with --json --follow: one JSON object per line)."""
    run_id = _check_id(run_id)
    since_ts = parse_time(since, "--since") if since is not None else None
    if follow:

        async def follow_body(client: Client) -> None:
            dropped, _ = await client.logs(run_id, count=1)
            if dropped and not as_json:
                out.print(_dropped_line(dropped), markup=False)
            async for line in client.follow_logs(run_id, since=since_ts):
                if as_json:
                    sys.stdout.write(json.dumps(_as_dict(line)) + "\n")
                    sys.stdout.flush()
                else:
                    out.print(f"{iso(line.at)}  {line.line}", markup=False)

        _run(follow_body)
        return
    dropped, lines = _run(lambda c: c.logs(run_id, since=since_ts))
    if as_json:
        _print_json({"id": run_id, "dropped": dropped, "lines": [_as_dict(x) for x in lines]})
        return
    if dropped:
        out.print(_dropped_line(dropped), markup=False)
    for line in lines:
        out.print(f"{iso(line.at)}  {line.line}", markup=False)


def _dropped_line(dropped: int) -> str:
    return f"[{dropped} earlier lines dropped]"


def register(app: typer.Typer) -> None:
    app.command()(logs)
