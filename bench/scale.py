"""Scale-out benchmark: runstream with 1, 2 and 4 worker processes, on one Redis and on a
local 3-master Redis Cluster (DESIGN.md, "Throughput"; issue 10).

    .venv/bin/python bench/scale.py [--quick] [--workers 1,2,4] [--redis single,cluster]
                                    [--json FILE]

For each Redis and worker count, on a fresh prefix, it measures as bench/run.py does (its
feed watcher and load generation, reused):

  runs/s      one-item synthetic runs, StartRun published -> RunSucceeded seen
  commands/s  DeleteRun of those (finished) runs: command handling alone
  effects/s   several synthetic runs at once (a run is driven by one worker at a time, so
              more workers need more runs): effects applied / first start..last success

and the CPU each worker process and each redis-server used in each phase (/proc/<pid>/stat
utime+stime, before and after), so the bottleneck shows: the workers at a core each, or
Redis. Then the coordination cost: one worker with 1,000 active runs that are idle (in a
long first item) or waiting their turn, whose CPU is all leases, scans, claims and upkeep;
with py-spy installed (``.venv/bin/pip install py-spy``; not a dependency) also where that
CPU goes.

Redis: AOF with appendfsync everysec on both (one server, and every cluster master), so
the disk is not what is measured. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import QUICK as RUN_SIZES  # Bench's own phases are not used here
from bench.run import (
    Bench,
    BenchError,
    FeedWatcher,
    Results,
    Worker,
    machine_load,
    print_columns,
    process_cpu_seconds,
    sigterm_as_exit,
)

from runstream.client import Client
from runstream.connect import open_redis
from runstream.contracts import commands as cmd
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.local_cluster import LocalCluster
from runstream.redis_url import scrub
from runstream.settings import Settings, load_settings


@dataclass(frozen=True)
class Sizes:
    runs: int  # one-item runs (runs/s), then their DeleteRuns (commands/s)
    effect_runs: int  # runs at once in the effects phase
    effect_items: int  # items of each (3 effects per item: a node and 2 edges)
    active_runs: int  # the coordination phase's active runs
    idle_seconds: float  # how long their worker's CPU is watched


FULL = Sizes(runs=1200, effect_runs=8, effect_items=1500, active_runs=1000, idle_seconds=10)
QUICK = Sizes(runs=300, effect_runs=4, effect_items=500, active_runs=300, idle_seconds=4)


# ----------------------------------------------------------------------------- redis
class Server:
    """One Redis, or a local cluster of 3 masters: its URL and its redis-server pids."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self._single: EmbeddedRedis | None = None
        self._cluster: LocalCluster | None = None
        if kind == "single":
            self._single = EmbeddedRedis(port=0, data_dir=directory, appendfsync="everysec")
        else:
            self._cluster = LocalCluster(directory, masters=3, replicas=0, appendonly=True)

    def __enter__(self) -> Server:
        if self._single is not None:
            self._single.__enter__()
        else:
            assert self._cluster is not None
            self._cluster.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._single is not None:
            self._single.stop()
        if self._cluster is not None:
            self._cluster.stop()

    @property
    def url(self) -> str:
        if self._single is not None:
            return self._single.url
        assert self._cluster is not None
        return self._cluster.url

    @property
    def pids(self) -> list[int]:
        if self._single is not None:
            return [self._single.pid]
        assert self._cluster is not None
        return [n.proc.pid for n in self._cluster.nodes if n.proc is not None]

    def describe(self) -> str:
        if self._single is not None:
            version = ".".join(map(str, self._single.version))
            return f"one redis-server {version} ({self._single.origin}), AOF everysec"
        return "a local Redis Cluster of 3 masters (no replicas), AOF everysec on each"


# ----------------------------------------------------------------------------- workers
class Fleet:
    """n worker processes, each its own worker name (lease owner, consumer)."""

    def __init__(self, settings: Settings, n: int, directory: Path) -> None:
        self.workers = [
            Worker(settings, directory / f"worker-{i}.log", name=f"scale-{i}") for i in range(n)
        ]

    def __enter__(self) -> Fleet:
        for worker in self.workers:
            worker.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.stop()

    def check_alive(self) -> None:
        for worker in self.workers:
            worker.check_alive()


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy so far, all cores (/proc/stat; NaN elsewhere):
    other processes compete for the same cores."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:]]
        idle = ticks[3] + ticks[4]  # idle, iowait
        return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass
class Cpu:
    """CPU seconds of each worker and each redis-server over a phase, of the whole machine,
    and its wall time."""

    workers: list[float]
    redis: list[float]
    machine: float
    wall: float

    def cores(self) -> tuple[float, float]:
        return sum(self.workers) / self.wall, sum(self.redis) / self.wall

    def describe(self) -> str:
        workers = " + ".join(f"{w / self.wall:.2f}" for w in self.workers)
        redis = " + ".join(f"{r / self.wall:.2f}" for r in self.redis)
        w, r = self.cores()
        return (
            f"CPU (cores): workers {w:.2f} ({workers}), redis {r:.2f} ({redis}); "
            f"machine {self.machine / self.wall:.2f} of {os.cpu_count()}"
        )


@contextlib.contextmanager
def cpu_split(fleet: Fleet, server: Server, out: list[Cpu]) -> Iterator[None]:
    """Appends to ``out`` the CPU each worker and each redis-server used in the block."""
    pids = [w.pid for w in fleet.workers]
    before = [process_cpu_seconds(p) for p in pids]
    redis_before = [process_cpu_seconds(p) for p in server.pids]
    machine_before = machine_busy_seconds()
    t0 = time.perf_counter()
    yield
    wall = time.perf_counter() - t0
    out.append(
        Cpu(
            [process_cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)],
            [process_cpu_seconds(p) - b for p, b in zip(server.pids, redis_before, strict=True)],
            machine_busy_seconds() - machine_before,
            wall,
        )
    )


# ----------------------------------------------------------------------------- phases
@dataclass
class Row:
    redis: str
    workers: int
    figures: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, Cpu] = field(default_factory=dict)


async def measure(settings: Settings, fleet: Fleet, server: Server, sizes: Sizes, row: Row) -> None:
    results = Results()  # bench.run's phases report into it; the rows here are ours
    async with Client.connect(settings.redis_url, settings) as client:
        watcher = FeedWatcher(open_redis(settings), client.keys, fleet)
        await watcher.start()
        # bench.run's load generation (send_all, run ids on every shard, warm-up), reused.
        bench = Bench(client, watcher, fleet.workers[0], RUN_SIZES, results)
        try:
            for _ in fleet.workers:  # a run per worker, likely: every one is up and warm
                await bench.warm_up()
            await runs_and_commands(bench, fleet, server, sizes, row)
            await effects(bench, fleet, server, sizes, row)
        finally:
            await watcher.stop()
            await watcher.redis.aclose()
            if watcher.rejections:
                print(
                    f"    WARNING: {len(watcher.rejections)} commands rejected, e.g. "
                    f"{watcher.rejections[0]}"
                )


async def runs_and_commands(
    bench: Bench, fleet: Fleet, server: Server, sizes: Sizes, row: Row
) -> None:
    ids = bench.run_ids_on_every_shard(sizes.runs)
    starts = [
        cmd.StartRun(run_id=i, actor="bench", scenario="synthetic", args={"items": 1}) for i in ids
    ]
    cpu: list[Cpu] = []
    with cpu_split(fleet, server, cpu):
        t0 = time.perf_counter()
        await bench.send_all(starts)
        await bench.watcher.wait({f"{i}:RunSucceeded" for i in ids}, f"{len(ids)} runs")
    elapsed = max(bench.watcher.arrived[f"{i}:RunSucceeded"] for i in ids) - t0
    row.figures["runs/s"] = len(ids) / elapsed
    row.cpu["runs/s"] = cpu[-1]

    deletes = [cmd.DeleteRun(run_id=i, actor="bench", mode="keep_effects") for i in ids]
    with cpu_split(fleet, server, cpu):
        t0 = time.perf_counter()
        await bench.send_all(deletes)
        await bench.watcher.wait({f"cmd:{c.command_id}" for c in deletes}, "the DeleteRuns")
    elapsed = max(bench.watcher.arrived[f"cmd:{c.command_id}"] for c in deletes) - t0
    row.figures["commands/s"] = len(deletes) / elapsed
    row.cpu["commands/s"] = cpu[-1]


async def effects(bench: Bench, fleet: Fleet, server: Server, sizes: Sizes, row: Row) -> None:
    ids = bench.run_ids_on_every_shard(sizes.effect_runs)
    starts = [
        cmd.StartRun(
            run_id=i,
            actor="bench",
            scenario="synthetic",
            args={"items": sizes.effect_items, "edges_per_item": 2},
        )
        for i in ids
    ]
    cpu: list[Cpu] = []
    with cpu_split(fleet, server, cpu):
        t0 = time.perf_counter()
        await bench.send_all(starts)
        await bench.watcher.wait({f"{i}:RunSucceeded" for i in ids}, "the effects runs")
    elapsed = max(bench.watcher.arrived[f"{i}:RunSucceeded"] for i in ids) - t0
    applied = 0
    for run_id in ids:
        summary = await bench.client.get(run_id)
        if summary.state != "succeeded":
            raise BenchError(f"an effects run ended {summary.state}: {summary.error}")
        applied += summary.effects["applied"]
    row.figures["effects/s"] = applied / elapsed
    row.cpu["effects/s"] = cpu[-1]


# ----------------------------------------------------------------------------- coordination
@dataclass
class Coordination:
    label: str
    driven: int
    waiting: int
    worker_cores: float
    redis_cores: float
    profile: list[str] = field(default_factory=list)


async def park_active_runs(settings: Settings, fleet: Fleet, n: int, driven: int) -> None:
    """n runs, each in a long first item (idle) or waiting for a slot; until ``driven`` of
    them hold a lease (the worker's slots are full) and the rest are queued."""
    async with Client.connect(settings.redis_url, settings) as client:
        ids = [new_id() for _ in range(n)]
        args = {"items": 1, "delay_ms": 60_000}
        for i in range(0, n, 100):
            await asyncio.gather(
                *(
                    client.send(
                        cmd.StartRun(run_id=r, actor="bench", scenario="synthetic", args=args)
                    )
                    for r in ids[i : i + 100]
                )
            )
        deadline = time.monotonic() + 60
        while True:
            fleet.check_alive()
            async with client.redis.pipeline(transaction=False) as pipe:
                for run_id in ids:
                    pipe.exists(client.keys.lease(run_id))
                    pipe.hexists(client.keys.index(client.keys.shard_of(run_id)), run_id)
                flags = await pipe.execute()
            leased, known = sum(flags[0::2]), sum(flags[1::2])
            if leased >= driven and known == n:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"only {leased} of {driven} runs driven, {known} of {n} queued")
            await asyncio.sleep(0.5)


def coordination(
    server: Server, directory: Path, base: Settings, sizes: Sizes, parallel: int
) -> Coordination:
    """One worker, ``sizes.active_runs`` active runs of which ``parallel`` are driven (idle
    in their first item) and the rest wait their turn: all its CPU is coordination."""
    settings = msgspec.structs.replace(
        base, prefix=f"scale{uuid.uuid4().hex[:6]}", max_parallel_runs=parallel
    )
    n = sizes.active_runs
    driven = min(parallel, n)
    with Fleet(settings, 1, directory) as fleet:
        asyncio.run(park_active_runs(settings, fleet, n, driven))
        time.sleep(2)  # the parking's own work (appends, first scans) is behind it
        cpu: list[Cpu] = []
        with cpu_split(fleet, server, cpu):
            profile = py_spy(fleet.workers[0].pid, sizes.idle_seconds)
        worker, redis = cpu[0].cores()
        return Coordination(
            f"{n} active: {driven} driven (idle in an item), {n - driven} waiting",
            driven,
            n - driven,
            worker,
            redis,
            profile,
        )


# Where a worker's coordination time goes: a sample counts for the innermost frame that
# names one of these (file or function; redis-py and asyncio frames under them count for
# them), else for "other".
GROUPS = (
    ("lease renewals", ("lease.py",)),
    ("scan for runs to take", ("_scan (", "_scan_forever", "_free_runs", "_start_in_order")),
    ("claims of idle commands (XAUTOCLAIM)", ("autoclaim",)),
    ("command reads (XREADGROUP)", ("xreadgroup", "_read_batch", "consume")),
    ("upkeep (trim, retention, heartbeat)", ("upkeep",)),
    ("metrics", ("metrics",)),
)
PY_SPY_RATE = 200
# Samples py-spy takes for busy but are waits: the event loop's select, and the parked
# runs' items sleeping in their threads (the synthetic scenario's delay).
WAITS = (("EpollSelector.select (", ""), ("select (", ""), ("_step (", "synthetic.py"))


def py_spy(pid: int, seconds: float) -> list[str]:
    """py-spy samples of the worker over ``seconds`` (else just that long a sleep), grouped
    by mechanism; a line saying why not when py-spy is not installed or may not attach."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        time.sleep(seconds)
        return ["py-spy not installed (.venv/bin/pip install py-spy): no breakdown"]
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        command = [exe, "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw"]
        command += ["-r", str(PY_SPY_RATE), "-o", out.name, "--nonblocking"]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            return [f"py-spy failed: {done.stderr.decode(errors='replace').strip()[:200]}"]
        return group_samples(Path(out.name).read_text(), PY_SPY_RATE * int(seconds))


def group_samples(collapsed: str, possible: int) -> list[str]:
    """py-spy's samples (taken only while a thread was busy) per mechanism."""
    groups: Counter[str] = Counter()
    others: Counter[str] = Counter()  # innermost frames of "other"
    total = waits = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(frames[-1].startswith(f) and file in frames[-1] for f, file in WAITS):
            waits += count
            continue
        total += count
        group = _group_of(frames)
        groups[group] += count
        if group.startswith("other"):
            others[" < ".join(f.split(" (")[0] for f in reversed(frames[-3:]))] += count
    if not total:
        return [f"py-spy: no busy samples ({waits} in waits)"]
    lines = [
        f"py-spy: {total} busy samples of {possible} possible "
        f"({100 * total / possible:.1f}% of a thread's time; {waits} more in waits), "
        "by mechanism:"
    ]
    lines += [f"  {group}: {100 * n / total:.0f}%" for group, n in groups.most_common()]
    lines += [
        f"    other, in {where}: {100 * n / total:.0f}%" for where, n in others.most_common(4)
    ]
    return lines


def _group_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        lowered = frame.lower()
        for group, words in GROUPS:
            if any(word in lowered for word in words):
                return group
    return "other (event loop, redis-py, logging...)"


# ----------------------------------------------------------------------------- report
FIGURES = ("runs/s", "commands/s", "effects/s")
# A second worker should give this much, while Redis has CPU to spare.
SCALE_TARGET = 1.6
COORDINATION_TARGET = 0.10  # of one core
SATURATED = 0.9  # of every core: no CPU to spare


def print_rows(rows: list[Row]) -> list[str]:
    """The table of figures (and ratios to 1 worker on the same Redis), then the CPU split;
    returns the verdict lines."""
    header = ["redis", "workers", *(f"{f}  (x1)" for f in FIGURES)]
    table = [header]
    for row in rows:
        base = next((r for r in rows if r.redis == row.redis and r.workers == 1), None)
        cells = [row.redis, str(row.workers)]
        for f in FIGURES:
            value = row.figures.get(f, float("nan"))
            ratio = value / base.figures[f] if base and f in base.figures else float("nan")
            cells.append(f"{value:,.0f}  ({ratio:.2f})")
        table.append(cells)
    print_columns(table)
    for row in rows:
        for f in FIGURES:
            if f in row.cpu:
                print(f"  {row.redis}, {row.workers} worker(s), {f}: {row.cpu[f].describe()}")
    verdicts: list[str] = []
    for row in rows:
        base = next((r for r in rows if r.redis == row.redis and r.workers == 1), None)
        if row.workers != 2 or base is None:
            continue
        for f in FIGURES:
            if f not in row.figures or f not in base.figures:
                continue
            ratio = row.figures[f] / base.figures[f]
            cpu = row.cpu[f]
            w, r = cpu.cores()
            machine = cpu.machine / cpu.wall
            # The target holds while CPU is to spare: not when the machine was saturated.
            spare = machine < SATURATED * (os.cpu_count() or 1)
            verdict = "PASS" if ratio >= SCALE_TARGET else ("FAIL" if spare else "n/a")
            verdicts.append(
                f"{row.redis} {f}: 2 workers {ratio:.2f}x of 1 (target >= {SCALE_TARGET}x "
                f"while CPU is to spare; workers {w:.2f} + redis {r:.2f} cores, machine "
                f"{machine:.2f} of {os.cpu_count()}): {verdict}"
                + ("" if spare or verdict == "PASS" else " (machine saturated)")
            )
    return verdicts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--redis", default="single,cluster", help="single, cluster or both")
    parser.add_argument("--no-coordination", action="store_true", help="skip that phase")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    counts = [int(n) for n in args.workers.split(",") if n.strip()]  # "": coordination only
    kinds = [k.strip() for k in args.redis.split(",")]
    started = time.perf_counter()
    rows: list[Row] = []
    coordinations: list[Coordination] = []
    failure = ""
    print(
        f"runstream scale bench ({'quick' if args.quick else 'full'}): workers {counts}, "
        f"redis {kinds}; {sizes}",
        flush=True,
    )
    print(f"  {machine_load()}", flush=True)
    with sigterm_as_exit(), tempfile.TemporaryDirectory(prefix="runstream-scale-") as tmp:
        try:
            for kind in kinds:
                with Server(kind, Path(tmp) / kind) as server:
                    print(f"  {kind}: {server.describe()}", flush=True)
                    base = msgspec.structs.replace(
                        load_settings(),
                        redis_url=server.url,
                        log_format="json",
                        shutdown_grace_s=2.0,
                    )
                    for n in counts:
                        row = Row(kind, n)
                        settings = msgspec.structs.replace(
                            base, prefix=f"scale{uuid.uuid4().hex[:6]}"
                        )
                        directory = Path(tmp) / f"{kind}-{n}"
                        directory.mkdir()
                        t0 = time.perf_counter()
                        with Fleet(settings, n, directory) as fleet:
                            asyncio.run(measure(settings, fleet, server, sizes, row))
                        rows.append(row)
                        print(
                            f"  {kind}, {n} worker(s): "
                            + ", ".join(f"{f} {v:,.0f}" for f, v in row.figures.items())
                            + f" ({time.perf_counter() - t0:.0f}s)",
                            flush=True,
                        )
                    if kind == "single" and not args.no_coordination:
                        for parallel in (base.max_parallel_runs, sizes.active_runs):
                            directory = Path(tmp) / f"coordination-{parallel}"
                            directory.mkdir()
                            found = coordination(server, directory, base, sizes, parallel)
                            coordinations.append(found)
                            print(
                                f"  coordination, {found.label}: worker "
                                f"{found.worker_cores:.3f} cores",
                                flush=True,
                            )
        except BenchError as exc:
            failure = scrub(str(exc))
    verdicts = print_rows(rows)
    print()
    for c in coordinations:
        verdict = "PASS" if c.worker_cores <= COORDINATION_TARGET else "FAIL"
        print(
            f"  coordination, {c.label}: worker {100 * c.worker_cores:.1f}% of a core "
            f"(target <= {100 * COORDINATION_TARGET:.0f}%): {verdict}; redis "
            f"{100 * c.redis_cores:.1f}% of a core"
        )
        for line in c.profile:
            print(f"    {line}")
    print()
    for line in verdicts:
        print(f"  {line}")
    print(f"{machine_load()}; total {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(to_json(rows, coordinations, verdicts, failure), indent=2))
    if failure:
        print(f"\nbench failed: {failure}", file=sys.stderr)
        return 1
    return 0


def to_json(
    rows: list[Row], coordinations: list[Coordination], verdicts: list[str], failure: str
) -> dict[str, Any]:
    return {
        "failure": failure,
        "rows": [
            {
                "redis": r.redis,
                "workers": r.workers,
                "figures": r.figures,
                "cpu": {f: c.__dict__ for f, c in r.cpu.items()},
            }
            for r in rows
        ],
        "coordination": [c.__dict__ for c in coordinations],
        "verdicts": verdicts,
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: workers and Redis stopped, temp dir removed", file=sys.stderr)
        sys.exit(130)
