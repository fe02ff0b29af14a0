"""The chaos suite's service and its havoc: configuration, the worker fleet (started and
stopped through ``runstream.processes``), a timeline of what was done when, and the chaos
itself (SIGKILLed workers; a crashed Redis, or on a cluster a killed master that its
replica replaces)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from runstream import processes
from runstream.client import Client
from runstream.connect import is_cluster, open_redis
from runstream.embedded import EmbeddedRedis
from runstream.local_cluster import LocalCluster
from runstream.processes import WorkerProcess
from runstream.settings import Settings

WORKERS = 3
SHARDS = 2
MAX_COMMAND_BYTES = 4096
SHUTDOWN_GRACE_S = 2.0
# A SIGTERMed worker must be gone within the grace period; this much more is allowed for
# the interpreter itself to exit (measured: well under it).
EXIT_SLACK_S = 1.0


# =========================================================================== configuration
@dataclass(frozen=True)
class ChaosConfig:
    seconds: float
    seed: int
    runs: int
    quiesce_timeout: float

    @classmethod
    def from_env(cls) -> ChaosConfig:
        seconds = float(os.environ.get("CHAOS_SECONDS", "") or 30)
        seed = int(os.environ.get("CHAOS_SEED", "") or random.SystemRandom().randrange(2**31))
        rng = random.Random(seed)
        # 30-60 runs in the default 30 s; proportionally more in a longer soak.
        runs = int(rng.randint(30, 60) * max(1.0, seconds / 30))
        return cls(seconds=seconds, seed=seed, runs=runs, quiesce_timeout=40 + seconds / 2)

    @property
    def pytest_timeout(self) -> float:
        return self.seconds + self.quiesce_timeout + 120


def chaos_settings(redis_url: str, prefix: str) -> Settings:
    """The service under chaos: quick leases, claims and chunks; workers and driver alike."""
    return Settings(
        redis_url=redis_url,
        prefix=prefix,
        shards=SHARDS,
        lease_ms=1500,
        claim_idle_ms=1000,
        chunk_seconds=0.05,
        chunk_items=50,
        max_deliveries=50,
        max_command_bytes=MAX_COMMAND_BYTES,
        upkeep_interval_s=2.0,
        shutdown_grace_s=SHUTDOWN_GRACE_S,
        log_format="json",
        # RUNSTREAM_TEST_PARTITIONS=4: runs spread over partitions (two-phase commits).
        network_partitions=int(os.environ.get("RUNSTREAM_TEST_PARTITIONS", "0")),
    )


def chaos_redis(url: str) -> aredis.Redis:
    """A client that never retries on its own: every retry is the driver's, and counted.
    On a cluster, redis-py's own retries follow a failover (to the promoted replica)."""
    if is_cluster(Settings(redis_url=url)):
        return open_redis(Settings(redis_url=url), socket_timeout=3, socket_connect_timeout=1)
    return aredis.Redis.from_url(
        url, socket_timeout=3, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def keep_evidence(directory: Path, seed: int) -> Path:
    """Copy the worker and Redis logs somewhere pytest's temp-dir rotation won't delete."""
    kept = Path(tempfile.mkdtemp(prefix=f"runstream-chaos-{seed}-"))
    for path in directory.rglob("*"):
        if path.is_file():  # worker logs, Redis's log and its append-only files
            target = kept / path.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return kept


# =========================================================================== timeline
class Timeline:
    """What the chaos did and when (seconds since the start): the context for evidence."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.entries: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.entries.append((time.monotonic() - self.t0, what))

    def around(self, wall: float, window: float = 3.0) -> list[str]:
        """Entries within ``window`` s of a wall-clock time (an event's ``at``)."""
        t = wall - self.wall0
        return [f"t={s:6.2f}s {w}" for s, w in self.entries if abs(s - t) <= window]

    def text(self) -> str:
        return "\n".join(f"t={s:6.2f}s {w}" for s, w in self.entries)


# =========================================================================== workers
class WorkerProc(WorkerProcess):
    """A worker of the fleet, and what the chaos did to it."""

    killed = False
    terminated = False
    reported = False


class Fleet:
    """The worker processes: w0, w1, ... (a new name per process), logs in ``directory``."""

    def __init__(self, env: dict[str, str], directory: Path, timeline: Timeline) -> None:
        self.env = env
        self.directory = directory
        self.timeline = timeline
        self.procs: list[WorkerProc] = []
        self.kills = 0
        self.unexpected: list[str] = []

    def start(self) -> WorkerProc:
        name = f"w{len(self.procs)}"
        worker = WorkerProc(name, self.env, self.directory / f"worker-{name}.log")
        self.procs.append(worker)
        self.timeline.note(f"start {name} (pid {worker.pid})")
        return worker

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.procs if w.proc.poll() is None]

    def kill(self, worker: WorkerProc) -> None:
        worker.killed = True
        worker.kill()
        self.kills += 1
        self.timeline.note(f"SIGKILL {worker.name}")

    def check_exits(self) -> list[WorkerProc]:
        """Workers that exited without being told to: a worker must not die on its own."""
        dead = []
        for w in self.procs:
            if w.killed or w.terminated or w.reported or w.proc.poll() is None:
                continue
            w.reported = True
            dead.append(w)
            self.timeline.note(f"{w.name} EXITED on its own with {w.proc.returncode}")
            self.unexpected.append(
                f"worker {w.name} exited on its own with code {w.proc.returncode} after "
                f"{time.monotonic() - w.started:.1f}s; log tail:\n{w.log_tail(2500)}"
            )
        return dead

    def ensure(self, n: int) -> None:
        self.check_exits()
        for _ in range(n - len(self.alive())):
            self.start()

    def terminate_all(self, timeout: float) -> dict[str, tuple[int | None, float]]:
        """SIGTERM every live worker (once it is ready); each one's exit code (None: it
        had to be killed after ``timeout``) and how long it took."""
        live = self.alive()
        for w in live:
            w.terminated = True
        self.timeline.note(f"SIGTERM {', '.join(w.name for w in live)}")
        return processes.stop_all(live, grace=timeout)

    def close(self) -> None:
        for w in self.procs:
            w.close()

    def log_counts(self, names: Iterable[str]) -> Counter[str]:
        """How often each of ``names`` (log event names, or 'Traceback') appears in all logs."""
        counts: Counter[str] = Counter()
        for w in self.procs:
            for line in w.log().splitlines():
                if "Traceback" in line:
                    counts["Traceback"] += 1
                if "Task exception was never retrieved" in line:
                    counts["Task exception was never retrieved"] += 1
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line).get("event", "")
                except ValueError:
                    continue
                if event in names:
                    counts[event] += 1
        return counts

    def grep(self, needle: str, limit: int = 20) -> list[str]:
        hits = []
        for w in self.procs:
            for line in w.log().splitlines():
                if needle in line:
                    hits.append(f"[{w.name}] {line[:600]}")
        return hits[:limit]


# =========================================================================== Redis crashes
@dataclass(frozen=True)
class Failover:
    """A master killed (wall-clock times): what it acknowledged just before ``killed_at``
    may be lost (replication is asynchronous); from ``promoted_at`` its replica serves."""

    port: int
    killed_at: float
    promoted_at: float


class ServerCrash:
    """One server: SIGKILL, then start it again on its append-only file (appendfsync
    always: nothing acknowledged is lost)."""

    calm_s = 0.0  # crashes until the end of the chaos phase
    gap_s = (6.0, 10.0)  # from one crash (its start) to the next
    failovers: tuple[Failover, ...] = ()

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    async def crash(self, rng: random.Random, timeline: Timeline) -> None:
        self.server.kill()
        timeline.note("SIGKILL redis")
        await asyncio.sleep(rng.uniform(0.0, 0.6))
        # start() waits until the server answers PING (it has replayed its append-only file).
        await asyncio.to_thread(self.server.start)

    async def ensure_up(self) -> None:
        if not self.server.running:
            await asyncio.to_thread(self.server.start)


class MasterFailover:
    """A Redis Cluster (3 masters, a replica each): SIGKILL a master, wait for its replica
    to be promoted, then start the dead node again (it rejoins as the new master's replica,
    ready to be promoted in turn)."""

    # No master is killed in the chaos phase's last seconds: what is sent then is
    # acknowledged after the last failover, and held to every promise.
    calm_s = 10.0
    # A failover and the rejoin take several seconds: shorter gaps, for two or more.
    gap_s = (3.0, 5.0)

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.failovers: list[Failover] = []

    @property
    def url(self) -> str:
        return self.cluster.url

    async def crash(self, rng: random.Random, timeline: Timeline) -> None:
        victim = rng.choice(await asyncio.to_thread(self.cluster.master_ports))
        killed = time.time()
        self.cluster.kill(victim)
        timeline.note(f"SIGKILL master :{victim}")
        await asyncio.to_thread(self.cluster.wait_ok, 60)
        promoted = time.time()
        self.failovers.append(Failover(victim, killed, promoted))
        timeline.note(f"replica of :{victim} promoted after {promoted - killed:.2f}s")
        await asyncio.to_thread(self.cluster.restart, victim)
        await asyncio.to_thread(self.cluster.wait_ok, 60)
        timeline.note(f":{victim} back, as a replica")

    async def ensure_up(self) -> None:
        for node in self.cluster.nodes:
            await asyncio.to_thread(self.cluster.restart, node.port)
        await asyncio.to_thread(self.cluster.wait_ok, 60)


RedisCrash = ServerCrash | MasterFailover


# =========================================================================== chaos
@dataclass
class Chaos:
    rng: random.Random
    fleet: Fleet
    redis: RedisCrash
    timeline: Timeline
    client: Client
    redis_restarts: int = 0
    redis_down_s: float = 0.0
    busy_kills: int = 0

    async def busy_workers(self) -> set[str]:
        """Workers holding a run's lease right now: killing one interrupts a run mid-chunk."""
        keys, redis = self.client.keys, self.client.redis
        owners: set[str] = set()
        try:
            for shard in range(keys.shards):
                for run_id in await redis.zrange(keys.runnable(shard), 0, -1):
                    owner = await redis.get(keys.lease(text(run_id)))
                    if owner:
                        owners.add(text(owner))
        except (RedisError, OSError):
            pass
        return owners

    async def pick_victim(self) -> WorkerProc | None:
        alive = self.fleet.alive()
        if not alive:
            return None
        if self.rng.random() < 0.5:
            busy = await self.busy_workers()
            candidates = [w for w in alive if w.name in busy]
            if candidates:
                self.busy_kills += 1
                return self.rng.choice(candidates)
        return self.rng.choice(alive)

    async def run(self, stop_at: float) -> None:
        now = time.monotonic()
        next_kill = now + self.rng.uniform(1, 3)
        next_crash = now + self.rng.uniform(*self.redis.gap_s)
        while time.monotonic() < stop_at:
            now = time.monotonic()
            # A worker that died on its own is replaced too (and reported).
            for _ in self.fleet.check_exits():
                self.fleet.start()
            if now >= next_kill:
                victim = await self.pick_victim()
                if victim is not None:
                    self.fleet.kill(victim)
                self.fleet.start()
                next_kill = now + self.rng.uniform(1, 3)
            if now >= next_crash and now < stop_at - self.redis.calm_s:
                await self.crash_redis()
                next_crash = time.monotonic() + self.rng.uniform(*self.redis.gap_s)
            await asyncio.sleep(self.rng.uniform(0.01, 0.1))

    async def crash_redis(self) -> None:
        down = time.monotonic()
        await self.redis.crash(self.rng, self.timeline)
        self.redis_restarts += 1
        self.redis_down_s += time.monotonic() - down
        self.timeline.note(f"redis back after {time.monotonic() - down:.2f}s")


def text(value: Any) -> str:
    """A Redis reply (bytes) or anything else, as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
