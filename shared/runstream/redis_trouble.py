"""What Redis trouble raises: the errors a worker's loops ride out and retry later.

redis-py's cluster client raises some that are not ``RedisError``: RedisClusterException
and its subclasses (SlotNotCoveredError while a slot has no master during a failover,
RedisClusterUnreachableError when no start-up node answers, "no node" lookups). Caught
only as RedisError, they ended a worker's scan loop or the worker itself.
"""

from __future__ import annotations

from redis.exceptions import RedisClusterException, RedisError

REDIS_TROUBLE: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)


def is_redis_trouble(exc: BaseException) -> bool:
    return isinstance(exc, REDIS_TROUBLE)
