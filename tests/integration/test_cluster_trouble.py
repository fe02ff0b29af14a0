"""A worker rides out a Redis Cluster that is gone for a while: started before the cluster
answers, or running when every master dies, it waits and carries on once it is back.

redis-py's cluster client raises RedisClusterUnreachableError (a RedisClusterException,
not a RedisError) when no node answers its topology refresh; caught as RedisError only,
it ended the worker's start-up (the process exited) and its scan loop (runs interrupted
then were never taken up again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis

from runstream.client import Client
from runstream.connect import open_redis
from runstream.local_cluster import LocalCluster
from runstream.settings import Settings

from .support import fast, logs_of, until, worker_pool

ARGS: dict[str, object] = {"items": 60, "delay_ms": 20}
OUTAGE_S = 3.0


def _restart_all(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        cluster.restart(node.port)
    cluster.wait_ok(60)


@pytest.mark.timeout(240)
def test_a_worker_waits_out_a_cluster_that_is_gone_and_carries_on(
    tmp_path: Path, settings: Settings
) -> None:
    # AOF on: the masters come back with their data (no replicas to fail over to).
    with LocalCluster(
        tmp_path / "cluster", replicas=0, appendonly=True, node_timeout_ms=1000
    ) as cluster:
        s = fast(
            msgspec.structs.replace(settings, redis_url=cluster.url, shards=2),
            lease_ms=2000,
            claim_idle_ms=1000,
        )
        with worker_pool(s, tmp_path) as pool:
            # 1. Started while no node answers: it waits (it used to exit at once).
            cluster.kill()
            worker = pool.start("w1")
            deadline = time.monotonic() + 60
            while worker.log().count("waiting_for_redis") < 3 and worker.alive():
                assert time.monotonic() < deadline, logs_of(pool)
                time.sleep(0.1)
            assert worker.alive(), f"the worker exited while the cluster was down:\n{logs_of(pool)}"
            _restart_all(cluster)
            worker.wait_ready()

            # 2. Running when every master dies: the run under way then is taken up again.
            run_id = asyncio.run(_start_under_way(s))
            cluster.kill()
            time.sleep(OUTAGE_S)
            _restart_all(cluster)
            asyncio.run(_finishes(s, run_id, pool_logs=lambda: logs_of(pool)))
            assert worker.alive(), f"the worker died in the outage:\n{logs_of(pool)}"
            # (faststream logs its own fetch errors with their tracebacks: not ours to judge)
            for crash in ("drive_crashed", "command_crashed", "upkeep_crashed", "never retrieved"):
                assert crash not in worker.log(), logs_of(pool)


async def _start_under_way(s: Settings) -> str:
    async with Client.connect(settings=s) as client:
        run_id = await client.start("synthetic", dict(ARGS), timeout=30)

        async def under_way() -> bool:
            return (await client.get(run_id)).items_processed > 5

        await until(under_way, "the run to be under way", timeout=30)
        return run_id


async def _finishes(s: Settings, run_id: str, pool_logs: Callable[[], str]) -> None:
    async with Client.connect(settings=s) as client:

        async def settled() -> bool:
            return (await client.get(run_id)).state in ("succeeded", "failed")

        try:
            await until(settled, "the interrupted run to finish", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{pool_logs()}") from None
        summary = await client.get(run_id)
        assert summary.state == "succeeded", summary
        assert summary.items_processed == ARGS["items"]


@pytest.mark.timeout(120)
def test_a_closed_cluster_client_stays_closed(tmp_path: Path) -> None:
    """redis-py's RedisCluster reconnects on a command after aclose() (it re-reads the
    topology), opening sockets no one closes: a task outliving the client's owner leaked
    them (the unclosed socket pytest reported at the end of the cluster run). A command
    on a closed client now fails like one on a Redis that is gone."""
    with LocalCluster(tmp_path / "cluster", replicas=0) as cluster:
        asyncio.run(_use_after_close(cluster.url))


async def _use_after_close(url: str) -> None:
    client = open_redis(Settings(redis_url=url))
    await client.set("closed-test", "1")
    await client.aclose()
    with pytest.raises(redis.ConnectionError, match="client was closed"):
        await client.get("closed-test")
    with pytest.raises(redis.ConnectionError, match="client was closed"):
        async with client.pipeline(transaction=False) as pipe:
            pipe.get("closed-test")
            await pipe.execute()
