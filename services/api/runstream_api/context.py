"""What every handler reaches: the one Client (Redis connection pool, stores) and the
scenario registry, built once by the app's lifespan (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

from litestar.datastructures import State

from runstream.client import Client
from runstream.domain.scenarios import Registry
from runstream.settings import Settings
from runstream.tokens import TokenStore


@dataclass
class ApiContext:
    client: Client
    registry: Registry
    settings: Settings
    tokens: TokenStore


def provide_api(state: State) -> ApiContext:
    api: ApiContext = state.api
    return api
