"""Drives runs that have work to do: processes their items chunk by chunk, and reverts them.

A run is driven by whichever worker holds its lease. Commands (stop, cancel...) are
handled elsewhere and land as events between chunks: the executor's next append then
fails its version check, it reloads, and sees the run is no longer running. So stop
takes effect at the next chunk boundary, and nothing a chunk did is lost or half-kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
import structlog

from runstream.domain.run import Run
from runstream.domain.scenarios import BadArguments, Registry, ResultLimits
from runstream.settings import Settings
from runstream.store import outputs
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore
from runstream_worker.chunk import ChunkResult, NetworkUnavailable, run_chunk
from runstream_worker.chunk_protocol import ChunkProtocol
from runstream_worker.lease import Leases
from runstream_worker.revert_step import take_revert_step

log = structlog.get_logger("runstream.executor")
T = TypeVar("T")

# A chunk whose network elements keep changing under it between read and write.
MAX_CHUNK_CONFLICTS = 5


class LostLease(Exception):
    pass


def in_daemon_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run ``fn`` in a daemon thread: a scenario step stuck in user code must not keep the
    process alive past its shutdown grace (its chunk is simply not recorded, and is redone
    by whoever takes the run over)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: the process is exiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name="runstream-chunk", daemon=True).start()
    return future


class Executor:
    def __init__(
        self,
        store: EventStore,
        network: NetworkStore,
        step_reads: redis.Redis,
        settings: Settings,
        registry: Registry,
        worker: str,
    ) -> None:
        """``step_reads``: a blocking client for the network reads of scenario steps, which
        run in threads (its owner closes it)."""
        self.settings = settings
        self.store = store
        self.network = network
        self.redis = store.redis
        self.keys = store.keys
        self.registry = registry
        self.worker = worker
        self.leases = Leases(self.redis, self.keys, worker, settings.lease_ms)
        self.chunks = ChunkProtocol(
            self.network, self._append, self.store.load, self.store.chunks_before
        )
        self._sync = step_reads
        self._active: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.max_parallel_runs)
        self._stopping = False
        # Seen by chunks in their threads: stop at the next item boundary.
        self._shutdown = threading.Event()
        self._scanner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._scanner = asyncio.create_task(self._scan_forever())

    async def stop(self, grace: float) -> None:
        """Take no new runs; let the chunks in hand finish and give their leases back."""
        self._stopping = True
        self._shutdown.set()
        if self._scanner:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
        tasks = list(self._active.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def wake(self, run_id: str) -> None:
        """A run has work (queued, continued, reverting): drive it here if we can."""
        if self._stopping or run_id in self._active:
            return
        task = asyncio.create_task(self._drive(run_id))
        self._active[run_id] = task
        task.add_done_callback(lambda _t: self._active.pop(run_id, None))

    async def _scan_forever(self) -> None:
        """Pick up runs that no one drives: a dead worker's, or ones woken elsewhere."""
        while not self._stopping:
            try:
                for shard in range(self.keys.shards):
                    # Members only (no scores), as bytes: the client doesn't decode replies.
                    members = cast(
                        list[bytes], await self.redis.zrange(self.keys.runnable(shard), 0, 999)
                    )
                    for raw in members:
                        self.wake(raw.decode())
            except (redis.RedisError, OSError) as exc:
                log.warning("scan_failed", error=str(exc))
            await asyncio.sleep(min(1.0, self.settings.lease_ms / 4000))

    # ------------------------------------------------------------------ one run
    async def _drive(self, run_id: str) -> None:
        async with self._slots:
            try:
                if self._stopping or not await self.leases.acquire(run_id):
                    return
            except (redis.RedisError, OSError) as exc:
                log.warning("lease_unavailable", run_id=run_id, error=str(exc))
                return
            structlog.contextvars.bind_contextvars(run_id=run_id)
            try:
                await self._drive_held(run_id)
            except LostLease:
                log.warning("lease_lost")
            except (redis.RedisError, OSError, NetworkUnavailable) as exc:
                log.warning("drive_interrupted", error=str(exc))
            except Exception:
                log.exception("drive_crashed")
            finally:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self.leases.release(run_id)
                structlog.contextvars.unbind_contextvars("run_id")

    async def _drive_held(self, run_id: str) -> None:
        run = await self.store.load(run_id)
        conflicts = 0
        while not self._stopping:
            s = run.state
            if s.pending is not None:
                run = await self._resolve_pending(run)
            elif s.state in ("queued", "running"):
                run, conflict = await self._process_chunk(run)
                conflicts = conflicts + 1 if conflict else 0
                if conflicts >= MAX_CHUNK_CONFLICTS:
                    run.fail(time.time(), "network elements kept changing under the run")
                    run = await self._save(run)
            elif s.state == "reverting":
                run = await self._revert_step(run)
            else:
                return

    async def _append(self, run: Run, output: outputs.RunOutput | None = None) -> bool:
        """Append the run's new events under our lease: False if the run changed meanwhile
        (nothing was written); LostLease if another executor took the run."""
        result = await self.store.save(run, lease_owner=self.worker, output=output)
        if result.status == "lease":
            raise LostLease(run.state.run_id)
        return result.status == "ok"

    async def _save(self, run: Run, output: outputs.RunOutput | None = None) -> Run:
        """Append the run's new events; on a stale version, the fresh run to retry on."""
        if await self._append(run, output):
            return run
        return await self.store.load(run.state.run_id)

    async def _resolve_pending(self, run: Run) -> Run:
        """A chunk recorded but not confirmed (its worker died, or we lost a race)."""
        return await self.chunks.resolve_pending(run)

    async def _process_chunk(self, run: Run) -> tuple[Run, bool]:
        s = run.state
        now = time.time()
        try:
            scenario = self.registry.get(s.scenario)
            params = scenario.validate(s.args)
        except BadArguments as exc:
            run.begin(now, self.worker)
            run.fail(now, str(exc))
            return await self._save(run), False
        run.begin(now, self.worker)
        async with self.leases.kept(s.run_id):
            result: ChunkResult = await in_daemon_thread(
                run_chunk,
                scenario,
                params,
                s.run_id,
                s.items_processed,
                self.settings.chunk_items,
                self.settings.chunk_seconds,
                self._read_element,
                self._shutdown.is_set,
                ResultLimits(
                    file_bytes=self.settings.max_result_bytes,
                    run_bytes=self.settings.max_run_result_bytes,
                    kept=s.result_sizes,
                ),
            )
        return await self.chunks.record(run, result)

    def _read_element(self, element: str) -> tuple[str, str]:
        """A step's read of one element (value and stamp), from the chunk's thread."""
        try:
            with self._sync.pipeline(transaction=True) as pipe:
                pipe.hget(self.keys.net_values, element)
                pipe.hget(self.keys.net_stamps, element)
                value, stamp = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise NetworkUnavailable(f"cannot read {element}: {exc}") from exc
        return (value.decode() if value else "", stamp.decode() if stamp else "")

    async def _revert_step(self, run: Run) -> Run:
        step = await take_revert_step(
            self.store, self.network, run, self.settings.revert_batch, time.time()
        )
        if step is None:
            return await self.store.load(run.state.run_id)
        if not step.mark:
            s = run.state
            log.info("run_reverted", compensated=s.compensated, skipped=s.skipped)
        if not await self._append(run):
            return await self.store.load(run.state.run_id)  # the step is redone: its mark answers
        if step.mark:
            await self.network.forget_revert_step(step.mark)
        return run
