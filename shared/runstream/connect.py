"""The one place that turns settings into Redis clients and the faststream broker.

A REDIS_URL names one server or a Redis Cluster (``redis+cluster://``, see
runstream.redis_url). Workers, runctl, the client and the API all connect here, so the
rest of the code runs unchanged on either: every key of one call shares a hash tag
(runstream.keys), which a cluster needs and a single server ignores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.cluster
from redis.exceptions import ConnectionError as RedisConnectionError

from runstream.redis_packing import use_hiredis_packing
from runstream.redis_url import RedisTarget, redis_target
from runstream.settings import Settings

if TYPE_CHECKING:
    from faststream.redis import RedisBroker


def target_of(settings: Settings) -> RedisTarget:
    return redis_target(settings.connection_url())


def is_cluster(settings: Settings) -> bool:
    return target_of(settings).cluster


class ClosedForGood(acluster.RedisCluster):
    """A RedisCluster that stays closed once ``aclose()``d.

    redis-py's re-reads the topology on the next command after ``aclose()`` and opens new
    connections, which no one closes: a task that outlived the client's owner (a worker's
    lease release after its shutdown, say) leaked their sockets. Such a command now fails
    like one against a Redis that is gone (ConnectionError, a RedisError)."""

    _closed = False

    async def aclose(self) -> None:
        self._closed = True
        await super().aclose()

    async def initialize(self, *args: Any, **kwargs: Any) -> acluster.RedisCluster:
        if self._closed:
            raise RedisConnectionError("this Redis Cluster client was closed")
        return await super().initialize(*args, **kwargs)


def open_redis(
    settings: Settings, *, hiredis_packing: bool = False, **options: Any
) -> aredis.Redis:
    """An asyncio client: a ``RedisCluster`` for a cluster URL, else a ``Redis``.

    A RedisCluster has the same command methods (redis-py's command mixins), pipelines
    (per slot) and scripts (loaded on every primary), so it is handed out typed as a
    Redis: the stores keep one code path. ``hiredis_packing`` applies to single servers
    only (RedisCluster builds its own connections)."""
    target = target_of(settings)
    if target.cluster:
        nodes = [acluster.ClusterNode(host, port) for host, port in target.nodes]
        client = ClosedForGood.from_url(target.url, startup_nodes=nodes, **options)
        return cast(aredis.Redis, client)
    single = aredis.Redis.from_url(target.url, **options)
    return use_hiredis_packing(single) if hiredis_packing else single


def open_blocking_redis(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client (for scenario steps' threads and tools), cluster-aware likewise."""
    target = target_of(settings)
    if target.cluster:
        nodes = [
            redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in target.nodes
        ]
        client = redis.cluster.RedisCluster.from_url(target.url, startup_nodes=nodes, **options)
        return cast(redis.Redis, client)
    return redis.Redis.from_url(target.url, **options)


def make_broker(settings: Settings, **options: Any) -> RedisBroker:
    """faststream's broker: its cluster broker for a cluster URL."""
    # Imported here: runctl and the client connect through this module without faststream.
    from faststream.redis import RedisBroker, RedisClusterBroker

    target = target_of(settings)
    if target.cluster:
        return RedisClusterBroker(target.url, startup_nodes=target.nodes, **options)
    return RedisBroker(target.url, **options)
