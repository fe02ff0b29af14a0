"""Soak: a steady load for a long time, with periodic worker kills; memory at start and end.

    .venv/bin/python bench/soak.py [--seconds 3600] [--rate 5] [--kill-every 60]

Starts its own Redis (append-only, fsync always) and two workers. Every second it starts
``--rate`` small synthetic runs, and deletes (with revert) the runs that have finished,
so a healthy service holds a flat amount of data. Every ``--kill-every`` seconds it
SIGKILLs a worker and starts a new one. It samples Redis memory and the workers' resident
memory each minute and prints the first and last samples and the counts at the end;
it fails (exit 1) if a run is stuck or the run count grows without bound.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis

from runstream import processes
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.embedded import EmbeddedRedis
from runstream.processes import WorkerProcess, worker_env
from runstream.settings import Settings, load_settings


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Workers:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[WorkerProcess] = []
        self.started = 0

    def start(self) -> None:
        self.started += 1
        name = f"soak-{self.started}"
        self.procs.append(WorkerProcess(name, self.env, self.logs / f"worker-{name}.log"))

    def kill_one(self) -> None:
        victim = self.procs.pop(random.randrange(len(self.procs)))
        victim.close()
        self.start()

    def stop(self) -> list[int | None]:
        procs, self.procs = self.procs, []
        exits = processes.stop_all(procs, grace=30)
        for p in procs:
            p.close()
        return [code for code, _ in exits.values()]


async def soak(args: argparse.Namespace, redis_url: str, logs: Path) -> int:
    prefix = f"soak{uuid.uuid4().hex[:6]}"
    # The workers and we read RUNSTREAM_* from our environment: the same settings.
    settings = msgspec.structs.replace(load_settings(), redis_url=redis_url, prefix=prefix)
    env = worker_env(
        msgspec.structs.replace(
            settings, log_format="json", upkeep_interval_s=5.0, stale_consumer_ms=120_000
        )
    )
    workers = Workers(env, logs)
    try:
        return await _soak(args, settings, workers)
    finally:
        workers.stop()  # also on Ctrl-C or an error: no worker outlives the soak


@dataclass
class Tally:
    started: int = 0
    kills: int = 0
    client_errors: int = 0
    held: set[str] = field(default_factory=set)


async def _tick(client: Client, args: argparse.Namespace, tally: Tally) -> None:
    """One second of load: start runs, delete (with revert) the ones that finished."""
    for _ in range(args.rate):
        tally.held.add(await client.start_nowait("synthetic", {"items": 200, "edges_per_item": 2}))
        tally.started += 1
    for run in await client.list_runs():
        if run.state in ("succeeded", "failed", "cancelled", "stopped"):
            await client.send(cmd.DeleteRun(run_id=run.id, mode="revert", actor="soak"))
    tally.held = {r.id for r in await client.list_runs()}


async def _soak(args: argparse.Namespace, settings: Settings, workers: Workers) -> int:
    for _ in range(2):
        workers.start()
    samples: list[dict[str, float]] = []
    tally = Tally()
    t0 = time.monotonic()
    next_kill = t0 + args.kill_every
    next_sample = t0
    async with Client.connect(settings=settings) as client:
        while time.monotonic() - t0 < args.seconds:
            tick = time.monotonic()
            try:
                await _tick(client, args, tally)
                if tick >= next_sample:
                    samples.append(await _sample(client, workers, tally, tick - t0))
                    next_sample = tick + 60
            except (OSError, redis.RedisError) as exc:
                # The load generator's own connection failing is not the service failing:
                # count it, say it, carry on.
                tally.client_errors += 1
                print(f"t={tick - t0:>5.0f}s load generator: {type(exc).__name__}: {exc}")
            if tick >= next_kill:
                workers.kill_one()
                tally.kills += 1
                next_kill = tick + args.kill_every
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        # Drain: everything started must end deleted.
        deadline = time.monotonic() + 120
        while (held := await client.list_runs()) and time.monotonic() < deadline:
            for run in held:
                if run.state in ("succeeded", "failed", "cancelled", "stopped"):
                    await client.send(cmd.DeleteRun(run_id=run.id, mode="revert", actor="soak"))
            await asyncio.sleep(1)
        left = await client.list_runs()
        info = await client.redis.info("memory")
    codes = workers.stop()
    # The first sample is taken while the workers are still importing: start from the second.
    first, last = samples[min(1, len(samples) - 1)], samples[-1]
    print(
        f"\nsoak {args.seconds:.0f}s: {tally.started} runs started, "
        f"{tally.started - len(left)} deleted after revert, {len(left)} left, "
        f"{tally.kills} workers killed, worker exit codes {codes}, "
        f"{tally.client_errors} load-generator errors"
    )
    print(
        f"redis used memory: {first['redis_used_mib']:.1f} MiB at t={first['t']:.0f}s, "
        f"{last['redis_used_mib']:.1f} MiB at the last sample, "
        f"{info['used_memory'] / 2**20:.1f} MiB after draining"
    )
    print(
        f"workers' resident memory: {first['workers_rss_mib']:.1f} MiB at t={first['t']:.0f}s, "
        f"{last['workers_rss_mib']:.1f} MiB at the last sample"
    )
    return 1 if left else 0


async def _sample(client: Client, workers: Workers, tally: Tally, at: float) -> dict[str, float]:
    info = await client.redis.info("memory")
    sample = {
        "t": round(at),
        "redis_used_mib": info["used_memory"] / 2**20,
        "workers_rss_mib": sum(rss_kib(p.pid) for p in workers.procs) / 1024,
        "runs_held": len(tally.held),
    }
    print(
        f"t={sample['t']:>5}s redis={sample['redis_used_mib']:.1f} MiB "
        f"workers={sample['workers_rss_mib']:.1f} MiB runs held={len(tally.held)} "
        f"started={tally.started} kills={tally.kills}",
        flush=True,
    )
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--rate", type=int, default=5, help="runs started per second")
    parser.add_argument("--kill-every", type=float, default=60)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="runstream-soak-") as tmp,
        EmbeddedRedis(port=0, data_dir=Path(tmp) / "redis") as server,
    ):
        logs = Path(tmp) / "logs"
        logs.mkdir()
        code = asyncio.run(soak(args, server.url, logs))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
