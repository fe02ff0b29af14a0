"""The shard count is the deployment's: stored in Redis by whoever starts first; a worker,
runctl or client configured with another count refuses with a clear error instead of
publishing commands where no worker reads them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest
import redis

from runstream.client import Client
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.shards import ShardCountMismatch

from .support import fast, logs_of, runctl, worker_pool

BAD_INPUT = 2


def test_the_first_start_stores_the_count_and_a_client_with_another_is_refused(
    settings: Settings, redis_client: redis.Redis
) -> None:
    key = Keys.of(settings).config_shards()
    other = msgspec.structs.replace(settings, shards=settings.shards * 4)

    async def body() -> None:
        async with Client.connect(settings=settings) as client:
            assert await client.list_runs() == []
        assert redis_client.get(key) == str(settings.shards).encode()
        async with Client.connect(settings=other) as client:
            for call in (lambda: client.start("synthetic", {}), client.list_runs):
                with pytest.raises(ShardCountMismatch, match=f"RUNSTREAM_SHARDS={settings.shards}"):
                    await call()
            assert await client.redis.exists(*(client.keys.commands(s) for s in range(8))) == 0

    asyncio.run(body())
    assert redis_client.get(key) == str(settings.shards).encode()


def test_worker_and_runctl_refuse_another_shard_count(tmp_path: Path, settings: Settings) -> None:
    s = fast(settings)
    wrong = msgspec.structs.replace(s, shards=s.shards * 4)
    with worker_pool(s, tmp_path) as pool:
        pool.start("w-right").wait_ready()
        started = runctl(s, "start", "synthetic", "--arg", "items=2", "--wait", "--json")
        assert started.code == 0, f"{started}\n{logs_of(pool)}"
        run_id = json.loads(started.stdout)["id"]

        # runctl with another count: one line, bad input, nothing published.
        for argv in (["start", "synthetic", "--arg", "items=2"], ["stop", run_id], ["list"]):
            result = runctl(wrong, *argv)
            assert result.code == BAD_INPUT, result
            (line,) = result.stderr.strip().splitlines()
            assert f"RUNSTREAM_SHARDS={s.shards}" in line, line
        assert len(json.loads(runctl(s, "list", "--json").stdout)) == 1

        # A worker with another count exits with a clear log line, reading nothing.
        with worker_pool(wrong, tmp_path) as wrong_pool:
            worker = wrong_pool.start("w-wrong")
            assert worker.proc.wait(30) == BAD_INPUT
            lines = [json.loads(line) for line in worker.log().splitlines()]
        assert [line["event"] for line in lines] == ["shard_count_mismatch"], lines
        assert f"RUNSTREAM_SHARDS={s.shards}" in str(lines[0]["error"])
