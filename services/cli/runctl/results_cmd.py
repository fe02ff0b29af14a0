"""runctl results: a run's result files (what its scenario put with ``ctx.results.put``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from runctl import errors
from runctl.common import JsonOpt, _check_id, _print_json, _run, out
from runctl.errors import CliError
from runctl.timeparse import iso


def results(
    run_id: str,
    name: Annotated[str | None, typer.Argument(help="One result file to fetch.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE ('-': stdout).")
    ] = None,
    archive: Annotated[
        bool, typer.Option("--archive", help="All result files as one tar.gz (needs -o).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List a run's result files (name, size, media type), fetch one, or all as a tar.gz."""
    run_id = _check_id(run_id)
    if archive and name is not None:
        raise CliError("give a result NAME or --archive, not both", errors.BAD_INPUT)
    if archive and output is None:
        raise CliError("--archive needs -o FILE.tar.gz (or -o - for stdout)", errors.BAD_INPUT)
    if archive:
        _write(_run(lambda c: c.results_archive(run_id)), output)
        return
    if name is not None:
        _write(_run(lambda c: c.result(run_id, name)), output)
        return
    if output is not None:
        raise CliError("-o needs a result NAME or --archive", errors.BAD_INPUT)
    files = _run(lambda c: c.results(run_id))
    if as_json:
        _print_json(files)
        return
    if not files:
        out.print(f"run {run_id} has no result files")
        return
    table = Table("name", "size", "media type", "stored")
    for f in files:
        table.add_row(f.name, str(f.size), f.media_type, iso(f.at))
    out.print(table)


def _write(content: bytes, target: Path | None) -> None:
    if target is None or str(target) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    try:
        target.write_bytes(content)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc}", errors.BAD_INPUT) from None
    out.print(f"{target}: {len(content)} bytes")


def register(app: typer.Typer) -> None:
    app.command()(results)
