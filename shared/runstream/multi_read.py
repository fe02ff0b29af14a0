"""XREAD of several streams that may live in different hash slots.

One server takes them in one blocking XREAD. A cluster refuses a command whose keys span
slots (CROSSSLOT), and a blocking read cannot be abandoned for another without dropping
its connection; so on a cluster each stream is read without blocking (concurrently, each
on its own node) and the reads repeat every ``POLL_S`` until one has entries or the block
time has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster

POLL_S = 0.05

StreamKey = bytes | str | memoryview
StreamPos = int | bytes | str | memoryview


def is_cluster_client(redis: aredis.Redis) -> bool:
    return isinstance(redis, RedisCluster)


async def xread(
    redis: aredis.Redis,
    streams: Mapping[StreamKey, StreamPos],
    *,
    count: int | None = None,
    block: int | None = None,
) -> Any:
    """``redis.xread(streams, count, block)``, also on a cluster when the streams' slots
    differ; the reply as redis-py gives it (RESP2: a list of ``[name, entries]``)."""
    if len(streams) < 2 or not is_cluster_client(redis):
        return await redis.xread(dict(streams), count=count, block=block)
    deadline = time.monotonic() + (block or 0) / 1000
    while True:
        parts = await asyncio.gather(
            *(redis.xread({name: pos}, count=count) for name, pos in streams.items())
        )
        found = [stream for part in parts if part for stream in part]
        if found or block is None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
