"""A worker renews the leases of the runs it drives at common ticks, in one pipelined round
trip per tick: holding many runs costs a round trip per tick, not one per run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runstream.connect import open_redis
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.settings import Settings
from runstream_worker.lease import Leases

EmbeddedFactory = Callable[..., EmbeddedRedis]

HELD = 50


async def _reads(redis: object) -> int:
    stats = await redis.info("stats")  # type: ignore[attr-defined]
    return int(stats["total_reads_processed"])


def test_many_held_leases_are_renewed_together(embedded_redis: EmbeddedFactory) -> None:
    async def body() -> None:
        server = embedded_redis()  # its own server: its read counts are this test's
        s = Settings(redis_url=server.url, prefix="lr", shards=2)
        keys = Keys(s.prefix, s.shards)
        redis = open_redis(s)
        try:
            # Renewed every second: room for a loaded machine (the leases were taken one by one).
            leases = Leases(redis, keys, "me", ttl_ms=3000)
            runs = [new_id() for _ in range(HELD)]
            for run_id in runs:
                assert await leases.acquire(run_id)
            assert await leases.renew(runs[0])  # Redis has the script from now on
            before = await _reads(redis)
            # Each holds for 3.5 s: three or four renewals each, past the time to live.
            held = await asyncio.gather(
                *(leases.hold_while(r, asyncio.sleep(3.5, result=r)) for r in runs)
            )
            reads = await _reads(redis) - before
            assert held == runs  # no lease lost: every renewal went through
            for run_id in runs:
                assert await redis.get(keys.lease(run_id)) == b"me"
                shard = keys.shard_of(run_id)
                assert await redis.zscore(keys.leases(shard), run_id)  # its end, for scans
            # One round trip per tick (3 or 4), where a renewal per lease would be HELD
            # round trips per tick.
            assert reads <= 15, reads
        finally:
            await redis.aclose()

    asyncio.run(body())
