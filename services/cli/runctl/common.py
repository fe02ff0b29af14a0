"""What every runctl command shares: the consoles, common options, settings, the Redis
client with its errors mapped to exit statuses, and small formatting helpers."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console

from runctl import errors
from runctl.errors import CliError
from runctl.redis_errors import cli_error
from runstream.client import Client, NoWorker, ResultNotFound, RunNotFound, WaitTimeout
from runstream.contracts import commands as cmd
from runstream.ids import is_run_id
from runstream.settings import Settings, load_settings
from runstream.shards import ShardCountMismatch
from runstream.store.search import IndexOutdated

# Piped output is not cut to 80 columns: ids and states must stay whole for scripts.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Return once the command took effect.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds --wait waits.", min=0.1)]
ActorOpt = Annotated[str, typer.Option("--actor", envvar="RUNSTREAM_ACTOR", help="Who asks.")]
DEFAULT_ACTOR = "runctl"


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None


def _run(body: Callable[[Client], Awaitable[T]]) -> T:
    settings = _settings()

    async def main() -> T:
        async with Client.connect(settings=settings) as client:
            await client.check_shards()
            return await body(client)

    try:
        return asyncio.run(main())
    except CliError:
        raise
    except NoWorker as exc:  # before WaitTimeout, which it is
        raise CliError(str(exc), errors.NO_WORKER) from None
    except WaitTimeout as exc:  # before OSError: it is a TimeoutError, an OSError
        raise CliError(str(exc), errors.TIMEOUT) from None
    except cmd.BadCommand as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None
    except RunNotFound as exc:
        raise CliError(str(exc), errors.NOT_FOUND) from None
    except ResultNotFound as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None
    except ShardCountMismatch as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None
    except IndexOutdated as exc:
        raise CliError(str(exc), errors.REJECTED) from None
    except Exception as exc:
        mapped = cli_error(exc, settings.redis_url)
        if mapped is None:
            raise
        raise mapped from None


def _check_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise CliError(
            f"malformed run id {run_id!r}: expected 26 characters of Crockford base32",
            errors.BAD_INPUT,
        )
    return run_id


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(data), indent=2, sort_keys=True) + "\n")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _check_command(command: cmd.Command) -> None:
    """Refuse, before contacting Redis, what the service would refuse as malformed."""
    try:
        cmd.checked_bytes(command, _settings().max_command_bytes)
    except cmd.BadCommand as exc:
        raise CliError(str(exc), errors.BAD_INPUT) from None
