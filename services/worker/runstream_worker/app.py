"""The worker process: a faststream RedisBroker consuming every shard's command stream.

Per shard, two subscribers in the ``workers`` consumer group: one reads new commands in
batches (XREADGROUP), one claims commands that another consumer read but never acked
(XAUTOCLAIM after ``claim_idle_ms``): faststream's plain subscriber never re-reads
pending entries, not even its own after a restart. Messages are acked by the event
store's append script, not by faststream (AckPolicy.MANUAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from typing import Any

import redis
import redis.asyncio as aredis
import structlog
from faststream.middlewares import AckPolicy
from faststream.redis import StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.message import RedisBatchStreamMessage
from redis.exceptions import ResponseError

from runstream import catalog, logs, shard_metrics
from runstream.connect import make_broker, open_blocking_redis, open_redis
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.processes import READY_MARK
from runstream.redis_trouble import REDIS_TROUBLE
from runstream.redis_url import secrets_of
from runstream.settings import Settings
from runstream.shards import ShardCountMismatch, ensure_partition_count, ensure_shard_count
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore
from runstream_worker import metrics
from runstream_worker.executor import Executor
from runstream_worker.handlers import CommandProcessor
from runstream_worker.status_server import StatusServer
from runstream_worker.upkeep import heartbeat, upkeep

log = structlog.get_logger("runstream.worker")


async def _raw_parser(message: Any, original: Any = None) -> RedisBatchStreamMessage:
    """Keep entries as they came: runstream decodes (and dead-letters) them itself."""
    # consumer=None: the message can't ack itself (the event store acks). faststream
    # handles None (its ack() checks for it) but its annotation says ConsumerProtocol.
    return RedisBatchStreamMessage(
        raw_message=message,
        body=b"",
        consumer=None,  # type: ignore[arg-type]
        group=None,
    )


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
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class Worker:
    """One worker process: the broker's subscribers, the executor, and their upkeep."""

    def __init__(self, settings: Settings) -> None:
        logs.configure(settings.log_format, secrets=secrets_of(settings.redis_url))
        self.settings = settings
        self.name = settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"
        self.registry = load_registry(settings.scenario_modules)
        # The composition root: one client, key layout, event store and network store,
        # handed to the command processor, the executor and the upkeep; none builds its own.
        self.client = open_redis(
            settings, hiredis_packing=True, max_connections=settings.max_connections
        )
        self.keys = Keys.of(settings)
        self.store = EventStore(self.client, self.keys, settings)
        self.network = NetworkStore(self.client, self.keys)
        # Scenario steps read the network from their threads: a blocking client, made once
        # Redis answers (_connect; a cluster client connects as it is made).
        self.step_reads: redis.Redis | None = None
        self.executor = Executor(self.store, self.network, None, settings, self.registry, self.name)
        self.processor = CommandProcessor(self.store, settings, self.registry, self.executor)
        # Per-message logs at DEBUG: faststream's default INFO line per message costs throughput.
        self.broker = make_broker(
            settings,
            log_level=logging.DEBUG,
            # Its lines through structlog (JSON like ours), not its own colour formatter.
            logger=logs.stdlib_logger("faststream.runstream"),
            graceful_timeout=settings.shutdown_grace_s,
        )
        self.subscribers: list[Any] = []
        for shard in range(settings.shards):
            self._subscribe(shard)
        self.stopping = asyncio.Event()
        # Set once connected and reading commands: /health answers ready only then.
        self.consuming = False
        self.status: StatusServer | None = None
        metrics.track_runs_driven(lambda: settings.max_parallel_runs - self.executor.free_slots)

    def _subscribe(self, shard: int) -> None:
        s = self.settings
        stream = self.keys.commands(shard)
        handle, claim = _shard_handlers(self.processor, shard)
        common: dict[str, Any] = {
            "parser": _raw_parser,
            "decoder": _no_decoder,
            "ack_policy": AckPolicy.MANUAL,
        }
        reader = self.broker.subscriber(
            stream=StreamSub(
                stream,
                group=self.keys.group,
                consumer=self.name,
                batch=True,
                max_records=s.commands_per_read,
                polling_interval=1000,
            ),
            **common,
        )
        reader(handle)
        claimer = self.broker.subscriber(
            stream=StreamSub(
                stream,
                group=self.keys.group,
                consumer=self.name,
                batch=True,
                min_idle_time=s.claim_idle_ms,
                polling_interval=max(100, s.claim_idle_ms // 2),
            ),
            **common,
        )
        claimer(claim)
        self.subscribers += [reader, claimer]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.settings.metrics_port:
            try:
                self.status = StatusServer(
                    self.settings.metrics_host,
                    self.settings.metrics_port,
                    loop,
                    self._not_ready,
                    lambda: shard_metrics.refresh(self.client, self.keys),
                ).start()
            except OSError as exc:
                log.error(
                    "status_port_unavailable", port=self.settings.metrics_port, error=str(exc)
                )
                await self._close()
                raise SystemExit(2) from None
        if not await self._connect():
            return
        self.consuming = True
        self.executor.start()
        # What start-up made (modules, the app, its clients) lives as long as the process:
        # kept out of the collector's full passes, which then take about a third of the
        # time (they were 35-55 ms stalls of every run under way). Start-up's garbage
        # (retries while Redis was down, say) is collected first, not kept for ever.
        gc.collect()
        gc.freeze()
        # Only now: whoever waits for this mark may SIGTERM us, so the handlers must be in.
        log.info(
            READY_MARK,
            worker=self.name,
            shards=self.settings.shards,
            scenarios=[s.name for s in self.registry],
        )
        next_upkeep = 0.0
        try:
            while not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=1.0)
                await self._restart_stopped_subscribers()
                if time.monotonic() >= next_upkeep:
                    next_upkeep = time.monotonic() + self.settings.upkeep_interval_s
                    await self._upkeep()
        finally:
            await self._shutdown()

    async def _connect(self) -> bool:
        """Wait for Redis (it may be down or still loading its append-only file), then set up
        the groups and start reading. False if asked to stop first."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                # Raises ShardCountMismatch (the worker exits): never read the wrong streams.
                await ensure_shard_count(self.client, self.keys)
                await ensure_partition_count(self.client, self.keys)
                await ensure_groups(self.client, self.keys)
                await heartbeat(self.client, self.keys, self.settings, self.name)
                await catalog.publish(self.client, self.keys, self.registry, self.name)
                if self.step_reads is None:
                    self.step_reads = await asyncio.to_thread(self._open_step_reads)
                    self.executor.use_step_reads(self.step_reads)
                await self.broker.start()
                return True
            except REDIS_TROUBLE as exc:
                log.warning("waiting_for_redis", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)
            except ShardCountMismatch:
                await self.executor.stop(0)
                await self._close()
                raise
        await self.executor.stop(0)
        await self._close()
        return False

    def _open_step_reads(self) -> redis.Redis:
        # Timeouts, so a hung connection can't hold a run for ever.
        return open_blocking_redis(self.settings, socket_timeout=10, socket_connect_timeout=10)

    async def _not_ready(self) -> str | None:
        """Why this worker is not ready (its /health), or None when it is."""
        if self.stopping.is_set():
            return "stopping"
        if not self.consuming:
            return "not consuming yet: waiting for Redis"
        try:
            await asyncio.wait_for(self.client.ping(), timeout=1.5)
        except REDIS_TROUBLE as exc:
            return f"Redis does not answer: {exc}"
        return None

    async def _upkeep(self) -> None:
        """Housekeeping never takes the worker down: a failure is logged and retried later."""
        try:
            await heartbeat(self.client, self.keys, self.settings, self.name)
            # Again and again: a catalog wiped (or a Redis restored from before) comes back.
            await catalog.publish(self.client, self.keys, self.registry, self.name)
            await upkeep(self.client, self.keys, self.settings)
        except REDIS_TROUBLE as exc:
            log.warning("upkeep_failed", error=str(exc))
        except Exception:
            log.exception("upkeep_crashed")

    async def _restart_stopped_subscribers(self) -> None:
        """Restart subscribers faststream stopped (it stops one for good on NOGROUP: the
        stream or its group was deleted, or Redis lost them), re-creating the groups."""
        if self.stopping.is_set():
            return
        stopped = [sub for sub in self.subscribers if not sub.running]
        if not stopped:
            return
        try:
            await ensure_groups(self.client, self.keys)
            for sub in stopped:
                await sub.start()
            log.warning("subscribers_restarted", count=len(stopped))
        except REDIS_TROUBLE as exc:
            log.warning("subscribers_restart_failed", error=str(exc))

    async def _shutdown(self) -> None:
        """Stop reading; let handlers in flight finish (graceful_timeout) and the executor
        finish or checkpoint its chunks and hand back its leases; then close."""
        log.info("worker_stopping", worker=self.name)
        # Both at once, so the whole shutdown fits in one grace period (with time left to
        # close and exit); waited for with a bound, never awaited outright: a task that
        # swallowed its cancellation (redis-py can, on Python 3.11) must not keep the
        # process from exiting.
        budget = max(0.5, self.settings.shutdown_grace_s - 0.5)
        stopping = asyncio.gather(self.broker.stop(), self.executor.stop(budget))
        _done, late = await asyncio.wait({stopping}, timeout=budget)
        if late:
            stopping.add_done_callback(lambda f: f.cancelled() or f.exception())
            log.warning("shutdown_incomplete", worker=self.name)
        closing = asyncio.ensure_future(self._close())
        await asyncio.wait({closing}, timeout=0.3)
        log.info("worker_stopped", worker=self.name)

    async def _close(self) -> None:
        if self.status is not None:
            self.status.stop()
        with contextlib.suppress(*REDIS_TROUBLE):
            await self.client.delete(self.keys.worker_alive(self.name))
        if self.step_reads is not None:
            self.step_reads.close()
        await self.client.aclose()
