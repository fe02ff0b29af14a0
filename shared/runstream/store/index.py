"""The run index (the read model ``list``/``show`` use), rebuilt from the runs' events;
with each run's log and result files (``runstream.store.outputs``).

Every append writes its run's summary in the same script, so the index is always current;
this rebuilds it from scratch (after a bug, a manual edit, a restore) with the same result.
"""

from __future__ import annotations

import msgspec
import redis.asyncio as aredis

from runstream import lua
from runstream.domain.run import summarize
from runstream.keys import Keys
from runstream.store import outputs, replies
from runstream.store.events import EventStore


async def rebuild(redis: aredis.Redis, keys: Keys, store: EventStore) -> int:
    """Drop each shard's index and runnable set and rebuild them from the events."""
    put = redis.register_script(lua.source("index_put_if_newer"))
    encode = msgspec.json.Encoder().encode
    rebuilt = 0
    for shard in range(keys.shards):
        run_ids = [
            keys.run_id_of_meta(replies.text(key))
            async for key in redis.scan_iter(match=keys.metas(shard), count=500)
        ]
        await redis.delete(keys.index(shard), keys.runnable(shard))
        for run_id in run_ids:
            state = (await store.load(run_id)).state
            if state.state in ("new", "deleted"):
                continue
            await put(
                keys=[keys.index(shard), keys.runnable(shard)],
                args=[
                    run_id,
                    encode(summarize(state)),
                    state.version,
                    "1" if state.needs_executor else "0",
                    state.runnable_score,
                ],
            )
            history = [event for _, event in await store.history(run_id)]
            await outputs.rebuild(redis, keys, run_id, history, store.settings.max_log_lines)
            rebuilt += 1
    return rebuilt
