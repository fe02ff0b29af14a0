"""Prometheus gauges of the deployment as Redis holds it, read when scraped: per shard, the
commands waiting (pending: read by a worker, not yet acked; lag: not yet read by any) and
the dead letters; runs by state (the query index); whether Redis answered.

Every process that serves /metrics (the API, each worker) refreshes them just before it
renders: they are the same from all of them (aggregate with ``max by (shard)``).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from prometheus_client import Gauge, disable_created_metrics

from runstream.domain.run import STATES
from runstream.keys import Keys
from runstream.redis_trouble import REDIS_TROUBLE

# Every process serving /metrics imports this module: no "*_created" series beside each
# counter (Prometheus derives resets itself; they only double what is scraped).
disable_created_metrics()  # type: ignore[no-untyped-call]

COMMANDS_PENDING = Gauge(
    "runstream_commands_pending",
    "Commands a worker read but has not acknowledged yet (handling, or of a dead worker)",
    ["shard"],
)
COMMANDS_LAG = Gauge(
    "runstream_commands_lag",
    "Commands in a shard's stream that no worker has read yet",
    ["shard"],
)
DEAD_LETTERS = Gauge(
    "runstream_dead_letters",
    "Messages parked in a shard's dead-letter stream (runctl dlq list)",
    ["shard"],
)
RUNS = Gauge("runstream_runs", "Runs by state (deleted runs are not counted)", ["state"])
REDIS_UP = Gauge("runstream_redis_up", "1 if Redis answered the last scrape, else 0")


async def refresh(redis: aredis.Redis, keys: Keys) -> None:
    """Read every gauge's value in one pipelined round trip and set it. Redis not answering
    sets REDIS_UP to 0 and leaves the rest as they were (never raises RedisError)."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for shard in range(keys.shards):
                pipe.xinfo_groups(keys.commands(shard))
                pipe.xlen(keys.dlq(shard))
                for state in STATES:
                    pipe.scard(keys.query_value_set(shard, "state", state))
            replies = await pipe.execute(raise_on_error=False)
    except REDIS_TROUBLE:
        REDIS_UP.set(0)
        return
    REDIS_UP.set(1)
    per_shard = 2 + len(STATES)
    runs = dict.fromkeys(STATES, 0)
    for shard in range(keys.shards):
        groups, dlq_len, *counts = replies[shard * per_shard : (shard + 1) * per_shard]
        pending, lag = _group_figures(groups, keys.group)
        COMMANDS_PENDING.labels(str(shard)).set(pending)
        COMMANDS_LAG.labels(str(shard)).set(lag)
        DEAD_LETTERS.labels(str(shard)).set(dlq_len if isinstance(dlq_len, int) else 0)
        for state, count in zip(STATES, counts, strict=True):
            runs[state] += count if isinstance(count, int) else 0
    for state, count in runs.items():
        RUNS.labels(state).set(count)


def _group_figures(groups: Any, group: str) -> tuple[int, int]:
    """Pending and lag of the workers' group from an XINFO GROUPS reply; 0 and 0 when the
    stream or the group does not exist yet (no worker ever started: an error reply)."""
    if not isinstance(groups, list):
        return 0, 0
    for info in groups:
        name = info["name"]
        if (name.decode() if isinstance(name, bytes) else name) == group:
            # lag is nil when Redis can't tell (entries deleted past the last read): unknown,
            # shown as 0 rather than a guess.
            return int(info["pending"]), int(info.get("lag") or 0)
    return 0, 0
