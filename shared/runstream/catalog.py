"""The scenarios the workers run, as they publish them in Redis.

Each worker publishes every scenario it loaded (name, version, description and the JSON
schema of its parameters) in one hash, ``<prefix>:scenarios``, at start and at each
upkeep. ``runctl scenarios`` and ``start`` read it: what a run may be started from is
what the workers can run, not what the caller happens to have installed.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import redis.asyncio as aredis

from runstream.domain.scenarios import Registry
from runstream.keys import Keys


class PublishedScenario(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    description: str
    parameters: dict[str, Any]  # JSON schema
    worker: str = ""  # the worker that published it last
    published_at: float = 0.0


_decoder = msgspec.json.Decoder(PublishedScenario)


async def publish(redis: aredis.Redis, keys: Keys, registry: Registry, worker: str) -> None:
    now = time.time()
    entries = {
        s.name: msgspec.json.encode(
            PublishedScenario(
                name=s.name,
                version=s.version,
                description=s.description,
                parameters=msgspec.json.schema(s.params),
                worker=worker,
                published_at=now,
            )
        )
        for s in registry
    }
    if entries:
        await redis.hset(keys.scenarios, mapping=entries)  # type: ignore[arg-type]


async def read(redis: aredis.Redis, keys: Keys) -> list[PublishedScenario]:
    """Every published scenario, by name; empty if no worker has published yet."""
    raw = await redis.hgetall(keys.scenarios)
    return sorted((_decoder.decode(v) for v in raw.values()), key=lambda s: s.name)
