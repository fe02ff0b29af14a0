"""``runstream-api``: serve the HTTP API with uvicorn (settings from the environment, as
every runstream process: REDIS_URL, RUNSTREAM_*)."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Annotated, Literal

import structlog
import typer
import uvicorn

from runstream import logs
from runstream.redis_url import secrets_of
from runstream.settings import load_settings
from runstream_api.app import create_app

DEFAULT_PORT = 8080


def serve(
    host: Annotated[str, typer.Option(envvar="RUNSTREAM_API_HOST", help="Address to bind.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="RUNSTREAM_API_PORT", help="Port to bind.")] = (
        DEFAULT_PORT
    ),
) -> None:
    """Serve the runstream HTTP API (OpenAPI at /schema)."""
    try:
        settings = load_settings()
    except ValueError as exc:
        typer.echo(f"runstream-api: {exc}", err=True)
        raise typer.Exit(2) from None
    logs.configure(settings.log_format, secrets=secrets_of(settings.redis_url))
    app = create_app(settings)
    loop, http = fast_server()
    # No access log: a line per request.
    uvicorn.run(
        app, host=host, port=port, loop=loop, http=http, log_level="warning", access_log=False
    )


def fast_server() -> tuple[Literal["uvloop", "asyncio"], Literal["httptools", "h11"]]:
    """uvloop and httptools (dependencies: a third less CPU per request). uvicorn's "auto"
    would fall back to asyncio's loop and h11 without a word when one is missing (an
    environment installed before they were dependencies): this says so in the log."""
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    http: Literal["httptools", "h11"] = "httptools"
    if find_spec("uvloop") is None:
        loop = "asyncio"
    if find_spec("httptools") is None:
        http = "h11"
    if (loop, http) != ("uvloop", "httptools"):
        structlog.get_logger("runstream_api").warning(
            "slow_server", loop=loop, http=http, fix="pip install uvloop httptools"
        )
    return loop, http


def main() -> None:
    typer.run(serve)


if __name__ == "__main__":
    main()
