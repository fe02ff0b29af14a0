"""XREAD of several streams that may live in different hash slots.

One server takes them in one blocking XREAD. A cluster refuses a command whose keys span
slots (CROSSSLOT), and a blocking read cannot be abandoned for another without dropping
its connection; so on a cluster each stream is read without blocking (concurrently, each
on its own node) and the reads repeat every ``POLL_S`` until one has entries or the block
time has passed.

On a cluster a read is sent straight to the node that holds the stream's slot. redis-py
would otherwise ask a fixed node for XREAD's keys first (COMMAND GETKEYS: one more round
trip per read), and after that node's failover keeps asking the dead node until something
else refreshes the topology. A read that meets a failover (connection lost, slot moved,
cluster down) returns no entries after a short pause; the failed read has asked redis-py
to refresh the topology, and callers read again until their own deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

POLL_S = 0.05
FAILOVER_PAUSE_S = 0.2
FAILOVER_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    MovedError,
    AskError,
    # Not RedisErrors: a slot without a node in redis-py's map, no node reachable.
    RedisClusterException,
)

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
    if not is_cluster_client(redis):
        return await redis.xread(dict(streams), count=count, block=block)
    assert isinstance(redis, RedisCluster)
    if len(streams) == 1:
        [(name, pos)] = streams.items()
        return await _read_on_its_node(redis, name, pos, count=count, block=block)
    deadline = time.monotonic() + (block or 0) / 1000
    while True:
        parts = await asyncio.gather(
            *(_read_on_its_node(redis, name, pos, count=count) for name, pos in streams.items())
        )
        found = [stream for part in parts if part for stream in part]
        if found or block is None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


async def _read_on_its_node(
    redis: RedisCluster,
    name: StreamKey,
    pos: StreamPos,
    *,
    count: int | None,
    block: int | None = None,
) -> Any:
    """XREAD of one stream on the node that holds its slot; no entries after a pause when
    the read meets a failover (see the module's docstring)."""
    key = name if isinstance(name, str | bytes) else bytes(name)
    args: list[Any] = []
    if block is not None:
        args += ["BLOCK", block]
    if count is not None:
        args += ["COUNT", count]
    args += ["STREAMS", key, pos if not isinstance(pos, memoryview) else bytes(pos)]
    try:
        node = redis.get_node_from_key(key if isinstance(key, str) else key.decode())
        return await redis.execute_command("XREAD", *args, target_nodes=node)
    except FAILOVER_ERRORS:
        await asyncio.sleep(FAILOVER_PAUSE_S)
        return []
