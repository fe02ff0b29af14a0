"""A master of the Redis Cluster dies under load and its replica takes over.

Replication is asynchronous, so what the dead master acknowledged last may be gone (see
the README's Durability). What must hold: the workers carry on by themselves; every run
started *after* the failover finishes with each item applied exactly once; and every run
that survived is consistent with its history (the network holds exactly what its
confirmed chunks wrote).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import msgspec
import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from tests.e2e.chaos_checks import namespace_of, synthetic_network

from runstream import multi_read
from runstream.client import Client
from runstream.connect import open_redis
from runstream.local_cluster import LocalCluster
from runstream.settings import Settings

from .support import assert_contiguous, chunk_ranges, fast, history, until, worker_pool

ITEMS = 150
# Spread over 3 namespaces: on the cluster's 16 network partitions, chunks span several
# (two-phase commits across masters while one of them dies).
ARGS: dict[str, object] = {"items": ITEMS, "delay_ms": 3, "edges_per_item": 2, "spread": 3}


def _master_of(cluster: LocalCluster, key: str) -> int:
    """The port of the master serving ``key``'s slot."""
    port = cluster.master_ports()[0]
    with redis.Redis(port=port, socket_timeout=2) as probe:
        slot = int(probe.cluster("KEYSLOT", key))
        for start, end, master, *_ in probe.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    raise AssertionError(f"no master serves slot {slot}")


async def _start(client: Client, args: dict[str, object]) -> str:
    return await client.start("synthetic", dict(args), timeout=30)


async def _consistent(client: Client, run_id: str) -> int:
    """The run's history covers its items once each, in order, and its network is exactly
    what those items wrote; returns its items."""
    summary = await client.get(run_id)
    items = summary.items_processed
    events = await history(client.redis, client.keys, run_id)
    assert_contiguous(chunk_ranges(events), items)
    expected, _ = synthetic_network(run_id, summary.args, items)
    values = await client.network.elements()
    actual = {e: v for e, v in values.items() if namespace_of(e) == run_id}
    assert actual == expected, f"{run_id}: network differs from its {items} items"
    return items


@pytest.mark.timeout(240)
def test_a_master_failover_loses_and_doubles_nothing_acknowledged_after_it(
    tmp_path: Path, settings: Settings
) -> None:
    with LocalCluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000) as cluster:
        s = fast(
            msgspec.structs.replace(settings, redis_url=cluster.url, shards=4),
            lease_ms=3000,
            claim_idle_ms=2000,
        )
        with worker_pool(s, tmp_path) as pool:
            for name in ("w1", "w2"):
                pool.start(name).wait_ready()
            asyncio.run(_drive(cluster, s))
            assert all(w.alive() for w in pool.procs), "a worker died in the failover"


async def _drive(cluster: LocalCluster, s: Settings) -> None:
    async with Client.connect(settings=s) as client:
        before = [await _start(client, ARGS) for _ in range(4)]
        await until(lambda: _any_progress(client, before), "the runs to be under way", timeout=30)
        # The master of the first run's network partition: its chunks' effects go through it.
        victim = _master_of(
            cluster, client.keys.net_values(client.keys.partition_of(f"n:{before[0]}:0:0"))
        )
        cluster.kill(victim)
        await asyncio.to_thread(cluster.wait_ok, 30)
        assert victim not in cluster.master_ports()

        after = [await _start(client, ARGS) for _ in range(4)]
        everyone = before + after
        await until(
            lambda: _all_settled(client, everyone),
            "every run to finish after the failover",
            timeout=150,
        )
        for run_id in after:
            summary = await client.get(run_id)
            assert summary.state == "succeeded", (run_id, summary.state)
            assert await _consistent(client, run_id) == ITEMS
        for run_id in before:
            if await client.find(run_id) is None:
                continue  # its start was among the writes the failover lost
            await _consistent(client, run_id)


async def _any_progress(client: Client, run_ids: list[str]) -> bool:
    for run_id in run_ids:
        if (await client.get(run_id)).items_processed > 10:
            return True
    return False


async def _all_settled(client: Client, run_ids: list[str]) -> bool:
    for run_id in run_ids:
        try:
            summary = await client.find(run_id)
        except (redis.RedisError, OSError):
            return False  # the cluster is still settling: ask again
        if summary is not None and summary.state not in ("succeeded", "failed"):
            return False
    return True


@pytest.mark.timeout(120)
def test_a_stream_read_goes_on_after_the_clients_first_node_fails(tmp_path: Path) -> None:
    """redis-py asks its default node for XREAD's keys; when that master dies, reads must
    reach the stream's new master rather than fail against the dead node for ever (what
    made a client's wait fail in a CI run)."""
    with LocalCluster(tmp_path / "cluster", replicas=1, node_timeout_ms=1000) as cluster:
        asyncio.run(_read_across_failover(cluster))


async def _read_across_failover(cluster: LocalCluster) -> None:
    s = Settings(redis_url=cluster.url)
    r = cast(RedisCluster, open_redis(s))
    try:
        await r.initialize()
        victim = r.get_default_node().port
        assert victim in cluster.master_ports()
        # A stream on another master, so only the client's own view of the cluster is hit.
        stream = next(f"s{i}" for i in range(1000) if _master_of(cluster, f"s{i}") != victim)
        await r.xadd(stream, {"n": 1})
        cluster.kill(victim)
        await asyncio.to_thread(cluster.wait_ok, 30)
        deadline = asyncio.get_running_loop().time() + 20
        reply: object = []
        while not reply and asyncio.get_running_loop().time() < deadline:
            reply = await multi_read.xread(
                cast(aredis.Redis, r), {stream: "0"}, count=10, block=200
            )
        assert reply, "no entry read from a live master within 20 s of the failover"
    finally:
        await r.aclose()
