"""Client.start tells the outcome: accepted (the id), rejected (StartRejected), or no
worker answered (WaitTimeout, in bounded time)."""

from __future__ import annotations

import asyncio
import time

import pytest

from runstream.client import Client, StartRejected, WaitTimeout
from runstream.settings import Settings

from .support import fast, worker_running


def test_start_returns_once_accepted_and_raises_the_reason_when_rejected(
    settings: Settings,
) -> None:
    async def body() -> None:
        s = fast(settings)
        async with worker_running(s), Client.connect(settings=s) as client:
            run_id = await client.start("synthetic", {"items": 2})
            assert await client.find(run_id) is not None  # accepted: the run exists

            began = time.monotonic()
            with pytest.raises(StartRejected, match="unknown scenario 'nosuch'") as rejected:
                await client.start("nosuch", {})
            with pytest.raises(StartRejected, match="bad arguments for scenario"):
                await client.start("synthetic", {"items": "many"})
            assert time.monotonic() - began < 10
            assert await client.find(rejected.value.run_id) is None

    asyncio.run(body())


def test_start_without_a_worker_times_out_in_bounded_time(settings: Settings) -> None:
    async def body() -> None:
        async with Client.connect(settings=fast(settings)) as client:
            began = time.monotonic()
            with pytest.raises(WaitTimeout, match="no worker is running"):
                await client.start("synthetic", {"items": 1}, timeout=0.5)
            assert time.monotonic() - began < 5
            run_id = await client.start_nowait("synthetic", {"items": 1})
            assert await client.find(run_id) is None  # published, not yet handled

    asyncio.run(body())
