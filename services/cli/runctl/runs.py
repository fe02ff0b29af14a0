"""runctl list and show: finding runs and seeing what one did."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from runctl import errors
from runctl.common import _run, err, out
from runctl.errors import CliError
from runstream import query
from runstream.client import Client
from runstream.contracts import events as ev
from runstream.domain.run import STATES, RunSummary
from runstream.ids import is_run_id
from runstream.store.events import Tombstone
from runstream.store.search import MarkerNotFound

TIME_FIELDS = ("created_at", "updated_at", "started_at", "ended_at")

FilterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        "-f",
        help="FIELD=OP:VALUE (repeatable), OP one of " + ", ".join(query.OPERATORS) + "; "
        "fields: " + query.RUNS.field_names() + ". Times ISO 8601 with a zone.",
    ),
]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", help="Only runs with this label KEY=VALUE.")
]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(data), indent=2, sort_keys=True) + "\n")


def check_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise CliError(
            f"malformed run id {run_id!r}: expected 26 characters of Crockford base32",
            errors.BAD_INPUT,
        )
    return run_id


def run_view(summary: RunSummary) -> dict[str, Any]:
    """A run as --json prints it: the summary with its times in ISO 8601 (UTC)."""
    data: dict[str, Any] = msgspec.to_builtins(summary)
    for name in TIME_FIELDS:
        data[name] = query.iso(data[name])
    return data


def tomb_view(t: Tombstone) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(t)
    data["deleted_at"] = query.iso(t.deleted_at)
    return data


def filters_from(
    filters: list[str] | None,
    labels: list[str] | None,
    state: str | None = None,
    scenario: str | None = None,
) -> list[str]:
    texts = list(filters or [])
    if state is not None:
        if state not in STATES:
            raise CliError(
                f"unknown state {state!r}; one of: {', '.join(STATES)}", errors.BAD_INPUT
            )
        texts.append(f"state=eq:{state}")
    if scenario is not None:
        texts.append(f"scenario=eq:{scenario}")
    return texts


def build_query(
    filters: list[str],
    labels: list[str] | None,
    sort: list[str] | None = None,
    limit: int = 50,
    marker: str | None = None,
    schema: query.Schema = query.RUNS,
) -> query.Query:
    if marker is not None:
        check_id(marker)
    try:
        return query.build(filters, labels, sort, limit, marker, schema)
    except query.BadQuery as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None


def _items(r: RunSummary) -> str:
    total = f"/{r.items_total}" if r.items_total is not None else ""
    return f"{r.items_processed}{total}"


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_runs(
        filter_: FilterOpt = None,
        label: LabelOpt = None,
        state: Annotated[
            str | None, typer.Option(help=f"Only runs in this state: {', '.join(STATES)}.")
        ] = None,
        scenario: Annotated[str | None, typer.Option(help="Only runs of this scenario.")] = None,
        sort: Annotated[
            list[str] | None,
            typer.Option(
                "--sort",
                help="KEY[:asc|desc], repeatable or comma-separated (default created_at:asc); "
                "keys: " + query.RUNS.sort_names() + ". The run id breaks ties. "
                "An argument sorts numbers first, then texts.",
            ),
        ] = None,
        limit: Annotated[int, typer.Option(help="Runs per page (1..1000).")] = 50,
        marker: Annotated[
            str | None, typer.Option(help="Start after this run id (the last of a page).")
        ] = None,
        count: Annotated[bool, typer.Option("--count", help="Print how many match.")] = False,
        deleted: Annotated[
            bool,
            typer.Option(
                "--deleted",
                help="List the tombstones of deleted runs instead (oldest first); --filter and "
                "--sort on " + query.TOMBSTONES.field_names() + ".",
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    ) -> None:
        """Runs matching the filters, a page at a time (the next: --marker LAST_ID)."""
        if deleted:
            if state is not None or label:
                raise CliError(
                    "--deleted lists tombstones, which have no state or labels: filter them "
                    "with --filter on " + query.TOMBSTONES.field_names(),
                    errors.BAD_INPUT,
                )
            texts = filters_from(filter_, None, None, scenario)
            q = build_query(texts, None, sort, limit, marker, query.TOMBSTONES)
            _list_deleted(q, count, as_json)
            return
        texts = filters_from(filter_, label, state, scenario)
        q = build_query(texts, label, sort, limit, marker)
        if count:
            n = _run(lambda c: c.count(q))
            if as_json:
                print_json({"count": n})
            else:
                out.print(str(n))
            return

        async def page(client: Client) -> list[RunSummary]:
            try:
                return await client.search(q)
            except MarkerNotFound as exc:
                raise CliError(str(exc), errors.NOT_FOUND) from None

        runs = _run(page)
        if as_json:
            print_json([run_view(r) for r in runs])
        else:
            table = Table("id", "scenario", "state", "items", "effects", "created", "name")
            table.columns[0].no_wrap = True
            for r in runs:
                table.add_row(
                    r.id,
                    r.scenario,
                    r.state + (" (tracked)" if r.tracked else ""),
                    _items(r),
                    str(r.effects["applied"]),
                    query.iso(r.created_at) or "-",
                    r.name,
                )
            out.print(table)
        if len(runs) == q.limit:
            err.print(f"more may follow: --marker {runs[-1].id}", markup=False)

    @app.command()
    def show(
        run_id: str,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    ) -> None:
        """Everything about one run: metadata, arguments, times, effects, command history."""
        check_id(run_id)

        async def body(client: Client) -> tuple[RunSummary, list[dict[str, Any]]]:
            summary = await client.get(run_id)
            events = await client.history(run_id)
            return summary, command_history(events)

        summary, commands = _run(body)
        if as_json:
            print_json({**run_view(summary), "commands": commands})
            return
        for key, value in show_lines(summary):
            out.print(f"{key:>15}  {value}", markup=False)
        out.print(f"{'commands':>15}", markup=False)
        for c in commands:
            what = c["command"] + (" REJECTED" if c["rejected"] else "")
            extra = f": {c['reason']}" if c["reason"] else ""
            bulk = f" [bulk {c['bulk_id']}]" if c["bulk_id"] else ""
            out.print(f"{'':>15}  {c['at']}  {what} by {c['actor']}{extra}{bulk}", markup=False)


def _list_deleted(q: query.Query, count: bool, as_json: bool) -> None:
    if count:
        n = _run(lambda c: c.count_deleted(q))
        if as_json:
            print_json({"count": n})
        else:
            out.print(str(n))
        return

    async def page(client: Client) -> list[Tombstone]:
        try:
            return await client.search_deleted(q)
        except MarkerNotFound as exc:
            raise CliError(str(exc), errors.NOT_FOUND) from None

    tombs = _run(page)
    if as_json:
        print_json([tomb_view(t) for t in tombs])
    else:
        table = Table("id", "scenario", "deleted", "by", "effects left", "irreversible")
        table.columns[0].no_wrap = True
        for t in tombs:
            table.add_row(
                t.run_id,
                t.scenario,
                query.iso(t.deleted_at) or "-",
                t.actor,
                str(t.effects_left),
                str(t.irreversible),
            )
        out.print(table)
    if len(tombs) == q.limit:
        err.print(f"more may follow: --marker {tombs[-1].run_id}", markup=False)


def show_lines(s: RunSummary) -> list[tuple[str, str]]:
    e = s.effects
    total = f" of {s.items_total}" if s.items_total is not None else ""
    lines = [
        ("id", s.id),
        ("name", s.name or "-"),
        ("description", s.description or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or "-"),
        ("scenario", f"{s.scenario} (version {s.scenario_version})"),
        ("state", s.state + (f" ({s.reason})" if s.reason else "")),
        ("started by", s.actor or "-"),
        ("arguments", json.dumps(s.args, sort_keys=True)),
        ("created", query.iso(s.created_at) or "-"),
        ("started", query.iso(s.started_at) or "-"),
        ("ended", query.iso(s.ended_at) or "-"),
        ("updated", query.iso(s.updated_at) or "-"),
        ("duration", f"{s.duration_ms} ms" if s.duration_ms is not None else "-"),
        ("items", f"{s.items_processed}{total}"),
        (
            "effects",
            f"{e['applied']} applied, {e['irreversible']} irreversible, "
            f"{e['compensated']} compensated, {e['skipped']} conflicts (skipped)",
        ),
        ("left", _effects_left(s)),
        ("pinned", "yes" if s.pinned else "no"),
        ("priority", str(s.priority)),
        ("input", f"{s.input_bytes} bytes"),
        ("output", f"{s.output_bytes} bytes"),
    ]
    if s.source_run_id:
        lines.append(("re-run of", s.source_run_id))
    if s.tracked:
        took = f" (took {s.tracked_duration_ms} ms)" if s.tracked_duration_ms is not None else ""
        lines.append(("tracked", "yes: executed elsewhere, recorded with track" + took))
    if s.error:
        where = f" (at item {s.error_at_item})" if s.error_at_item is not None else ""
        lines.append(("error", s.error + where))
    return lines


def _effects_left(summary: RunSummary) -> str:
    """What of the run is still on the network, and what can be done about it."""
    left = summary.effects_left
    if left == 0:
        return "0 effects on the network"
    if summary.state == "reverted":
        return (
            f"{left} effects its revert skipped as conflicts "
            "(revert again to retry them, --force to overwrite)"
        )
    return f"{left} effects on the network"


def command_history(events: list[tuple[str, ev.Event]]) -> list[dict[str, Any]]:
    """The commands applied to (or rejected by) a run, oldest first, from its events."""
    out: list[dict[str, Any]] = []
    for _, e in events:
        if not e.command_id:
            continue
        reason = ""
        match e:
            case ev.RunQueued():
                command, actor = "start", e.actor
            case ev.RunStopped():
                command, actor, reason = "stop", e.actor, e.reason
            case ev.RunContinued():
                command, actor = "continue", e.actor
            case ev.RunCancelled():
                command, actor, reason = "cancel", e.actor, e.reason
            case ev.RevertStarted():
                command = "delete --revert" if e.then_delete else "revert"
                command += " --force" if e.force else ""
                actor = e.actor
            case ev.RunTracked():
                command, actor = "track", e.actor
            case ev.RunPinned():
                command, actor = ("pin" if e.pinned else "unpin"), e.actor
            case ev.RunDeleted():
                command, actor = "delete", e.actor
            case ev.CommandRejected():
                command, actor, reason = e.command_type, e.actor, e.reason
            case _:
                continue
        out.append(
            {
                "at": query.iso(e.at),
                "command": command,
                "actor": actor,
                "reason": reason,
                "rejected": isinstance(e, ev.CommandRejected),
                "command_id": e.command_id,
                "bulk_id": e.bulk_id,
            }
        )
    return out
