"""What every handler reaches: the one Client (Redis connection pool, stores) and the
scenario registry, built once by the app's lifespan (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State

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


def provide_api(state: State) -> ApiContext:
    api: ApiContext = state.api
    return api
