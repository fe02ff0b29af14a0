"""Throughput benchmark of ONE runstream worker process (DESIGN.md, "Throughput").

    .venv/bin/python bench/run.py [--quick] [--json FILE] [--appendfsync always|everysec]
                                  [--logs DIR]

Starts its own throwaway Redis (EmbeddedRedis on a free port, in a temp dir) and one
``python -m runstream_worker`` process, then measures, in this order:

  runs/s      one-item synthetic runs, from StartRun published to RunSucceeded seen
  commands/s  DeleteRun of those (finished) runs: a command-only workload
  latency     StopRun/ContinueRun at a steady open-loop rate against parked slow runs
  effects/s   a 10,000-item synthetic run (RunStarted..RunSucceeded), then its revert
  memory      bytes per recorded effect of that run
  log lines/s a synthetic run logging 20 lines per item (RunStarted..RunSucceeded)

Each figure is compared with a raw-Redis ceiling (plain redis-py doing the same kind of
round trips with no logic) measured right next to it, and the whole lot is printed as a
table: figure / value / target / ceiling / ratio / pass-fail.

The worker gets our environment, so RUNSTREAM_* variables tune it for an experiment
(e.g. RUNSTREAM_COMMANDS_PER_READ=20); REDIS_URL and RUNSTREAM_PREFIX are always ours.
Everything it starts is stopped at the end (worker, Redis, temp dir), also on Ctrl-C,
SIGTERM or an error; --logs DIR keeps a copy of the worker's and Redis's logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import redis.asyncio as aredis

from runstream import multi_read, processes
from runstream.client import Client
from runstream.connect import open_redis
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.keys import Fields, Keys
from runstream.processes import WorkerProcess, worker_env
from runstream.redis_url import scrub
from runstream.settings import Settings, load_settings
from runstream.store import replies

WORKER_STOP_TIMEOUT_S = 20.0
WAIT_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    runs: int  # one-item runs for runs/s; their DeleteRuns make the commands/s figure
    latency_rate: float  # commands/s offered in the latency phase
    latency_seconds: float
    latency_runs: int  # parked slow runs the Stop/Continue commands go to
    effect_items: int  # items of the big synthetic run (x3 effects with 2 edges each)
    log_items: int  # items of the logging run (20 log lines each)
    ceiling_ops: int  # round trips per raw-Redis ceiling


FULL = Sizes(
    runs=2000,
    latency_rate=200,
    latency_seconds=10,
    latency_runs=4,
    effect_items=10_000,
    log_items=10_000,
    ceiling_ops=3000,
)
QUICK = Sizes(
    runs=300,
    latency_rate=200,
    latency_seconds=3,
    latency_runs=4,
    effect_items=10_000,
    log_items=2_500,
    ceiling_ops=1000,
)


# ----------------------------------------------------------------------------- figures
@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    ceiling: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.ceiling or self.value != self.value:  # no ceiling, or NaN
            return None
        return self.value / self.ceiling

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    ceilings: dict[str, float] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def say(self, line: str) -> None:
        """An informational line: printed as it comes and kept for the JSON."""
        line = scrub(line)  # bench output is pasted into notes: never a URL's password
        print(f"  {line}", flush=True)
        self.info.append(line)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


# ----------------------------------------------------------------------------- processes
@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM takes the same clean-up path as Ctrl-C: inside asyncio.run, SIGINT cancels
    the main task (so its finally blocks run) before KeyboardInterrupt is raised."""

    def on_term(signum: int, frame: Any) -> None:
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Worker:
    """One ``python -m runstream_worker`` subprocess, JSON logs to a file."""

    def __init__(self, settings: Settings, log_path: Path, name: str = "bench") -> None:
        self.log_path = log_path
        self.name = name  # its worker name: lease owner and consumer (one per worker)
        self.env = worker_env(settings)
        self.process: WorkerProcess | None = None

    def __enter__(self) -> Worker:
        self.process = WorkerProcess(self.name, self.env, self.log_path)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is not None and not self.process.alive():
            raise BenchError(
                f"the worker exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        processes.stop_all(
            [process],
            WORKER_STOP_TIMEOUT_S,
            on_kill=lambda _: print("  worker did not stop on SIGTERM in time: killed", flush=True),
        )
        process.close()

    def cpu_seconds(self) -> float:
        """User+system CPU time of the worker so far (Linux /proc; NaN elsewhere)."""
        try:
            return process_cpu_seconds(self.pid)
        except AssertionError:
            return float("nan")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no worker log)"


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc/<pid>/stat; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


class Watched(Protocol):
    """What the feed watcher checks while it waits: the worker (or workers) still live."""

    def check_alive(self) -> None: ...


# ----------------------------------------------------------------------------- feed
class Tracker:
    """Keys still awaited: ``cmd:<command_id>`` or ``<run_id>:<EventType>``."""

    def __init__(self, keys: set[str]) -> None:
        self.missing = set(keys)
        self.done = asyncio.Event()
        if not self.missing:
            self.done.set()

    def seen(self, key: str) -> None:
        self.missing.discard(key)
        if not self.missing:
            self.done.set()


class FeedWatcher:
    """Follows every shard's feed with one blocking XREAD (as Client.wait_for does) and
    notes when each event was received: by command id and by (run, event type)."""

    def __init__(self, redis: aredis.Redis, keys: Keys, worker: Watched) -> None:
        self.redis = redis
        self.keys = keys
        self.worker = worker
        self.arrived: dict[str, float] = {}  # key -> perf_counter() of first arrival
        self.entry_ms: dict[str, int] = {}  # key -> Redis time (ms) of its feed entry
        self.rejections: list[str] = []
        self._trackers: list[Tracker] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        positions: dict[multi_read.StreamKey, multi_read.StreamPos] = {}
        for shard in range(self.keys.shards):
            feed = self.keys.feed(shard)
            last = replies.entries(await self.redis.xrevrange(feed, count=1))
            positions[feed] = last[0][0].decode() if last else "0-0"
        self._task = asyncio.create_task(self._follow(positions))

    async def stop(self) -> None:
        # A flag, not Task.cancel(): a cancel that lands inside redis-py's blocking XREAD
        # was seen to leave the task hanging for ever (redis-py 8.1, Python 3.11).
        self._stopping = True
        if self._task:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            if not self._task.done():
                self._task.cancel()

    async def _follow(self, positions: dict[multi_read.StreamKey, multi_read.StreamPos]) -> None:
        while not self._stopping:
            # A short block: returns as soon as an entry arrives, and lets stop() be quick.
            # multi_read: also on a cluster, where the shards' feeds live in different slots.
            reply = await multi_read.xread(self.redis, positions, count=1000, block=200)
            now = time.perf_counter()
            for stream, entries in replies.streams(reply):
                for entry_id, fields in entries:
                    positions[stream.decode()] = entry_id.decode()
                    event = ev.decode_event(fields[Fields.EVENT])
                    self._note(fields[Fields.RUN].decode(), event, now, entry_ms(entry_id))

    def _note(self, run_id: str, event: ev.Event, now: float, at_ms: int) -> None:
        keys = [f"{run_id}:{ev.event_type(event)}"]
        if event.command_id:
            keys.append(f"cmd:{event.command_id}")
        if isinstance(event, ev.CommandRejected):
            self.rejections.append(f"{event.command_type} {run_id}: {event.reason}")
        for key in keys:
            self.arrived.setdefault(key, now)
            self.entry_ms.setdefault(key, at_ms)
            for tracker in self._trackers:
                tracker.seen(key)

    async def wait(self, keys: set[str], what: str, timeout: float = WAIT_TIMEOUT_S) -> None:
        """Until every key has arrived; fails early if the worker died."""
        tracker = Tracker({k for k in keys if k not in self.arrived})
        self._trackers.append(tracker)
        deadline = time.monotonic() + timeout
        try:
            while not tracker.done.is_set():
                self.worker.check_alive()
                if self._task is not None and self._task.done():
                    self._task.result()  # re-raise what stopped the feed reader
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(
                        f"timed out after {timeout:g}s waiting for {what}: "
                        f"{len(tracker.missing)} of {len(keys)} still missing"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.done.wait(), min(left, 1.0))
        finally:
            self._trackers.remove(tracker)


# ----------------------------------------------------------------------------- bench
class Bench:
    def __init__(
        self, client: Client, watcher: FeedWatcher, worker: Worker, sizes: Sizes, results: Results
    ) -> None:
        self.client = client
        self.redis = client.redis
        self.keys = client.keys
        self.watcher = watcher
        self.worker = worker
        self.sizes = sizes
        self.results = results

    # --- helpers --------------------------------------------------------------------
    async def redis_cpu(self) -> float:
        info = await self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    @contextlib.asynccontextmanager
    async def cpu_report(self, phase: str) -> Any:
        """Prints how busy the worker and Redis were during a phase (1.0 = one core)."""
        w0, r0, t0 = self.worker.cpu_seconds(), await self.redis_cpu(), time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        w1, r1 = self.worker.cpu_seconds(), await self.redis_cpu()
        self.results.say(
            f"[{phase}] wall {wall:.2f}s; CPU busy: worker {(w1 - w0) / wall:.2f}, "
            f"redis {(r1 - r0) / wall:.2f} cores"
        )

    async def send_all(self, commands: Sequence[cmd.Command], concurrency: int = 50) -> None:
        """Publish as fast as one client can: ``concurrency`` XADDs in flight."""
        for i in range(0, len(commands), concurrency):
            await asyncio.gather(*(self.client.send(c) for c in commands[i : i + concurrency]))

    def run_ids_on_every_shard(self, n: int) -> list[str]:
        """n run ids spread evenly over the shards, interleaved (every command stream works)."""
        per_shard = -(-n // self.keys.shards)
        by_shard: list[list[str]] = [[] for _ in range(self.keys.shards)]
        while sum(map(len, by_shard)) < per_shard * self.keys.shards:
            run_id = new_id()
            bucket = by_shard[self.keys.shard_of(run_id)]
            if len(bucket) < per_shard:
                bucket.append(run_id)
        return [run_id for group in zip(*by_shard, strict=True) for run_id in group][:n]

    async def warm_up(self) -> None:
        """One run end to end: the worker is up, subscribed, and its code paths are warm."""
        run_id = new_id()
        await self.client.send(
            cmd.StartRun(run_id=run_id, actor="bench", scenario="synthetic", args={"items": 0})
        )
        await self.watcher.wait({f"{run_id}:RunSucceeded"}, "the warm-up run", timeout=60)

    # --- raw Redis ceilings (each measured just before the phase it is compared with) -------
    # Plain redis-py, same connection settings, the same kind of round trips, no logic.
    # Measured next to their phase because the disk (fsync) and CPU are shared with
    # whatever else runs on the machine.
    async def xadd_ceiling(self) -> float:
        """Commands/s if handling a command cost one sequential XADD."""
        n = self.sizes.ceiling_ops
        scratch = f"{self.keys.prefix}:bench:scratch"
        payload = cmd.encode_command(cmd.DeleteRun(run_id=new_id(), actor="bench"))
        t0 = time.perf_counter()
        for _ in range(n):
            await self.redis.xadd(scratch, {Fields.COMMAND: payload})
        rate = n / (time.perf_counter() - t0)
        await self.redis.delete(scratch)
        self.results.ceilings["xadd_per_s"] = rate
        self.results.say(f"raw: {rate:,.0f} sequential XADD/s")
        return rate

    async def round_trip_ceiling(self) -> dict[str, float]:
        """Latency of an XADD followed by an XREAD of what it added (p50, p99 in ms)."""
        scratch = f"{self.keys.prefix}:bench:scratch"
        payload = cmd.encode_command(cmd.StopRun(run_id=new_id(), actor="bench"))
        last = await self.redis.xadd(scratch, {Fields.COMMAND: payload})
        samples: list[float] = []
        for _ in range(self.sizes.ceiling_ops):
            t = time.perf_counter()
            await self.redis.xadd(scratch, {Fields.COMMAND: payload})
            reply = replies.streams(await self.redis.xread({scratch: last}, count=1))
            samples.append((time.perf_counter() - t) * 1000)
            last = reply[0][1][-1][0]
        await self.redis.delete(scratch)
        rtt = {"p50": percentile(samples, 0.50), "p99": percentile(samples, 0.99)}
        self.results.ceilings.update({f"rtt_{q}_ms": v for q, v in rtt.items()})
        self.results.say(
            f"raw: XADD+XREAD round trip p50 {rtt['p50']:.2f} ms, p99 {rtt['p99']:.2f} ms"
        )
        return rtt

    async def hset_ceiling(self, chunks: list[list[tuple[str, str]]]) -> float:
        """Effects/s of writing the same (element, value) pairs and a stamp each, with no
        logic, chunk by chunk: the faster of one HSET per field in a pipeline, and one
        multi-field HSET per hash (what "just moving the bytes" costs at best)."""
        values = f"{self.keys.prefix}:bench:values"
        stamps = f"{self.keys.prefix}:bench:stamps"
        total = sum(len(c) for c in chunks)
        rates: dict[str, float] = {}
        for mode in ("pipelined HSET", "multi-field HSET"):
            t0 = time.perf_counter()
            for number, chunk in enumerate(chunks):
                async with self.redis.pipeline(transaction=False) as pipe:
                    if mode == "pipelined HSET":
                        for element, after in chunk:
                            pipe.hset(values, element, after or "-")
                            pipe.hset(stamps, element, f"bench/{number}")
                    else:
                        pipe.hset(values, mapping={e: a or "-" for e, a in chunk})
                        pipe.hset(stamps, mapping={e: f"bench/{number}" for e, _ in chunk})
                    await pipe.execute()
            rates[mode] = total / (time.perf_counter() - t0)
            await self.redis.delete(values, stamps)
        self.results.ceilings["effects_per_s"] = max(rates.values())
        self.results.say(
            "raw: " + ", ".join(f"{mode} {rate:,.0f} effects/s" for mode, rate in rates.items())
        )
        return max(rates.values())

    # --- 1. runs/s and commands/s -------------------------------------------------------
    async def runs_per_second(self) -> list[str]:
        n = self.sizes.runs
        ids = self.run_ids_on_every_shard(n)
        starts = [
            cmd.StartRun(
                run_id=i,
                actor="bench",
                scenario="synthetic",
                args={"items": 1, "edges_per_item": 0},
            )
            for i in ids
        ]
        async with self.cpu_report("runs/s"):
            t0 = time.perf_counter()
            await self.send_all(starts)
            published = time.perf_counter() - t0
            await self.watcher.wait({f"{i}:RunSucceeded" for i in ids}, f"{n} runs to succeed")
            elapsed = max(self.watcher.arrived[f"{i}:RunSucceeded"] for i in ids) - t0
        accepted = max(self.watcher.arrived[f"cmd:{c.command_id}"] for c in starts) - t0
        self.results.say(
            f"{n} StartRuns published in {published:.2f}s; all accepted (RunQueued) after "
            f"{accepted:.2f}s ({n / accepted:,.0f}/s), all succeeded after {elapsed:.2f}s"
        )
        self.results.add(
            Figure(
                "runs/s (1 item, start->succeeded)",
                n / elapsed,
                "runs/s",
                note="no raw equivalent: a run is several commands and appends by design",
            )
        )
        return ids

    async def commands_per_second(self, finished_runs: list[str]) -> None:
        """DeleteRun (keep_effects) of finished runs: each is load + one atomic append + ack
        and wakes no executor, so this is command handling alone. (StartRun would also
        make the executor drive each run, and StopRun/ContinueRun need live runs.)"""
        deletes = [
            cmd.DeleteRun(run_id=i, actor="bench", mode="keep_effects") for i in finished_runs
        ]
        n = len(deletes)
        ceiling = await self.xadd_ceiling()
        async with self.cpu_report("commands/s"):
            t0 = time.perf_counter()
            await self.send_all(deletes)
            await self.watcher.wait(
                {f"cmd:{c.command_id}" for c in deletes}, f"{n} DeleteRuns to be handled"
            )
        elapsed = max(self.watcher.arrived[f"cmd:{c.command_id}"] for c in deletes) - t0
        deleted = sum(f"{i}:RunDeleted" in self.watcher.arrived for i in finished_runs)
        if deleted != n:
            self.results.say(f"WARNING: only {deleted} of {n} DeleteRuns led to RunDeleted")
        self.results.add(
            Figure(
                "commands/s (DeleteRun, no executor)",
                n / elapsed,
                "cmd/s",
                target=1000,
                ceiling=ceiling,
                note="ceiling: 1 sequential XADD per command",
            )
        )

    # --- 2. latency -------------------------------------------------------------------
    async def park_slow_runs(self, k: int, seconds: float) -> list[str]:
        """Runs whose first item sleeps longer than the phase: the executor sits in that
        item's thread, so Stop/Continue below cost command handling only (the executor's
        late chunk append just fails its version check afterwards)."""
        ids = self.run_ids_on_every_shard(k)
        delay_ms = min(60_000.0, (seconds + 2) * 1000)
        await self.send_all(
            [
                cmd.StartRun(
                    run_id=i,
                    actor="bench",
                    scenario="synthetic",
                    args={"items": 1_000_000, "edges_per_item": 0, "delay_ms": delay_ms},
                )
                for i in ids
            ]
        )
        await self.watcher.wait({f"{i}:RunQueued" for i in ids}, "slow runs to be queued")
        # The executor holds a run's lease while it is in the item: wait for that.
        deadline = time.monotonic() + 30
        while not all([await self.redis.exists(self.keys.lease(i)) for i in ids]):
            if time.monotonic() > deadline:
                raise BenchError("the executor did not pick up the slow runs within 30s")
            await asyncio.sleep(0.05)
        return ids

    async def command_latency(self) -> None:
        s = self.sizes
        rtt = await self.round_trip_ceiling()
        runs = await self.park_slow_runs(s.latency_runs, s.latency_seconds)
        total = int(s.latency_rate * s.latency_seconds)
        sent: dict[str, float] = {}
        sent_ms: dict[str, int] = {}  # Redis time of the command's own entry
        async with self.cpu_report("latency"):
            t0 = time.perf_counter()
            for i in range(total):
                # Open loop: command i goes out at t0 + i/rate, whatever the replies do.
                delay = t0 + i / s.latency_rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                run_id = runs[i % len(runs)]
                stop = (i // len(runs)) % 2 == 0
                command: cmd.Command = (
                    cmd.StopRun(run_id=run_id, actor="bench")
                    if stop
                    else cmd.ContinueRun(run_id=run_id, actor="bench")
                )
                sent[command.command_id] = time.perf_counter()
                sent_ms[command.command_id] = entry_ms(await self.client.send(command))
            offered = total / (time.perf_counter() - t0)
            await self.watcher.wait({f"cmd:{c}" for c in sent}, "latency commands")
        await self.cancel(runs)
        lat = [(self.watcher.arrived[f"cmd:{c}"] - t) * 1000 for c, t in sent.items()]
        # The same span by Redis's clock (command entry id -> event's feed entry id): what
        # the worker took, without this client's own delays (ms resolution).
        server = [float(self.watcher.entry_ms[f"cmd:{c}"] - t) for c, t in sent_ms.items()]
        self.results.say(
            f"{total} Stop/Continue commands offered at {offered:.0f}/s over {len(runs)} runs: "
            f"p50 {percentile(lat, 0.5):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms, "
            f"max {max(lat):.2f} ms; by Redis's clock p50 {percentile(server, 0.5):.0f} ms, "
            f"p99 {percentile(server, 0.99):.0f} ms"
        )
        for q, target in ((0.5, None), (0.99, 20.0)):
            self.results.add(
                Figure(
                    f"command latency p{q * 100:.0f}",
                    percentile(lat, q),
                    "ms",
                    target=target,
                    higher_is_better=False,
                    ceiling=rtt[f"p{q * 100:.0f}"],
                    note="ceiling: sequential XADD+XREAD round trip, same percentile",
                )
            )

    async def cancel(self, run_ids: list[str]) -> None:
        cancels = [cmd.CancelRun(run_id=i, actor="bench") for i in run_ids]
        await self.send_all(cancels)
        await self.watcher.wait({f"{i}:RunCancelled" for i in run_ids}, "slow runs to cancel")

    # --- 3./4. effects, compensations, memory ------------------------------------------
    async def effects(self) -> None:
        n_items = self.sizes.effect_items
        run_id = new_id()
        used_before = (await self.redis.info("memory"))["used_memory"]
        async with self.cpu_report("effects"):
            await self.client.send(
                cmd.StartRun(
                    run_id=run_id,
                    actor="bench",
                    scenario="synthetic",
                    args={"items": n_items, "edges_per_item": 2},
                )
            )
            await self.wait_terminal(run_id, {"RunSucceeded", "RunFailed"})
        used_after = (await self.redis.info("memory"))["used_memory"]
        summary = await self.client.get(run_id)
        if summary.state != "succeeded":
            raise BenchError(f"the effects run ended {summary.state}: {summary.error}")
        applied = summary.effects["applied"]
        history = await self.client.history(run_id)
        seconds = at_of(history, "RunSucceeded") - at_of(history, "RunStarted")
        chunks = effect_chunks(history)
        ceiling = await self.hset_ceiling(chunks)
        self.results.say(
            f"{n_items} items -> {applied} effects in {len(chunks)} chunks, "
            f"{seconds:.2f}s RunStarted..RunSucceeded"
        )
        self.results.add(
            Figure(
                "effects applied/s",
                applied / seconds,
                "eff/s",
                target=20_000,
                ceiling=ceiling,
                note="ceiling: raw HSETs of value and stamp (best of pipelined and multi-field)",
            )
        )
        await self.memory(run_id, applied, used_after - used_before)
        await self.revert(run_id, ceiling)

    async def wait_terminal(self, run_id: str, kinds: set[str]) -> None:
        """Until any one of ``kinds`` arrives for the run."""
        tasks = [
            asyncio.create_task(self.watcher.wait({f"{run_id}:{k}"}, f"{k} of {run_id}"))
            for k in kinds
        ]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()

    async def memory(self, run_id: str, effects: int, used_delta: int) -> None:
        key = self.keys.events(run_id)
        stream_bytes = await self.redis.memory_usage(key, samples=0) or 0
        raw = sum(len(f[Fields.EVENT]) for _, f in replies.entries(await self.redis.xrange(key)))
        self.results.say(
            f"memory: events stream {stream_bytes:,} B ({stream_bytes / effects:.0f} B/effect; "
            f"its JSON payload alone {raw / effects:.0f} B/effect); used_memory grew "
            f"{used_delta:,} B = {used_delta / effects:.0f} B/effect (history + network "
            "elements and stamps + feed + read model)"
        )
        self.results.add(
            Figure(
                "memory/effect: run's events stream",
                stream_bytes / effects,
                "B",
                target=512,
                higher_is_better=False,
                ceiling=raw / effects,
                note="MEMORY USAGE of the run's events key; ceiling: its JSON payload bytes",
            )
        )
        self.results.add(
            Figure(
                "memory/effect: used_memory delta",
                used_delta / effects,
                "B",
                higher_is_better=False,
                note="INFO used_memory growth over the run: also the network data, the feed...",
            )
        )

    async def revert(self, run_id: str, ceiling: float) -> None:
        async with self.cpu_report("revert"):
            await self.client.send(cmd.RevertRun(run_id=run_id, actor="bench"))
            await self.wait_terminal(run_id, {"RunReverted"})
        summary = await self.client.get(run_id)
        history = await self.client.history(run_id)
        seconds = at_of(history, "RunReverted") - at_of(history, "RevertStarted")
        compensated = summary.effects["compensated"]
        self.results.say(
            f"revert: {compensated} compensated, {summary.effects['skipped']} skipped in "
            f"{seconds:.2f}s RevertStarted..RunReverted"
        )
        self.results.add(
            Figure(
                "compensations/s",
                compensated / seconds,
                "eff/s",
                target=20_000,
                ceiling=ceiling,
                note="ceiling: as for effects applied/s",
            )
        )

    async def log_lines(self) -> None:
        """Log lines appended per second by one worker: a run whose items each log 20
        lines (one node each, no edges), RunStarted..RunSucceeded."""
        per_item = 20
        run_id = new_id()
        async with self.cpu_report("logs"):
            await self.client.send(
                cmd.StartRun(
                    run_id=run_id,
                    actor="bench",
                    scenario="synthetic",
                    args={"items": self.sizes.log_items, "edges_per_item": 0, "log_lines": 20},
                )
            )
            await self.wait_terminal(run_id, {"RunSucceeded", "RunFailed"})
        summary = await self.client.get(run_id)
        if summary.state != "succeeded":
            raise BenchError(f"the logging run ended {summary.state}: {summary.error}")
        history = await self.client.history(run_id)
        seconds = at_of(history, "RunSucceeded") - at_of(history, "RunStarted")
        lines = self.sizes.log_items * per_item
        dropped, kept = await self.client.logs(run_id)
        if dropped + len(kept) != lines:
            raise BenchError(f"{lines} lines logged, but {dropped} dropped + {len(kept)} kept")
        ceiling = await self.xadd_lines_ceiling(lines)
        self.results.say(
            f"{lines} log lines ({len(kept)} kept, {dropped} dropped) in {seconds:.2f}s "
            "RunStarted..RunSucceeded"
        )
        self.results.add(
            Figure(
                "log lines appended/s",
                lines / seconds,
                "lines/s",
                target=50_000,
                ceiling=ceiling,
                note="ceiling: raw pipelined XADDs of the same lines, 10,000 per pipeline",
            )
        )

    async def xadd_lines_ceiling(self, lines: int) -> float:
        scratch = f"{self.keys.prefix}:bench:loglines"
        t0 = time.perf_counter()
        for start in range(0, lines, 10_000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for n in range(start, min(lines, start + 10_000)):
                    pipe.xadd(scratch, {"t": "1.0", "l": f"item {n // 20} line {n % 20}"})
                await pipe.execute()
        rate = lines / (time.perf_counter() - t0)
        await self.redis.delete(scratch)
        self.results.say(f"raw: pipelined XADD {rate:,.0f} lines/s")
        return rate


def entry_ms(entry_id: bytes | str) -> int:
    """The Redis server time (ms) in a stream entry id."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def at_of(history: list[tuple[str, ev.Event]], kind: str) -> float:
    """``at`` of the last event of this type in a run's history."""
    for _, event in reversed(history):
        if ev.event_type(event) == kind:
            return event.at
    raise BenchError(f"no {kind} in the run's history")


def effect_chunks(history: list[tuple[str, ev.Event]]) -> list[list[tuple[str, str]]]:
    """(element, after) of every effect the run applied, chunk by chunk."""
    return [
        [(e.element, e.after) for e in event.effects]
        for _, event in history
        if isinstance(event, ev.ChunkPrepared)
    ]


# ----------------------------------------------------------------------------- report
def fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_columns(rows: Sequence[Sequence[str]]) -> None:
    """Rows as left-aligned columns, the first a header underlined; a blank line around."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()


def print_table(results: Results) -> None:
    rows = [("figure", "value", "target", "ceiling", "ratio", "result")]
    for f in results.figures:
        bound = "≥ " if f.higher_is_better else "≤ "
        target = "-" if f.target is None else bound + fmt(f.target, f.unit)
        passed = {True: "PASS", False: "FAIL", None: "-"}[f.passed]
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        rows.append((f.name, fmt(f.value, f.unit), target, fmt(f.ceiling, f.unit), ratio, passed))
    print_columns(rows)
    for f in results.figures:
        if f.note:
            print(f"  {f.name}: {f.note}")


def summarize_worker_log(path: Path) -> list[str]:
    """Counts of the worker's log lines by level and event name, and its first warnings."""
    levels: Counter[str] = Counter()
    events: Counter[str] = Counter()
    problems: list[str] = []
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            levels["non-json"] += 1
            continue
        level = str(record.get("level", "?"))
        levels[level] += 1
        events[str(record.get("event", "?"))] += 1
        if level in ("warning", "error", "critical") and len(problems) < 5:
            problems.append(line[:300])
    out = [
        f"worker log: {len(lines)} lines, by level {dict(levels)}",
        "worker log events: " + ", ".join(f"{k} {v}" for k, v in events.most_common(8)),
    ]
    out += [f"worker log problem: {p}" for p in problems]
    return out


# ----------------------------------------------------------------------------- main
async def run_bench(settings: Settings, worker: Worker, sizes: Sizes, results: Results) -> None:
    url = settings.redis_url
    async with Client.connect(url, settings) as client:
        # Its own connection pool: the feed reader never waits behind the senders.
        watcher = FeedWatcher(open_redis(settings), client.keys, worker)
        await watcher.start()
        bench = Bench(client, watcher, worker, sizes, results)
        try:
            await bench.warm_up()
            finished = await bench.runs_per_second()
            await bench.commands_per_second(finished)
            await bench.command_latency()
            await bench.effects()
            await bench.log_lines()
        finally:
            await watcher.stop()
            await watcher.redis.aclose()
            if watcher.rejections:
                results.say(
                    f"WARNING: {len(watcher.rejections)} commands rejected, e.g. "
                    f"{watcher.rejections[0]}"
                )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (under a minute)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument("--logs", type=Path, metavar="DIR", help="keep the logs in this dir")
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec"),
        default="always",
        help="Redis AOF fsync policy (default: always, as in production)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    results = Results()
    failure = ""
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="runstream-bench-") as tmp:
        server = EmbeddedRedis(port=0, data_dir=Path(tmp) / "redis", appendfsync=args.appendfsync)
        print(
            f"runstream bench ({'quick' if args.quick else 'full'}): redis-server "
            f"{'.'.join(map(str, server.version))} ({server.origin}) on port {server.port}, "
            f"appendonly yes, appendfsync {args.appendfsync}; 1 worker; prefix {prefix}",
            flush=True,
        )
        print(f"  {machine_load()}", flush=True)
        # The worker and we read RUNSTREAM_* from our environment: the same settings.
        settings = msgspec.structs.replace(
            load_settings(),
            redis_url=server.url,
            prefix=prefix,
            log_format="json",
            # Parked slow runs (latency phase) would otherwise hold shutdown for 10 s.
            shutdown_grace_s=2.0,
        )
        with server, Worker(settings, Path(tmp) / "worker.log") as worker:
            try:
                asyncio.run(run_bench(settings, worker, sizes, results))
            except BenchError as exc:
                failure = scrub(str(exc))  # still print what was measured until then
            finally:
                worker.stop()
                for line in summarize_worker_log(worker.log_path):
                    print(f"  {line}")
                if args.logs:
                    keep_logs(args.logs, worker.log_path, server.log_path)
    print_table(results)
    print(f"{machine_load()}; total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(to_json(results, args, sizes, failure), indent=2) + "\n")
    if failure:
        print(f"\nbench failed: {failure}", file=sys.stderr)
        return 1
    return 0


def keep_logs(target: Path, *logs: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for log in logs:
        if log.exists():
            shutil.copy(log, target / log.name)
    print(f"  logs kept in {target}")


def machine_load() -> str:
    """Other processes compete for the same cores and disk: say how busy the machine is."""
    one, five, _ = os.getloadavg()
    return f"machine: {os.cpu_count()} CPUs, load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def to_json(
    results: Results, args: argparse.Namespace, sizes: Sizes, failure: str
) -> dict[str, Any]:
    return {
        "mode": "quick" if args.quick else "full",
        "failure": failure,
        "appendfsync": args.appendfsync,
        "sizes": sizes.__dict__,
        "figures": [
            {**{k: _finite(v) for k, v in f.__dict__.items()}, "ratio": f.ratio, "passed": f.passed}
            for f in results.figures
        ],
        "ceilings": results.ceilings,
        "info": results.info,
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: worker and Redis stopped, temp dir removed", file=sys.stderr)
        sys.exit(130)
