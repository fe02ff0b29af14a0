"""Drives runs that have work to do: processes their items chunk by chunk, and reverts them.

A run is driven by whichever worker holds its lease. Commands (stop, cancel...) are
handled elsewhere and land as events between chunks: the executor's next append then
fails its version check, it reloads, and sees the run is no longer running. So stop
takes effect at the next chunk boundary, and nothing a chunk did is lost or half-kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import cast

import redis
import structlog
from redis.exceptions import NoScriptError

from runstream import lua
from runstream.domain.run import WAITING_BAND, Run
from runstream.domain.scenarios import BadArguments, Registry, ResultLimits
from runstream.redis_trouble import REDIS_TROUBLE
from runstream.settings import Settings
from runstream.store import outputs
from runstream.store.events import EventStore
from runstream.store.network import ElementReserved, NetworkStore
from runstream_worker import metrics
from runstream_worker.chunk import ChunkResult, NetworkUnavailable, run_chunk
from runstream_worker.chunk_protocol import ChunkProtocol, chunk_token
from runstream_worker.daemon_threads import DaemonThreads
from runstream_worker.lease import Leases, LostLease
from runstream_worker.revert_step import take_revert_step

log = structlog.get_logger("runstream.executor")

# A chunk whose network elements keep changing under it between read and write.
MAX_CHUNK_CONFLICTS = 5
# At shutdown, how long the runs in hand get to record their chunk before they are
# cancelled: a chunk stops at the next item once shutdown starts, so this is plenty.
SHUTDOWN_WAIT_S = 1.0
# How long cancelled runs get to end after that (they may not: see lease.py).
CANCEL_WAIT_S = 0.5
# What interrupts a run's drive without being its fault: it is taken up again later
# (ElementReserved: a revert step met a chunk being written; the step's mark keeps what
# was done).
DRIVE_TROUBLE: tuple[type[Exception], ...] = (*REDIS_TROUBLE, NetworkUnavailable, ElementReserved)
# What ends a try to settle another run's chunk (the waiting chunk tries again later).
SETTLE_TROUBLE: tuple[type[Exception], ...] = (*REDIS_TROUBLE, LostLease)
# A chunk waits for another chunk's reservations this long, plus two leases (the time
# for the holder's lease to run out and for us to take it over and settle its chunk, with
# room for a slow machine), before they count as a conflict.
RESERVATION_WAIT_EXTRA_S = 5.0
# How often the scan also looks for runs under way that the leases set does not know of
# (leased by a worker of an older version, during a rolling upgrade): that look walks
# every run under way, the others only what is free to take.
FULL_SCAN_S = 30.0


@dataclass
class Line:
    """Runnable runs in the order they start (score, run id), as read from Redis; ``at``:
    the first not yet started or skipped."""

    runs: list[tuple[float, str]] = field(default_factory=list)
    complete: bool = True
    at: int = 0

    @property
    def left(self) -> bool:
        return self.at < len(self.runs)


class Executor:
    def __init__(
        self,
        store: EventStore,
        network: NetworkStore,
        step_reads: redis.Redis | None,
        settings: Settings,
        registry: Registry,
        worker: str,
    ) -> None:
        """``step_reads``: a blocking client for the network reads of scenario steps, which
        run in threads (its owner closes it); None until ``use_step_reads``."""
        self.settings = settings
        self.store = store
        self.network = network
        self.redis = store.redis
        self.keys = store.keys
        self.registry = registry
        self.worker = worker
        self.leases = Leases(self.redis, self.keys, worker, settings.lease_ms)
        self.chunks = ChunkProtocol(
            self.network,
            self._append,
            self.store.load,
            self.store.chunks_before,
            renew_lease=self.leases.renew,
            reservation_wait_s=2 * settings.lease_ms / 1000 + RESERVATION_WAIT_EXTRA_S,
            settle=self.settle_holder,
        )
        self._sync = step_reads
        # Chunks run in daemon threads (see daemon_threads), reused from chunk to chunk.
        self._threads = DaemonThreads()
        # Runs driven here, one slot each (at most max_parallel_runs, but for --no-queue).
        self._active: dict[str, asyncio.Task[None]] = {}
        # The last scan left runs waiting for a slot: a woken run queues behind them.
        self._backlog = False
        # Set when a slot frees or a run must wait: the scanner looks again at once.
        self._poke = asyncio.Event()
        self._scan_interval = min(1.0, settings.lease_ms / 4000)
        # The line as last read, from the first run left waiting (see _scan); complete if
        # it held the whole of every shard's runnable set.
        self._line = Line()
        # A run had to wait since the last read: it may go before the line as read.
        self._news = False
        self._read_at = 0.0
        self._full_scan_at = float("-inf")
        self._runnable_scan = self.redis.register_script(lua.source("runnable_scan"))
        # Runs another worker held the lease of at the last try: run id -> when to retry.
        self._elsewhere: dict[str, float] = {}
        # Runs whose lease went back with their last append: their drive releases nothing.
        self._given_back: set[str] = set()
        # Runs whose pending chunk settle_holder is settling: not driven here meanwhile.
        self._settling: set[str] = set()
        # Runs being leased and loaded by the scan (_start_batch): their slots are taken.
        self._starting: set[str] = set()
        self._stopping = False
        # Seen by chunks in their threads: stop at the next item boundary.
        self._shutdown = threading.Event()
        self._scanner: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._scanner = asyncio.create_task(self._scan_forever())

    async def stop(self, budget: float) -> None:
        """Take no new runs; let the chunks in hand finish (about a second at most) and give
        their leases back, all within ``budget`` seconds. Never waits on a task for longer:
        one that does not end when cancelled is left behind, its lease released here."""
        deadline = time.monotonic() + budget
        self._stopping = True
        self._shutdown.set()
        if self._scanner:
            self._scanner.cancel()
            await asyncio.wait({self._scanner}, timeout=CANCEL_WAIT_S)
        active = dict(self._active)
        if active:
            # Within the grace, with time left to cancel the rest and release their leases.
            wait_s = max(0.1, min(SHUTDOWN_WAIT_S, budget - CANCEL_WAIT_S - 0.2))
            _done, pending = await asyncio.wait(active.values(), timeout=wait_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
            for run_id, task in active.items():
                if not task.done():
                    log.warning("run_left_behind", run_id=run_id)
                    await self._give_back(run_id)
        # Applied chunks' and revert steps' markers still being deleted: a moment, within
        # what is left of the budget (they expire anyway).
        left = deadline - time.monotonic() - 0.1
        await self.network.forgotten(timeout=max(0.0, min(CANCEL_WAIT_S, left)))

    def use_step_reads(self, step_reads: redis.Redis) -> None:
        """The blocking client, once connected (a cluster one connects when it is made)."""
        self._sync = step_reads

    @property
    def free_slots(self) -> int:
        return (
            self.settings.max_parallel_runs
            - len(self._starting)
            - sum(1 for task in self._active.values() if not task.done())
        )

    def _driving(self, run_id: str) -> bool:
        current = self._active.get(run_id)
        if run_id in self._settling or run_id in self._starting:
            return True
        return current is not None and not current.done()

    def wake(self, run_id: str, *, at_once: bool = False) -> None:
        """A run has work (queued, continued, reverting): drive it here now if a slot is
        free and no run waits before it; else the scanner starts runs in their order.
        ``at_once`` (a --no-queue start): drive it now, slot or not. A run whose task here
        has ended (or was left behind after losing the lease) is driven again."""
        if self._stopping:
            return
        if self._driving(run_id):
            # Its drive may be ending (the run was stopped, or just finished): the scan
            # that follows reads the line again, so the run is taken up at once.
            self._news = True
            return
        if at_once or (self.free_slots > 0 and not self._backlog):
            self._spawn(run_id)
        else:
            self._news = True
            self._poke.set()

    def _spawn(self, run_id: str, run: Run | None = None) -> None:
        """Drive the run in a task of its own; ``run``: loaded under our lease already."""
        task = asyncio.create_task(self._drive(run_id, run))
        self._active[run_id] = task
        task.add_done_callback(functools.partial(self._forget, run_id))

    def _forget(self, run_id: str, task: asyncio.Task[None]) -> None:
        # Only its own entry: a later task for the run may have replaced it.
        if self._active.get(run_id) is task:
            del self._active[run_id]

    async def _scan_forever(self) -> None:
        """Start runs no one drives, in their order (see RunState.runnable_score): a dead
        worker's first, then waiting runs by priority and age, while slots are free."""
        while not self._stopping:
            try:
                await self._scan()
            except REDIS_TROUBLE as exc:
                log.warning("scan_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self._scan_interval)
            self._poke.clear()

    async def _scan(self) -> None:
        """Start runs from the head of the line while slots are free. A slot freed goes to
        the next run of the line as last read, as long as that read is recent and no run
        had to wait since (it may go first); else the head of each shard's runnable set is
        read again (more of it while every run read is driven somewhere)."""
        now = time.monotonic()
        self._elsewhere = {r: t for r, t in self._elsewhere.items() if t > now}
        if self.free_slots <= 0:
            # Nothing can start: the line is read again once a slot frees.
            self._backlog = self._backlog or self._news or self._line.left
            return
        if not self._news and now - self._read_at < self._scan_interval:
            self._backlog = await self._start_in_order(self._line)
            if self._backlog or self._line.complete:
                return
        self._news = False
        self._read_at = now
        full = now - self._full_scan_at >= FULL_SCAN_S
        if full:
            self._full_scan_at = now
        size = max(64, 4 * self.settings.max_parallel_runs)
        while not self._stopping:
            pages = await self._free_runs(size, full)
            self._line = Line(
                sorted({(score, run_id) for page in pages for run_id, score in page}),
                complete=all(len(page) < size for page in pages),
            )
            self._backlog = await self._start_in_order(self._line)
            if self._backlog or self._line.complete:
                return
            size *= 4

    async def _free_runs(self, size: int, full: bool) -> list[list[tuple[str, float]]]:
        """Per shard, the runs no live lease holds, in order (runnable_scan.lua): at most
        ``size`` of each kind (given back or ended, waiting; with ``full``, not in the
        leases set). A shard's page is short when it had no more."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.keys.shards):
                lua.queue_evalsha(
                    pipe,
                    self._runnable_scan.sha,
                    [self.keys.runnable(shard), self.keys.leases(shard)],
                    [size, WAITING_BAND, "1" if full else ""],
                )
            replies = await pipe.execute(raise_on_error=False)
        pages: list[list[tuple[str, float]]] = []
        for shard, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # not cached on that server yet: load it
                keys = [self.keys.runnable(shard), self.keys.leases(shard)]
                reply = await self._runnable_scan(
                    keys=keys, args=[size, WAITING_BAND, "1" if full else ""]
                )
            if isinstance(reply, Exception):
                raise reply
            flat = cast(list[bytes], reply)
            pages.append([(flat[i].decode(), float(flat[i + 1])) for i in range(0, len(flat), 2)])
        return pages

    async def _start_in_order(self, line: Line) -> bool:
        """Start the runs of ``line`` no one drives, in order, while slots are free; True if
        some had to be left waiting (the line then starts at the first of them). As many
        runs as there are free slots are leased and loaded at once: one round trip per
        batch, not per run, when a backlog drains."""
        while line.left:
            if self._skipped(line.runs[line.at][1]):
                line.at += 1
                continue
            slots = self.free_slots
            if slots <= 0:
                return True
            batch: list[tuple[float, str]] = []
            while line.left and len(batch) < slots:
                score, run_id = line.runs[line.at]
                line.at += 1
                if not self._skipped(run_id):
                    batch.append((score, run_id))
            await self._start_batch(batch)
        return False

    def _skipped(self, run_id: str) -> bool:
        return self._stopping or self._driving(run_id) or run_id in self._elsewhere

    async def _start_batch(self, batch: list[tuple[float, str]]) -> None:
        """Lease and load the runs in one round trip, then drive those leased here.
        Meanwhile they hold their slots and count as driven (a wake() for one of them
        starts nothing). A load that failed, or a batch cut short by a stop (the scan
        cancelled), may still have taken leases: they are given back at once rather than
        left to expire (a release by someone who does not hold the lease changes
        nothing, lease_release.lua)."""
        ids = [run_id for _, run_id in batch]
        self._starting.update(ids)
        try:
            loaded = await self.store.load_many_under_lease(
                ids, self.worker, self.settings.lease_ms
            )
        except BaseException:
            for run_id in ids:
                await self._give_back(run_id)
            raise
        finally:
            self._starting.difference_update(ids)
        trouble: Exception | None = None
        for (score, run_id), run in zip(batch, loaded, strict=True):
            if isinstance(run, Exception):
                trouble = trouble or run
                await self._give_back(run_id)
            elif run is not None:
                if score < WAITING_BAND:  # started before: someone else was driving it
                    metrics.lease_taken_over()
                self._spawn(run_id, run)
            else:
                # Driven by another worker: not asked again until the next periodic scan.
                self._elsewhere[run_id] = time.monotonic() + self._scan_interval
        if trouble is not None:
            raise trouble  # the scan loop logs it; the runs leased here are driven

    async def _give_back(self, run_id: str) -> None:
        """Release the run's lease if we hold it; Redis trouble only leaves it to expire."""
        with contextlib.suppress(*REDIS_TROUBLE):
            await self.leases.release(run_id)

    # ------------------------------------------------------------------ one run
    async def _drive(self, run_id: str, run: Run | None) -> None:
        try:
            if run is None:
                if self._stopping:
                    return
                run = await self.store.load_under_lease(run_id, self.worker, self.settings.lease_ms)
                if run is None:
                    return  # driven by another worker
        except REDIS_TROUBLE as exc:
            log.warning("lease_unavailable", run_id=run_id, error=str(exc))
            return
        structlog.contextvars.bind_contextvars(run_id=run_id)
        try:
            # Renewed in the background; lost, the drive is cancelled and the slot freed.
            released = asyncio.Event()
            await self.leases.hold_while(run_id, self._drive_held(run, released), released)
        except LostLease:
            if run_id not in self._given_back:  # else: a renewal that crossed the last append
                log.warning("lease_lost")
                metrics.lease_lost()
        except DRIVE_TROUBLE as exc:
            log.warning("drive_interrupted", error=str(exc))
        except Exception:
            log.exception("drive_crashed")
        finally:
            if run_id in self._given_back:
                self._given_back.discard(run_id)
            else:
                await self._give_back(run_id)
            structlog.contextvars.unbind_contextvars("run_id")
            task = asyncio.current_task()
            if task is not None:
                self._forget(run_id, task)
            self._poke.set()  # a slot is free: the next run in line may start

    async def _drive_held(self, run: Run, released: asyncio.Event) -> None:
        conflicts = 0
        # ``released``: the lease hold ended while this went on (it swallowed its
        # cancellation); this worker may hold the lease again for a new drive, whose
        # appends this one's would pass: stop before the next step.
        while not self._stopping and not released.is_set():
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

    async def settle_holder(self, token: str) -> None:
        """A chunk of ours waits on the reservations of the chunk ``token`` names: if no
        live worker holds that chunk's run (its worker died and the lease ran out), take
        the lease, resolve the chunk (commit or void: either releases its reservations)
        and give the lease back, so the run is taken up in its turn. This is the takeover
        the run would get anyway, done now and without a run slot: the waiting chunk may
        hold the last slot free, and the run it waits for must not wait for that slot."""
        run_id = token.rpartition(":")[0]
        if not run_id or self._stopping or self._driving(run_id):
            return
        self._settling.add(run_id)
        try:
            # Logged as the holder run's (this task has the waiting run's id bound).
            with structlog.contextvars.bound_contextvars(run_id=run_id):
                await self._settle(run_id, token)
        except SETTLE_TROUBLE as exc:
            log.warning("settle_failed", holder=token, error=str(exc))
        finally:
            self._settling.discard(run_id)
            self._news = True  # the run may need driving: the next scan reads the line
            self._poke.set()

    async def _settle(self, run_id: str, token: str) -> None:
        run = await self.store.load_under_lease(run_id, self.worker, self.settings.lease_ms)
        if run is None:
            return  # a live worker holds it: it settles the chunk itself
        try:
            pending = run.state.pending
            if pending is not None and chunk_token(run_id, pending.chunk) == token:
                metrics.lease_taken_over()
                await self.chunks.resolve_pending(run)
        finally:
            if run_id in self._given_back:  # its last append gave the lease back
                self._given_back.discard(run_id)
            else:
                await self.leases.release(run_id)

    async def _append(self, run: Run, output: outputs.RunOutput | None = None) -> bool:
        """Append the run's new events under our lease: False if the run changed meanwhile
        (nothing was written); LostLease if another executor took the run. The append that
        leaves the run with nothing for an executor to do gives the lease back with it."""
        done = not run.state.needs_executor
        result = await self.store.save(
            run, lease_owner=self.worker, release_lease=done, output=output
        )
        if result.status == "lease":
            raise LostLease(run.state.run_id)
        if result.status == "ok" and done:
            self._given_back.add(run.state.run_id)
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
        result: ChunkResult = await self._threads.run(
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
        if self._sync is None:
            raise NetworkUnavailable(f"cannot read {element}: not connected to Redis yet")
        try:
            part = self.keys.partition_of(element)
            with self._sync.pipeline(transaction=True) as pipe:
                pipe.hget(self.keys.net_values(part), element)
                pipe.hget(self.keys.net_stamps(part), element)
                value, stamp = pipe.execute()
        except REDIS_TROUBLE as exc:
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
        metrics.effects_compensated(step.compensated, len(step.skipped))
        if step.mark:  # recorded: the mark's removal need not hold the revert up
            self.network.forget_revert_step_soon(step.mark, step.partitions)
        return run
