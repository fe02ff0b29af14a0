"""The API's composition root: settings, one Client, the registry, the Litestar app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import msgspec
import structlog
from litestar import Litestar, get
from litestar.di import Provide

from runstream.client import Client
from runstream.domain.scenarios import load_registry
from runstream.settings import Settings, load_settings
from runstream.tokens import TokenStore
from runstream_api.auth import provide_caller
from runstream_api.context import ApiContext, provide_api
from runstream_api.docs import assets_router, asyncapi_document, openapi_config
from runstream_api.errors import EXCEPTION_HANDLERS
from runstream_api.events_routes import all_events, run_events
from runstream_api.limits import check_query_length
from runstream_api.metrics import service_routes
from runstream_api.mistral.routes import mistral_router
from runstream_api.openapi_errors import openapi_errors
from runstream_api.ops_routes import (
    BulkController,
    DeadLettersController,
    network_stats,
    tombstones,
    track_run,
)
from runstream_api.outputs_routes import OutputsController
from runstream_api.rate_limit import SharedRateLimit
from runstream_api.runs_routes import CommandsController, RunsController
from runstream_api.scenarios_routes import ScenariosController
from runstream_api.times import iso_responses, openapi_times
from runstream_api.token_cache import TokenCache
from runstream_api.ui import routes as ui

# A request body larger than this is refused (413) before it is read whole.
MAX_BODY_BYTES = 256 * 1024


def _version() -> str:
    try:
        return version("runstream")
    except PackageNotFoundError:
        return "0"


class Health(msgspec.Struct):
    status: str
    redis: bool
    # Whether token revocations reach this process at once (else: within TOKEN_CACHE_S).
    token_revocations: bool = False


@get("/health", summary="Is the API up, and does it reach Redis?", tags=["service"])
async def health(api: ApiContext) -> Health:
    await api.client.redis.ping()
    return Health(status="ok", redis=True, token_revocations=api.tokens.subscribed)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    registry = load_registry(settings.scenario_modules)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with Client.connect(settings=settings) as client:
            tokens = TokenCache(TokenStore(client.redis, client.keys))
            # Revocations reach this process at once (the cache's time bounds it otherwise).
            follow = asyncio.create_task(
                tokens.follow(client.redis, client.keys.api_tokens_changed)
            )
            app.state.api = ApiContext(client, registry, settings, tokens)
            structlog.get_logger("runstream_api").info("api_started")
            try:
                yield
            finally:
                follow.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follow

    app = Litestar(
        route_handlers=[
            health,
            *service_routes,
            ScenariosController,
            RunsController,
            CommandsController,
            all_events,
            run_events,
            OutputsController,
            BulkController,
            track_run,
            network_stats,
            tombstones,
            DeadLettersController,
            assets_router(),
            asyncapi_document,
            mistral_router(),
            ui.router(),
        ],
        dependencies={
            "api": Provide(provide_api, sync_to_thread=False),
            "caller": Provide(provide_caller),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi_config(_version()),
        template_config=ui.template_config(),
        request_max_body_size=MAX_BODY_BYTES,
        lifespan=[lifespan],
        after_request=iso_responses,
        before_request=check_query_length,
        # Shared by every replica through Redis (0: no limit).
        middleware=[SharedRateLimit(settings.api_rate_limit)] if settings.api_rate_limit else [],
    )
    # Generated once, here: the wire's times and error bodies in it too.
    openapi_times(openapi_errors(app.openapi_schema))
    return app
