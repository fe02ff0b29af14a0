"""``runstream-api``: serve the HTTP API with uvicorn (settings from the environment, as
every runstream process: REDIS_URL, RUNSTREAM_*)."""

from __future__ import annotations

from typing import Annotated

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
    # uvloop and httptools, named: uvicorn's "auto" would fall back to the slower asyncio
    # loop and h11 without a word when they are missing. No access log: a line per request.
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def main() -> None:
    typer.run(serve)


if __name__ == "__main__":
    main()
