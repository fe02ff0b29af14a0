"""The run index (the read models ``list``/``show``/queries use), rebuilt from the runs'
events; with each run's log and result files (``runstream.store.outputs``).

Every append writes its run's summary and query postings in the same script, so the
index is always current; this rebuilds it from scratch (after a bug, a manual edit, a
restore, a new queryable field) with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aredis

from runstream import lua
from runstream.contracts import events as ev
from runstream.domain.run import RunState, apply
from runstream.keys import Fields, Keys
from runstream.store import outputs, replies
from runstream.store.events import EventStore, encoded_summary

BATCH = 500  # runs loaded, and written back, per pipelined round trip


@dataclass(frozen=True, slots=True)
class Rebuilt:
    runs: int
    events: int  # the events the rebuilt runs' states fold (snapshots included)


async def _drop(redis: aredis.Redis, keys: Keys, shard: int) -> None:
    doomed = [keys.index(shard), keys.runnable(shard)]
    doomed += [
        replies.text(key)
        async for key in redis.scan_iter(match=keys.query_index_pattern(shard), count=1000)
    ]
    for i in range(0, len(doomed), 1000):
        await redis.unlink(*doomed[i : i + 1000])


async def rebuild(redis: aredis.Redis, keys: Keys, store: EventStore) -> Rebuilt:
    """Drop each shard's read models and rebuild them from the runs' events."""
    put = redis.register_script(lua.source("index_put_batch"))
    await redis.script_load(put.script)
    runs = events = 0
    for shard in range(keys.shards):
        run_ids = [
            keys.run_id_of_meta(replies.text(key))
            async for key in redis.scan_iter(match=keys.metas(shard), count=1000)
        ]
        await _drop(redis, keys, shard)
        for i in range(0, len(run_ids), BATCH):
            batch = run_ids[i : i + BATCH]
            # Each run's whole history, read once: it folds into the run's state and
            # gives its log and result files.
            async with redis.pipeline(transaction=False) as pipe:
                for run_id in batch:
                    pipe.xrange(keys.events(run_id))
                histories = await pipe.execute()
            with_outputs: list[tuple[str, list[ev.Event]]] = []
            entries: list[str | bytes | int | float] = []
            no_outputs: list[str] = []
            for run_id, stream in zip(batch, histories, strict=True):
                history = [ev.decode_event(f[Fields.EVENT]) for _, f in replies.entries(stream)]
                state = RunState(run_id=run_id)
                for event in history:
                    apply(state, event)
                if state.state in ("new", "deleted"):
                    continue
                summary, postings = encoded_summary(state)
                entries += (
                    run_id,
                    summary,
                    state.version,
                    "1" if state.needs_executor else "0",
                    state.runnable_score,
                    postings,
                )
                if outputs.outputs_in(history):
                    with_outputs.append((run_id, history))
                else:  # nothing to keep: what outputs.rebuild would leave
                    no_outputs.append(run_id)
                runs += 1
                events += state.version
            async with redis.pipeline(transaction=False) as pipe:
                if entries:
                    lua.queue_evalsha(
                        pipe,
                        put.sha,
                        [keys.index(shard), keys.runnable(shard), keys.query_index(shard)],
                        [len(entries) // 6, *entries],
                    )
                if no_outputs:
                    # The shard's run keys share its hash tag: one command for the batch
                    # (raw: a cluster pipeline's unlink() refuses several keys, the command
                    # is routed by them).
                    pipe.execute_command(
                        "UNLINK",
                        *(
                            key
                            for run_id in no_outputs
                            for key in (
                                keys.logs(run_id),
                                keys.results(run_id),
                                keys.result_meta(run_id),
                            )
                        ),
                    )
                    for run_id in no_outputs:
                        pipe.hdel(keys.meta(run_id), "log_dropped")
                await pipe.execute()
            for run_id, history in with_outputs:
                await outputs.rebuild(redis, keys, run_id, history, store.settings.max_log_lines)
    return Rebuilt(runs, events)
