"""runctl queue: the runs waiting for a slot, in the order they will start."""

from __future__ import annotations

import typer
from rich.table import Table

from runctl.common import JsonOpt, _print_json, _run, out
from runctl.timeparse import iso


def queue(as_json: JsonOpt = False) -> None:
    """Runs waiting for a slot, in the order they will start: priority 1 first, then oldest."""
    waiting = _run(lambda c: c.queue())
    if as_json:
        _print_json(waiting)
        return
    if not waiting:
        out.print("no runs waiting")
        return
    table = Table("#", "id", "priority", "scenario", "waiting since", "name")
    table.columns[1].no_wrap = True
    for position, r in enumerate(waiting, 1):
        table.add_row(str(position), r.id, str(r.priority), r.scenario, iso(r.created_at), r.name)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(queue)
