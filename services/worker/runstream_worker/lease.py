"""A run's execution lease: at most one executor drives a run; a dead one's lease expires."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aredis

from runstream import lua
from runstream.keys import Keys


class Leases:
    def __init__(self, redis: aredis.Redis, keys: Keys, owner: str, ttl_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.owner = owner
        self.ttl_ms = ttl_ms
        self._release = redis.register_script(lua.source("lease_release"))
        self._renew = redis.register_script(lua.source("lease_renew"))

    async def acquire(self, run_id: str) -> bool:
        key = self.keys.lease(run_id)
        return bool(await self.redis.set(key, self.owner, nx=True, px=self.ttl_ms))

    async def release(self, run_id: str) -> None:
        await self._release(keys=[self.keys.lease(run_id)], args=[self.owner])

    async def renew(self, run_id: str) -> bool:
        return bool(
            await self._renew(keys=[self.keys.lease(run_id)], args=[self.owner, self.ttl_ms])
        )

    @contextlib.asynccontextmanager
    async def kept(self, run_id: str) -> AsyncIterator[None]:
        """Renew the lease in the background while a long step runs."""

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.ttl_ms / 3000)
                await self.renew(run_id)

        task = asyncio.create_task(keep())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
