"""A rolling restart of every worker under load (SIGTERM one at a time, its replacement
started) loses and doubles nothing: each run's history covers its items exactly once and
its network is exactly what those items wrote. Runs on one Redis, and on the cluster with
``--redis=cluster``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from runstream.client import Client
from runstream.settings import Settings

from .support import fast, until, worker_pool
from .test_cluster_failover import ITEMS, _consistent

WORKERS = 2
RUNS = 6


@pytest.mark.timeout(240)
def test_a_rolling_restart_under_load_loses_and_doubles_nothing(
    tmp_path: Path, settings: Settings
) -> None:
    s = fast(settings, shards=4)
    # About 6 s a run: the restarts fall in the middle of them.
    args: dict[str, object] = {"items": ITEMS, "delay_ms": 40, "edges_per_item": 2}
    with worker_pool(s, tmp_path) as pool:
        for i in range(WORKERS):
            pool.start(f"a{i}").wait_ready()

        async def load() -> list[str]:
            async with Client.connect(settings=s) as client:
                run_ids = [await client.start("synthetic", dict(args)) for _ in range(RUNS)]

                async def under_way() -> bool:
                    done = [(await client.get(r)).items_processed for r in run_ids]
                    return min(done) > 0

                await until(under_way, "every run to be under way", timeout=30)
                return run_ids

        run_ids = asyncio.run(load())

        async def unfinished() -> int:
            async with Client.connect(settings=s) as client:
                states = [(await client.get(r)).state for r in run_ids]
                return len([state for state in states if state != "succeeded"])

        for i in range(WORKERS):
            old = pool.procs[i]
            if i == WORKERS - 1:
                # Checked as the last old worker is told to stop (not after its replacement
                # is up, which a loaded machine can delay past the runs' end): else the
                # restarts came too late to prove anything.
                assert asyncio.run(unfinished()) > 0
            old.terminate()
            deadline = time.monotonic() + s.shutdown_grace_s + 10
            while old.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not old.alive(), f"{old.name} did not stop within its grace"
            assert old.returncode == 0, old.log_tail()
            pool.start(f"b{i}").wait_ready()

        async def check() -> None:
            async with Client.connect(settings=s) as client:

                async def finished() -> bool:
                    states = [(await client.get(r)).state for r in run_ids]
                    return set(states) == {"succeeded"}

                await until(finished, "every run to succeed", timeout=150)
                for run_id in run_ids:
                    assert await _consistent(client, run_id) == ITEMS

        asyncio.run(check())
