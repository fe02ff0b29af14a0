"""Bulk operations: one command for every run a query matches (``stop --where ...``).

The matches are taken once, up front (paged, oldest first); the commands share one
``bulk_id``, which each run's history records. A line per run says done or rejected and
why, then a summary. Exit status: 0 all done, 1 some rejected, 5 some not answered in time.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import Progress

from runctl import errors
from runctl.common import _check_command, _run, err, out
from runctl.errors import CliError
from runctl.runs import build_query, print_json
from runstream import bulk
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.domain.run import RunSummary
from runstream.ids import new_id

WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        help="Apply to every run matching FIELD=OP:VALUE (repeatable; as list --filter).",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


async def _matches(client: Client, where: list[str]) -> list[RunSummary]:
    return await bulk.matches(client, build_query(where, None).filters)


def run_bulk(
    what: str,
    where: list[str],
    make: Callable[[str, str], cmd.Command],
    *,
    dry_run: bool,
    yes: bool,
    wait: bool,
    timeout: float,
    as_json: bool = False,
) -> None:
    """``make(run_id, bulk_id)`` builds the command for one run."""
    if not where:
        raise CliError("--where needs at least one FIELD=OP:VALUE", errors.BAD_INPUT)
    build_query(where, None)  # a bad filter exits 2 before anything else
    bulk_id = new_id()
    _check_command(make(new_id(), bulk_id))  # the options are valid for any run
    matches: list[RunSummary] = _run(lambda c: _matches(c, where))
    if dry_run or not matches:
        _preview(what, matches, as_json)
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CliError(
                f"{what} would apply to {len(matches)} runs: confirm with --yes "
                "(no terminal to ask on)",
                errors.BAD_INPUT,
            )
        if not typer.confirm(f"{what} {len(matches)} runs?", default=False, err=True):
            err.print("nothing sent", markup=False)
            return

    async def body(client: Client) -> list[bulk.Done]:
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task(f"{what} ({bulk_id})", total=len(matches))

            def seen(done: bulk.Done) -> None:
                progress.advance(task)
                if not as_json:
                    line = done.outcome + (f": {done.detail}" if done.detail else "")
                    progress.console.print(f"{what} {done.run_id}: {line}", markup=False)

            return await bulk.apply(
                client,
                (r.id for r in matches),
                lambda run_id: make(run_id, bulk_id),
                wait=wait,
                timeout=timeout,
                on_done=seen,
            )

    results = _run(body)
    counts = bulk.counts(results)
    if as_json:
        print_json(
            {
                "bulk_id": bulk_id,
                "counts": counts,
                "runs": [dataclasses.asdict(r) for r in results],
            }
        )
    else:
        out.print(
            f"{what} ({bulk_id}): {len(results)} runs, {counts['done']} done, "
            f"{counts['rejected']} rejected, {counts['timeout']} timed out",
            markup=False,
        )
    if counts["rejected"]:
        raise typer.Exit(errors.REJECTED)
    if counts["timeout"]:
        raise typer.Exit(errors.TIMEOUT)


def _preview(what: str, matches: list[RunSummary], as_json: bool) -> None:
    first = matches[: bulk.SHOWN_IN_DRY_RUN]
    if as_json:
        view: dict[str, Any] = {
            "dry_run": True,
            "count": len(matches),
            "first": [{"id": r.id, "scenario": r.scenario, "state": r.state} for r in first],
        }
        print_json(view)
        return
    out.print(f"{what} would apply to {len(matches)} runs (dry run: nothing sent)", markup=False)
    for r in first:
        out.print(f"  {r.id}  {r.scenario:<14} {r.state:<10} {r.name}", markup=False)
    if len(matches) > len(first):
        out.print(f"  ... and {len(matches) - len(first)} more", markup=False)
