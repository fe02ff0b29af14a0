"""Helpers for the integration tests: in-process and subprocess workers, waiting on
conditions, and reading what a run left behind (history, feed, chunk ranges).

Everything talks to a real Redis; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import msgspec
import redis.asyncio as aredis

from runstream import processes
from runstream.connect import open_redis
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import Run
from runstream.domain.scenarios import load_registry
from runstream.ids import new_id
from runstream.keys import Fields, Keys
from runstream.processes import WorkerProcess, worker_env
from runstream.settings import Settings
from runstream.store import dlq, replies
from runstream.store.events import EventStore
from runstream.store.network import NetworkStore
from runstream_worker.chunk import run_chunk
from runstream_worker.effects import record_effects

T = TypeVar("T")

RUNCTL_CMD = (sys.executable, "-m", "runctl.main")


# --------------------------------------------------------------------------- settings
def fast(settings: Settings, **overrides: Any) -> Settings:
    """The test's settings with snappy chunks, leases and claims (overrides on top)."""
    values: dict[str, Any] = {
        "chunk_seconds": 0.05,
        "lease_ms": 1000,
        "claim_idle_ms": 1000,
        "upkeep_interval_s": 0.2,
        "shutdown_grace_s": 3.0,
        "log_format": "json",
    }
    values.update(overrides)
    return msgspec.structs.replace(settings, **values)


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A process environment carrying ``settings`` (REDIS_URL, RUNSTREAM_*), JSON logs."""
    return worker_env(msgspec.structs.replace(settings, log_format="json"), **extra)


# --------------------------------------------------------------------------- waiting
@overload
async def until(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T: ...


@overload
async def until(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T: ...


async def until(
    probe: Callable[[], Any],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = probe()
        last = await result if inspect.isawaitable(result) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- redis
@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = open_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


def run_id_on(keys: Keys, shard: int) -> str:
    """A fresh run id that belongs to ``shard``."""
    while True:
        run_id = new_id()
        if keys.shard_of(run_id) == shard:
            return run_id


async def pending_count(
    r: aredis.Redis, stream: str, group: str, consumer: str | None = None
) -> int:
    if consumer is None:
        info = await r.xpending(stream, group)
        return int(info["pending"])
    rows = await r.xpending_range(
        stream, group, min="-", max="+", count=10_000, consumername=consumer
    )
    return len(rows)


async def delivered_entry(
    r: aredis.Redis, keys: Keys, shard: int, fields: dict[bytes, bytes], consumer: str = "test"
) -> str:
    """Add a message to the shard's command stream and deliver it to ``consumer`` in the
    same transaction, so a running worker never sees it: what a worker parks in the DLQ."""
    stream = keys.commands(shard)
    async with r.pipeline(transaction=True) as pipe:
        pipe.xadd(stream, fields)  # type: ignore[arg-type]
        pipe.xreadgroup(keys.group, consumer, {stream: ">"})
        entry_id, _ = await pipe.execute()
    return replies.text(entry_id)


async def parked(
    r: aredis.Redis,
    keys: Keys,
    settings: Settings,
    shard: int,
    fields: dict[bytes, bytes],
    reason: str,
) -> str:
    """A dead letter as a worker leaves one; its source entry's id."""
    entry_id = await delivered_entry(r, keys, shard, fields)
    assert await dlq.park(r, keys, settings, shard, entry_id, fields, reason)
    return entry_id


async def feed_events(r: aredis.Redis, keys: Keys, run_id: str) -> list[tuple[int, ev.Event]]:
    """The run's events as its shard's feed carries them: (version, event)."""
    out = []
    for _, fields in replies.entries(await r.xrange(keys.feed(keys.shard_of(run_id)))):
        if fields[Fields.RUN].decode() == run_id:
            out.append((int(fields[Fields.VERSION]), ev.decode_event(fields[Fields.EVENT])))
    return out


async def history(r: aredis.Redis, keys: Keys, run_id: str) -> list[ev.Event]:
    return [
        ev.decode_event(f[Fields.EVENT])
        for _, f in replies.entries(await r.xrange(keys.events(run_id)))
    ]


def chunk_ranges(events: list[ev.Event]) -> list[tuple[int, int]]:
    """Item ranges of the chunks that reached the network (confirmed by ItemsProcessed),
    in history order. Asserts every chunk was resolved at most once."""
    prepared: dict[int, ev.ChunkPrepared] = {}
    resolved: set[int] = set()
    ranges: list[tuple[int, int]] = []
    for e in events:
        if isinstance(e, ev.ChunkPrepared):
            assert e.chunk not in prepared, f"chunk {e.chunk} prepared twice"
            prepared[e.chunk] = e
        elif isinstance(e, ev.ItemsProcessed | ev.ChunkVoided):
            assert e.chunk in prepared, f"chunk {e.chunk} resolved but never prepared"
            assert e.chunk not in resolved, f"chunk {e.chunk} resolved twice"
            resolved.add(e.chunk)
            if isinstance(e, ev.ItemsProcessed):
                p = prepared[e.chunk]
                assert e.items_to == p.items_to
                ranges.append((p.items_from, p.items_to))
    return ranges


def assert_contiguous(ranges: list[tuple[int, int]], total: int) -> None:
    """Chunk ranges cover 0..total exactly once, in order: no item twice, none skipped."""
    position = 0
    for start, end in ranges:
        assert start == position, f"chunk {start}..{end} does not start at {position}: {ranges}"
        assert end >= start
        position = end
    assert position == total, f"chunks end at {position}, expected {total}: {ranges}"


# --------------------------------------------------------------------------- in-process worker
@contextlib.asynccontextmanager
async def worker_running(settings: Settings, name: str = "inproc") -> AsyncIterator[Any]:
    """``runstream_worker.app.Worker(settings).run()`` as a task of the test's loop;
    stopped by setting ``worker.stopping`` (and awaited) on exit."""
    from runstream_worker.app import Worker

    worker = Worker(msgspec.structs.replace(settings, worker_name=name))
    task = asyncio.create_task(worker.run(), name=f"worker-{name}")
    try:
        await until(
            lambda: (
                task.done() or (worker.subscribers and all(s.running for s in worker.subscribers))
            ),
            "the worker's subscribers to start",
            timeout=10,
        )
        if task.done():
            task.result()  # raise what killed it
        yield worker
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, timeout=settings.shutdown_grace_s * 2 + 10)


# --------------------------------------------------------------------------- subprocess workers
@dataclass
class WorkerPool:
    """Worker subprocesses of one test; all stopped (SIGTERM, then SIGKILL) by ``close``."""

    settings: Settings
    directory: Path
    procs: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, **env: str) -> WorkerProcess:
        """Start a worker and return at once (``wait_ready()`` on it to wait until it reads)."""
        (worker,) = processes.start_workers(
            [name], service_env(self.settings, **env), self.directory, wait_ready=False
        )
        self.procs.append(worker)
        return worker

    def close(self) -> None:
        processes.stop_all(self.procs, grace=8)
        for w in self.procs:
            w.close()


@contextlib.contextmanager
def worker_pool(settings: Settings, directory: Path) -> Iterator[WorkerPool]:
    pool = WorkerPool(settings, directory)
    try:
        yield pool
    finally:
        pool.close()


def logs_of(pool: WorkerPool) -> str:
    return "\n".join(f"--- {w.name} (exit {w.proc.poll()})\n{w.log()[-4000:]}" for w in pool.procs)


# --------------------------------------------------------------------------- runctl
@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def runctl(
    settings: Settings, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> CliResult:
    """``runctl ARGS`` with the test's settings (``env``: more variables, on top)."""
    proc = subprocess.run(
        [*RUNCTL_CMD, *args],
        env=service_env(settings, **(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


async def runctl_async(settings: Settings, *args: str, timeout: float = 60.0) -> CliResult:
    """``runctl ARGS`` as a subprocess, without blocking the test's event loop (an
    in-process worker keeps running meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *RUNCTL_CMD,
        *args,
        env=service_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


async def prepare_chunk_under_lease(
    r: aredis.Redis,
    s: Settings,
    keys: Keys,
    run_id: str,
    args: dict[str, Any],
    items_to: int | None,
    holder: str,
    lease_ms: int = 60_000,
) -> tuple[ev.ChunkPrepared, Run]:
    """A synthetic run started, and its first chunk (items up to ``items_to``; None: all)
    recorded (phase one) by ``holder`` under its lease of ``lease_ms``: neither applied nor
    voided yet."""
    store = EventStore(r, keys, s)
    scenario = load_registry().get("synthetic")
    params = scenario.validate(args)
    upto = 10**6 if items_to is None else items_to  # the chunk stops at the last item
    now = time.time()
    run = Run.blank(run_id)
    start = cmd.StartRun(run_id=run_id, scenario="synthetic", args=args)
    run.start(
        start,
        now,
        scenario_version=scenario.version,
        args=msgspec.to_builtins(params),
        items_total=scenario.count(params),
    )
    assert (await store.save(run, command_id=start.command_id)).status == "ok"
    assert await r.set(keys.lease(run_id), holder, px=lease_ms)
    run.begin(now, holder)
    result = run_chunk(scenario, params, run_id, 0, upto, 60.0, lambda _e: None)
    assert not result.error and (items_to is None or result.items_to == items_to)
    effects = await record_effects(
        NetworkStore(r, keys), run_id, run.state.next_effect, result.changes
    )
    prepared = run.prepare_chunk(
        now,
        items_to=result.items_to,
        effects=effects,
        notifications=result.notifications,
        log=result.log,
        results=result.results,
    )
    assert (await store.save(run, lease_owner=holder)).status == "ok"
    return prepared, run
