"""The worker process: a faststream app consuming every shard's command stream.

Per shard, two subscribers in the ``workers`` consumer group: one reads new commands in
batches (XREADGROUP), one claims commands that another consumer read but never acked
(XAUTOCLAIM after ``claim_idle_ms``): faststream's plain subscriber never re-reads
pending entries, not even its own after a restart. Messages are acked by the event
store's append script, not by faststream (AckPolicy.MANUAL).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import redis.asyncio as aredis
import structlog
from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.message import RedisBatchStreamMessage

from runstream import logs
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.settings import Settings
from runstream_worker.executor import Executor
from runstream_worker.handlers import CommandProcessor

log = structlog.get_logger("runstream.worker")


async def _raw_parser(message: Any, original: Any = None) -> RedisBatchStreamMessage:
    """Keep entries as they came: runstream decodes (and dead-letters) them itself."""
    return RedisBatchStreamMessage(raw_message=message, body=b"", consumer=None, group=None)


async def _no_decoder(message: Any, original: Any = None) -> None:
    return None


def _entries(msg: Any) -> list[tuple[str, dict[bytes, bytes]]]:
    raw = msg.raw_message
    return [(i.decode(), d) for i, d in zip(raw["message_ids"], raw["data"], strict=True)]


def _shard_handlers(processor: CommandProcessor, shard: int) -> tuple[Any, Any]:
    # Closures, not default arguments: faststream injects every handler parameter.
    async def handle(msg: RedisStreamMessage) -> None:
        await processor.handle_batch(shard, _entries(msg))

    async def claim(msg: RedisStreamMessage) -> None:
        await processor.handle_claimed(shard, _entries(msg))

    return handle, claim


async def ensure_groups(client: aredis.Redis, keys: Keys) -> None:
    """Create each shard's group from the stream's start, so commands published before
    any worker existed are delivered (faststream would create it at '$')."""
    for shard in range(keys.shards):
        try:
            await client.xgroup_create(keys.commands(shard), keys.group, id="0", mkstream=True)
            log.info("group_created", stream=keys.commands(shard))
        except aredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def build_app(settings: Settings) -> FastStream:
    logs.configure(settings.log_format)
    keys = Keys(settings.prefix, settings.shards)
    worker = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
    registry = load_registry(settings.scenario_modules)
    client = aredis.Redis.from_url(settings.redis_url)
    executor = Executor(client, settings, registry, worker)
    processor = CommandProcessor(client, settings, registry, executor.wake)
    import logging

    broker = RedisBroker(settings.redis_url, log_level=logging.DEBUG)

    for shard in range(settings.shards):
        stream = keys.commands(shard)

        handle, claim = _shard_handlers(processor, shard)

        broker.subscriber(
            stream=StreamSub(
                stream,
                group=keys.group,
                consumer=worker,
                batch=True,
                max_records=settings.commands_per_read,
                polling_interval=1000,
            ),
            parser=_raw_parser,
            decoder=_no_decoder,
            ack_policy=AckPolicy.MANUAL,
        )(handle)
        broker.subscriber(
            stream=StreamSub(
                stream,
                group=keys.group,
                consumer=worker,
                batch=True,
                min_idle_time=settings.claim_idle_ms,
                polling_interval=max(100, settings.claim_idle_ms // 2),
            ),
            parser=_raw_parser,
            decoder=_no_decoder,
            ack_policy=AckPolicy.MANUAL,
        )(claim)

    app = FastStream(broker)

    @app.on_startup
    async def _setup() -> None:
        await ensure_groups(client, keys)
        log.info("worker_starting", worker=worker, shards=settings.shards,
                 scenarios=[s.name for s in registry])

    @app.after_startup
    async def _start_executor() -> None:
        executor.start()

    @app.on_shutdown
    async def _stop_executor() -> None:
        await executor.stop(settings.shutdown_grace_s)

    @app.after_shutdown
    async def _close() -> None:
        await client.aclose()
        log.info("worker_stopped", worker=worker)

    return app
