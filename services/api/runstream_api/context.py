"""What every handler reaches: the one Client (Redis connection pool, stores) and the
scenario registry, built once by the app's lifespan (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runstream.client import Client
from runstream.domain.scenarios import Registry
from runstream.settings import Settings
from runstream_api.token_cache import TokenCache


@dataclass
class ApiContext:
    client: Client
    registry: Registry
    settings: Settings
    # Who a token is (remembered a few seconds: token_cache).
    tokens: TokenCache


def provide_api(scope: Any) -> ApiContext:
    # From the raw scope, not a ``state: State`` parameter: Litestar copies the app's
    # State (a dict and an RLock) for each request that asks for one, a tenth of the
    # CPU of a POST /runs. ``scope`` is passed as it is (never validated).
    api: ApiContext = scope["litestar_app"].state.api
    return api
