"""Helpers for the integration tests: in-process and subprocess workers, waiting on
conditions, and reading what a run left behind (history, feed, chunk ranges).

Everything talks to a real Redis; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec
import redis.asyncio as aredis

from runstream.contracts import events as ev
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.settings import Settings

T = TypeVar("T")

WORKER_CMD = (sys.executable, "-m", "runstream_worker")
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
    """A process environment carrying ``settings`` (REDIS_URL, RUNSTREAM_*)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_") and k != "REDIS_URL"
    }
    env.update(
        REDIS_URL=settings.redis_url,
        RUNSTREAM_PREFIX=settings.prefix,
        RUNSTREAM_SHARDS=str(settings.shards),
        RUNSTREAM_CHUNK_SECONDS=str(settings.chunk_seconds),
        RUNSTREAM_CHUNK_ITEMS=str(settings.chunk_items),
        RUNSTREAM_LEASE_MS=str(settings.lease_ms),
        RUNSTREAM_CLAIM_IDLE_MS=str(settings.claim_idle_ms),
        RUNSTREAM_MAX_DELIVERIES=str(settings.max_deliveries),
        RUNSTREAM_MAX_COMMAND_BYTES=str(settings.max_command_bytes),
        RUNSTREAM_SHUTDOWN_GRACE_S=str(settings.shutdown_grace_s),
        RUNSTREAM_UPKEEP_INTERVAL_S=str(settings.upkeep_interval_s),
        RUNSTREAM_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


# --------------------------------------------------------------------------- waiting
async def until(
    probe: Callable[[], Awaitable[T | None] | T | None],
    what: str,
    timeout: float = 15.0,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` (sync or async) until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = probe()
        last = await result if inspect.isawaitable(result) else result
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- redis
@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(settings.redis_url)
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


async def feed_events(r: aredis.Redis, keys: Keys, run_id: str) -> list[tuple[int, ev.Event]]:
    """The run's events as its shard's feed carries them: (version, event)."""
    out = []
    for _, fields in await r.xrange(keys.feed(keys.shard_of(run_id))):
        if fields[b"r"].decode() == run_id:
            out.append((int(fields[b"v"]), ev.decode_event(fields[b"e"])))
    return out


async def history(r: aredis.Redis, keys: Keys, run_id: str) -> list[ev.Event]:
    return [ev.decode_event(f[b"e"]) for _, f in await r.xrange(keys.events(run_id))]


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
class WorkerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


@dataclass
class WorkerPool:
    """Worker subprocesses of one test; all stopped (SIGTERM, then SIGKILL) by ``close``."""

    settings: Settings
    directory: Path
    procs: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, **env: str) -> WorkerProcess:
        log_path = self.directory / f"worker-{name}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        proc = subprocess.Popen(
            WORKER_CMD,
            env=service_env(self.settings, RUNSTREAM_WORKER_NAME=name, **env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(name, proc, log_path, log_file)
        self.procs.append(worker)
        return worker

    def close(self) -> None:
        live = [w for w in self.procs if w.alive()]
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGCONT)
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 8
        for w in live:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        for w in self.procs:
            w.log_file.close()


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


def runctl(settings: Settings, *args: str, timeout: float = 60.0) -> CliResult:
    proc = subprocess.run(
        [*RUNCTL_CMD, *args],
        env=service_env(settings),
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
