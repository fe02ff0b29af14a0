"""The deployment's shard count: fixed at first start, kept in Redis, checked by everyone.

A run's shard is derived from its id (``crc32(id) % shards``): a process configured with
another count publishes commands to streams no worker reads, and reads indexes no worker
writes. The first worker, runctl or client to start stores its count (SET NX); every
later one compares its own and refuses to go on with a different one.
"""

from __future__ import annotations

import redis.asyncio as aredis

from runstream.keys import Keys


class ShardCountMismatch(ValueError):
    """The configured RUNSTREAM_SHARDS differs from the deployment's."""


async def ensure_shard_count(redis: aredis.Redis, keys: Keys) -> int:
    """Store ``keys.shards`` as the deployment's count if none is stored yet; raise
    ShardCountMismatch if another one is."""
    stored = await _stored_or_set(redis, keys.config_shards(), keys.shards)
    if stored != str(keys.shards):
        raise ShardCountMismatch(
            f"RUNSTREAM_SHARDS={keys.shards}, but the deployment in this Redis (prefix "
            f"{keys.prefix!r}) has {stored} shards (key {keys.config_shards()}); a run's "
            f"shard comes from its id, so its commands would go where no worker reads them: "
            f"set RUNSTREAM_SHARDS={stored}"
        )
    return keys.shards


async def _stored_or_set(redis: aredis.Redis, key: str, value: int) -> str:
    """The count stored at ``key``, storing ``value`` first if there is none."""
    # Read first: a read-only command keeps working when Redis refuses writes (OOM).
    stored = await redis.get(key)
    if stored is None:
        if await redis.set(key, str(value), nx=True):
            return str(value)
        stored = await redis.get(key)
    return stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)


async def ensure_partition_count(redis: aredis.Redis, keys: Keys) -> int:
    """The same for the network's partition count (an element's partition comes from its
    namespace). A deployment that started before partitions were configurable has one:
    its first start with more refuses while the one-partition network holds data."""
    key = keys.config_partitions()
    if (
        keys.partitions != 1
        and await redis.get(key) is None
        and await redis.exists(Keys(keys.prefix, 1, 1).net_values(0))
    ):
        raise ShardCountMismatch(
            f"RUNSTREAM_NETWORK_PARTITIONS={keys.partitions}, but the network in this "
            f"Redis (prefix {keys.prefix!r}) is kept in one partition: set "
            f"RUNSTREAM_NETWORK_PARTITIONS=1"
        )
    stored = await _stored_or_set(redis, key, keys.partitions)
    if stored != str(keys.partitions):
        raise ShardCountMismatch(
            f"RUNSTREAM_NETWORK_PARTITIONS={keys.partitions} (0 means 1 on one Redis, 16 on "
            f"a cluster), but the deployment in this Redis (prefix {keys.prefix!r}) has "
            f"{stored} network partitions (key {key}); an element's partition comes from its "
            f"namespace, so writes would miss what is stored: set "
            f"RUNSTREAM_NETWORK_PARTITIONS={stored}"
        )
    return keys.partitions
