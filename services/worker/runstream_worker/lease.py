"""A run's execution lease: at most one executor drives a run; a dead one's lease expires.

The holder renews its lease while it works (``hold_while``). A renewal that fails means
another worker may already drive the run (this process was paused, or Redis was slow):
the work is cancelled at once and ``LostLease`` raised, so the run's slot is freed and
nothing more is written for the run. Waiting for the cancelled work is bounded: on
Python 3.11, redis-py can swallow a cancellation that lands mid-command, and an awaited
task that never ends would wedge the run (and the worker's shutdown) for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

import redis.asyncio as aredis

from runstream import lua
from runstream.keys import Keys

T = TypeVar("T")
Renewal = Literal["renewed", "refused", "unknown"]

# How long a cancelled piece of work may take to end before it is left behind.
CANCEL_WAIT_S = 1.0


class LostLease(Exception):
    """The run's lease is no longer ours: whoever holds it now drives the run."""


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
        shard = self.keys.shard_of(run_id)
        keys = [self.keys.lease(run_id), self.keys.leases(shard), self.keys.runnable(shard)]
        await self._release(keys=keys, args=[self.owner, run_id])

    async def renew(self, run_id: str) -> bool:
        keys = [self.keys.lease(run_id), self.keys.leases(self.keys.shard_of(run_id))]
        return bool(await self._renew(keys=keys, args=[self.owner, self.ttl_ms, run_id]))

    async def hold_while(
        self,
        run_id: str,
        work: Coroutine[Any, Any, T],
        released: asyncio.Event | None = None,
    ) -> T:
        """Run ``work`` (just after acquiring or renewing the lease) while renewing the
        lease every third of its time to live; its result, or its exception.

        A renewal refused, or not confirmed before the lease would have expired, cancels
        ``work`` and raises LostLease. A renewal that failed on Redis is tried again at
        the next period while the lease is still ours for certain. ``released`` is set
        when the hold ends, for work that outlives its cancellation to see."""
        task = asyncio.ensure_future(work)
        ttl = self.ttl_ms / 1000
        expires = time.monotonic() + ttl
        try:
            while True:
                await asyncio.wait({task}, timeout=ttl / 3)
                if task.done():
                    return task.result()
                asked = time.monotonic()
                answer = await self._renewal(run_id, timeout=expires - asked)
                if answer == "renewed":
                    expires = asked + ttl
                elif answer == "refused" or time.monotonic() >= expires:
                    raise LostLease(run_id)
        finally:
            if released is not None:
                released.set()
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
            # Left behind if it did not end: its appends fail the lease check (unless this
            # worker holds the lease again), and it stops at its next step (``released``).
            task.add_done_callback(_retrieve)

    async def _renewal(self, run_id: str, timeout: float) -> Renewal:
        """One renewal, waited for at most ``timeout`` (left to finish alone if slower)."""
        renewal = asyncio.ensure_future(self.renew(run_id))
        renewal.add_done_callback(_retrieve)
        await asyncio.wait({renewal}, timeout=max(0.0, timeout))
        if not renewal.done() or renewal.cancelled() or renewal.exception() is not None:
            return "unknown"
        return "renewed" if renewal.result() else "refused"


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a finished task's error as seen: one left behind must not warn at exit."""
    if not task.cancelled():
        task.exception()
