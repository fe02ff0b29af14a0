"""The machinery of the chaos suite: worker processes to kill, a Redis to crash, a load
of commands (duplicates and garbage included) to publish through it all, and checks that
read nothing but Redis data afterwards.

``test_chaos.py`` strings these together; everything that decides whether runstream kept
its promises lives in the ``check_*`` functions at the end, each returning the problems it
found (with the evidence: command ids, run ids, history excerpts) rather than raising, so
one run of the suite reports every broken promise at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from runstream import processes
from runstream.client import Client
from runstream.contracts import commands as cmd
from runstream.contracts import events as ev
from runstream.domain.run import RunState, apply, summarize
from runstream.domain.scenarios import Context
from runstream.embedded import EmbeddedRedis
from runstream.ids import new_id
from runstream.keys import Keys
from runstream.processes import WorkerProcess
from runstream.scenarios.synthetic import SCENARIO as SYNTHETIC
from runstream.scenarios.synthetic import SyntheticParams
from runstream.settings import Settings

WORKERS = 3
SHARDS = 2
MAX_COMMAND_BYTES = 4096
SHUTDOWN_GRACE_S = 2.0
# A SIGTERMed worker must be gone within the grace period; this much more is allowed for
# the interpreter itself to exit (measured: well under it).
EXIT_SLACK_S = 1.0
ACTIVE_STATES = ("queued", "running", "reverting")

# Event each command type leads to when it is accepted (DeleteRun --revert starts a revert).
ACCEPTED_EVENT: dict[str, tuple[str, ...]] = {
    "StartRun": ("RunQueued",),
    "StopRun": ("RunStopped",),
    "ContinueRun": ("RunContinued",),
    "CancelRun": ("RunCancelled",),
    "RevertRun": ("RevertStarted",),
    "DeleteRun": ("RunDeleted", "RevertStarted"),
}


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
    )


def chaos_redis(url: str) -> aredis.Redis:
    """A client that never retries on its own: every retry is the driver's, and counted."""
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


# =========================================================================== the ledger
@dataclass
class Sent:
    """One valid command: every stream entry that carries it, and what we expect of it."""

    command: cmd.Command
    data: bytes
    shard: int
    entries: list[str] = field(default_factory=list)
    failed_xadds: int = 0
    note: str = ""

    @property
    def kind(self) -> str:
        return cmd.command_type(self.command)


@dataclass
class Garbage:
    kind: str
    stream_shard: int
    fields: dict[str, bytes]
    nonce: bytes
    entries: list[str] = field(default_factory=list)
    failed_xadds: int = 0
    command_id: str = ""  # a garbage message that looks like a command carries one


@dataclass
class Ledger:
    sent: dict[str, Sent] = field(default_factory=dict)
    garbage: list[Garbage] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # run ids of StartRuns we sent
    never_started: set[str] = field(default_factory=set)
    duplicates: int = 0
    xadd_attempts: int = 0
    xadd_failures: int = 0

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.sent.values() if s.entries)


class Publisher:
    """XADD with retries until Redis accepts (an id comes back): Redis may be down."""

    def __init__(self, redis: aredis.Redis, keys: Keys, ledger: Ledger, timeline: Timeline):
        self.redis = redis
        self.keys = keys
        self.ledger = ledger
        self.timeline = timeline

    async def xadd(
        self, shard: int, fields: dict[str, bytes], deadline_s: float = 60
    ) -> tuple[str, int]:
        deadline = time.monotonic() + deadline_s
        failures = 0
        while True:
            self.ledger.xadd_attempts += 1
            try:
                entry = await self.redis.xadd(self.keys.commands(shard), fields)  # type: ignore[arg-type]
                return (entry.decode() if isinstance(entry, bytes) else str(entry)), failures
            except (RedisError, OSError) as exc:
                failures += 1
                self.ledger.xadd_failures += 1
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"Redis did not accept an XADD for {deadline_s:g}s: {exc!r}\n"
                        f"{self.timeline.text()}"
                    ) from exc
                await asyncio.sleep(0.05)

    async def send(self, command: cmd.Command, note: str = "") -> Sent:
        data = cmd.encode_command(command)
        assert len(data) <= MAX_COMMAND_BYTES, "a valid command must fit the limit"
        shard = self.keys.shard_of(command.run_id)
        sent = Sent(command, data, shard, note=note)
        self.ledger.sent[command.command_id] = sent
        entry, failures = await self.xadd(shard, {"c": data})
        sent.entries.append(entry)
        sent.failed_xadds += failures
        return sent

    async def republish(self, sent: Sent) -> None:
        """The very same message again (same bytes, same command_id)."""
        self.ledger.duplicates += 1
        entry, failures = await self.xadd(sent.shard, {"c": sent.data})
        sent.entries.append(entry)
        sent.failed_xadds += failures

    async def garbage(self, g: Garbage) -> None:
        self.ledger.garbage.append(g)
        entry, failures = await self.xadd(g.stream_shard, g.fields)
        g.entries.append(entry)
        g.failed_xadds += failures


# =========================================================================== the load
GARBAGE_KINDS = (
    "random_bytes",
    "json_wrong_shape",
    "unknown_field",
    "no_c_field",
    "oversized",
    "deeply_nested",
    "wrong_shard",
)


def make_garbage(kind: str, rng: random.Random, keys: Keys, some_run: str | None) -> Garbage:
    nonce = uuid.uuid4().hex.encode()
    shard = rng.randrange(keys.shards)
    cid = ""
    if kind == "random_bytes":
        # Not UTF-8, not JSON; the nonce keeps each payload unique.
        data = b"\xff\xfe" + os.urandom(rng.randint(1, 200)) + nonce
        fields = {"c": data}
    elif kind == "json_wrong_shape":
        shapes: list[Any] = [
            [1, 2, 3, nonce.decode()],
            {"type": "StopRun", "nonce": nonce.decode()},  # no run_id
            {"type": "Explode", "run_id": new_id(), "command_id": nonce.decode()},
            {"type": "StopRun", "run_id": "not-a-run-id", "command_id": nonce.decode()},
            {"type": "StopRun", "run_id": new_id(), "command_id": "bad id " + nonce.decode()},
            nonce.decode(),
        ]
        fields = {"c": json.dumps(rng.choice(shapes)).encode()}
    elif kind == "unknown_field":
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        body = json.loads(cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid)))
        body["surprise"] = nonce.decode()
        fields = {"c": json.dumps(body).encode()}
        shard = keys.shard_of(run_id)
    elif kind == "no_c_field":
        fields = {"x": b"no command here", "nonce": nonce}
    elif kind == "oversized":
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        body = json.loads(cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid)))
        body["reason"] = "x" * 5000
        fields = {"c": json.dumps(body).encode()}
        assert len(fields["c"]) > MAX_COMMAND_BYTES
        shard = keys.shard_of(run_id)
    elif kind == "deeply_nested":
        depth = 1900
        fields = {"c": b"[" * depth + b'"' + nonce + b'"' + b"]" * depth}
        assert len(fields["c"]) <= MAX_COMMAND_BYTES
    elif kind == "wrong_shard":
        # A valid command on the other shard's stream: must be parked, never applied.
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        fields = {"c": cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid))}
        shard = (keys.shard_of(run_id) + 1) % keys.shards
    else:
        raise ValueError(kind)
    return Garbage(kind, shard, fields, nonce, command_id=cid)


@dataclass
class Load:
    """The driver's state: which runs exist (as far as it knows) and duplicates to send."""

    config: ChaosConfig
    rng: random.Random
    publisher: Publisher
    ledger: Ledger
    keys: Keys
    scheduled: list[tuple[float, Sent]] = field(default_factory=list)

    def synthetic_args(self) -> dict[str, Any]:
        rng = self.rng
        items = rng.randint(100, 600)
        args: dict[str, Any] = {
            "items": items,
            "edges_per_item": rng.randint(0, 2),
            "delay_ms": rng.choice([0, 0.5, 1, 1]),
            "notify_every": rng.choice([0, 50]),
            "seed": rng.randrange(1000),
        }
        if rng.random() < 0.1:
            args["fail_at"] = rng.randrange(items)
        return args

    def maybe_duplicate(self, sent: Sent) -> None:
        r = self.rng.random()
        if r < 0.06:
            delay = 0.0  # the same message twice in a row: likely one batch, or two workers
        elif r < 0.22:
            delay = self.rng.uniform(0.2, 5.0)
        else:
            return
        self.scheduled.append((time.monotonic() + delay, sent))

    async def flush_duplicates(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [s for t, s in self.scheduled if everything or t <= now]
        self.scheduled = [(t, s) for t, s in self.scheduled if not (everything or t <= now)]
        for sent in due:
            await self.publisher.republish(sent)

    async def start_run(self) -> None:
        run_id = new_id()
        sent = await self.publisher.send(
            cmd.StartRun(
                run_id=run_id, scenario="synthetic", args=self.synthetic_args(), actor="chaos"
            )
        )
        self.ledger.started.append(run_id)
        self.maybe_duplicate(sent)

    async def control(self) -> None:
        rng = self.rng
        runs = self.ledger.started
        # Mostly the newest runs, so commands meet runs while they run.
        pick = rng.random()
        run_id = rng.choice(runs[-4:] if pick < 0.45 else runs[-25:] if pick < 0.8 else runs)
        r = rng.random()
        command: cmd.Command
        note = ""
        if r < 0.26:
            command = cmd.StopRun(run_id=run_id, actor="chaos", reason="chaos says stop")
        elif r < 0.50:
            command = cmd.ContinueRun(run_id=run_id, actor="chaos")
        elif r < 0.59:
            command = cmd.CancelRun(run_id=run_id, actor="chaos", reason="chaos says cancel")
        elif r < 0.76:
            command = cmd.RevertRun(run_id=run_id, actor="chaos", force=rng.random() < 0.3)
        elif r < 0.89:
            mode = rng.choice(["plain", "plain", "revert", "revert", "keep_effects"])
            command = cmd.DeleteRun(run_id=run_id, actor="chaos", mode=mode)  # type: ignore[arg-type]
        elif r < 0.93:
            # A run id no one ever started: rejected ("does not exist").
            ghost = new_id()
            self.ledger.never_started.add(ghost)
            command = cmd.StopRun(run_id=ghost, actor="chaos")
            note = "expect-reject"
        elif r < 0.96:
            # Start an existing run again (new command_id): rejected ("already exists"),
            # unless it overtakes the first StartRun (a crashed worker's pending one).
            command = cmd.StartRun(
                run_id=run_id, scenario="synthetic", args=self.synthetic_args(), actor="chaos"
            )
            note = "restart"
        else:
            # A new run with bad arguments or an unknown scenario: rejected, never exists.
            ghost = new_id()
            self.ledger.never_started.add(ghost)
            if rng.random() < 0.5:
                command = cmd.StartRun(run_id=ghost, scenario="synthetic", args={"items": -5})
            else:
                command = cmd.StartRun(run_id=ghost, scenario="no-such-scenario", args={})
            note = "expect-reject"
        sent = await self.publisher.send(command, note=note)
        self.maybe_duplicate(sent)

    async def garbage(self, kind: str | None = None) -> None:
        kind = kind or self.rng.choice(GARBAGE_KINDS)
        some_run = self.rng.choice(self.ledger.started) if self.ledger.started else None
        await self.publisher.garbage(make_garbage(kind, self.rng, self.keys, some_run))

    async def drive(self, stop_at: float) -> None:
        """Publish until ``stop_at``: runs spread over the first three quarters, commands
        over them throughout, duplicates as scheduled, and garbage now and then."""
        t0 = time.monotonic()
        span = max(1.0, (stop_at - t0) * 0.75)
        for kind in GARBAGE_KINDS:  # each kind of garbage at least once
            await self.garbage(kind)
        while time.monotonic() < stop_at:
            await self.flush_duplicates()
            due_runs = self.config.runs * min(1.0, (time.monotonic() - t0) / span)
            if len(self.ledger.started) < due_runs or not self.ledger.started:
                await self.start_run()
            elif self.rng.random() < 0.04:
                await self.garbage()
            else:
                await self.control()
            await asyncio.sleep(self.rng.uniform(0.0, 0.12))


# =========================================================================== chaos
@dataclass
class Chaos:
    rng: random.Random
    fleet: Fleet
    server: EmbeddedRedis
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
                    owner = await redis.get(keys.lease(_name(run_id)))
                    if owner:
                        owners.add(_name(owner))
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
        next_crash = now + self.rng.uniform(6, 10)
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
            if now >= next_crash:
                await self.crash_redis()
                next_crash = time.monotonic() + self.rng.uniform(6, 10)
            await asyncio.sleep(self.rng.uniform(0.01, 0.1))

    async def crash_redis(self) -> None:
        down = time.monotonic()
        self.server.kill()
        self.timeline.note("SIGKILL redis")
        await asyncio.sleep(self.rng.uniform(0.0, 0.6))
        # start() waits until the server answers PING (it has replayed its append-only file).
        await asyncio.to_thread(self.server.start)
        self.redis_restarts += 1
        self.redis_down_s += time.monotonic() - down
        self.timeline.note(f"redis back after {time.monotonic() - down:.2f}s")


# =========================================================================== quiescence
def _id_tuple(entry_id: Any) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def quiet_status(client: Client) -> list[str]:
    """What still moves: undelivered or unacked commands, active runs, runnable runs."""
    redis, keys = client.redis, client.keys
    busy: list[str] = []
    for shard in range(keys.shards):
        stream = keys.commands(shard)
        info = await redis.xinfo_stream(stream)
        groups = await redis.xinfo_groups(stream)
        group = next((g for g in groups if _name(g["name"]) == keys.group), None)
        if group is None:
            busy.append(f"shard {shard}: no '{keys.group}' group")
            continue
        last = _id_tuple(info["last-generated-id"])
        if group["pending"]:
            busy.append(f"shard {shard}: {group['pending']} pending")
        if _id_tuple(group["last-delivered-id"]) < last:
            busy.append(
                f"shard {shard}: undelivered (last-delivered {_name(group['last-delivered-id'])}, "
                f"last entry {_name(info['last-generated-id'])}, lag {group.get('lag')})"
            )
        runnable = await redis.zrange(keys.runnable(shard), 0, -1)
        if runnable:
            busy.append(f"shard {shard}: runnable {[_name(r) for r in runnable]}")
    active = [r for r in await client.list_runs() if r.state in ACTIVE_STATES]
    if active:
        busy.append(f"active runs: {[(r.id, r.state) for r in active]}")
    return busy


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def stuck_evidence(client: Client, busy: list[str]) -> str:
    """Why the service did not come to rest: pending entries and the active runs' tails."""
    redis, keys = client.redis, client.keys
    lines = ["still busy: " + "; ".join(busy)]
    for shard in range(keys.shards):
        with contextlib.suppress(RedisError):
            pending = await redis.xpending_range(
                keys.commands(shard), keys.group, min="-", max="+", count=20
            )
            for p in pending:
                lines.append(f"  shard {shard} pending {p}")
    for run in await client.list_runs():
        if run.state not in ACTIVE_STATES:
            continue
        lease = await redis.get(keys.lease(run.id))
        ttl = await redis.pttl(keys.lease(run.id))
        lines.append(f"  run {run.id} {run.state} lease={lease!r} pttl={ttl}")
        for eid, event in (await client.store.history(run.id))[-6:]:
            lines.append(f"    {eid} {_event_line(event)}")
    return "\n".join(lines)


def _event_line(event: ev.Event) -> str:
    data = msgspec.to_builtins(ev.slim(event))
    data.pop("at", None)
    text = json.dumps(data, sort_keys=True)
    return text[:300]


# =========================================================================== the data
@dataclass
class FeedEvent:
    entry_id: str
    shard: int
    run_id: str
    version: int
    event: ev.Event


@dataclass
class Data:
    """Everything the checks read, taken from Redis once the service is at rest."""

    feed: list[FeedEvent]
    dlq: list[tuple[int, str, dict[bytes, bytes]]]
    tombs: dict[str, dict[str, Any]]
    audit_runs: list[str]
    index: dict[str, Any]  # run_id -> RunSummary
    histories: dict[str, list[tuple[str, ev.Event]]]
    loaded: dict[str, RunState]
    summaries: dict[str, Any]
    values: dict[str, str]
    stamps: dict[str, str]
    outbox: list[dict[str, str]]
    leftover_events: dict[str, int]  # run_id -> events stream length for deleted runs


async def collect(client: Client) -> Data:
    redis, keys = client.redis, client.keys
    feed: list[FeedEvent] = []
    dlq: list[tuple[int, str, dict[bytes, bytes]]] = []
    tombs: dict[str, dict[str, Any]] = {}
    audit_runs: list[str] = []
    for shard in range(keys.shards):
        for entry_id, f in await redis.xrange(keys.feed(shard)):
            feed.append(
                FeedEvent(
                    _name(entry_id), shard, f[b"r"].decode(), int(f[b"v"]), ev.decode_event(f[b"e"])
                )
            )
        for entry_id, f in await redis.xrange(keys.dlq(shard)):
            dlq.append((shard, _name(entry_id), f))
        for run_id, raw in (await redis.hgetall(keys.tombs(shard))).items():
            tombs[_name(run_id)] = json.loads(raw)
        for _, f in await redis.xrange(keys.audit(shard)):
            audit_runs.append(f[b"run_id"].decode())
    index = {r.id: r for r in await client.list_runs()}
    histories: dict[str, list[tuple[str, ev.Event]]] = {}
    loaded: dict[str, RunState] = {}
    summaries: dict[str, Any] = {}
    for run_id in index:
        histories[run_id] = await client.store.history(run_id)
        loaded[run_id] = (await client.store.load(run_id)).state
        summaries[run_id] = await client.get(run_id)
    leftover = {}
    for run_id in tombs:
        n = await redis.xlen(keys.events(run_id))
        if n:
            leftover[run_id] = n
    values = {_name(k): _name(v) for k, v in (await redis.hgetall(keys.net_values)).items()}
    stamps = {_name(k): _name(v) for k, v in (await redis.hgetall(keys.net_stamps)).items()}
    outbox = [
        {"id": _name(i), **{_name(k): _name(v) for k, v in f.items()}}
        for i, f in await redis.xrange(keys.outbox)
    ]
    return Data(
        feed, dlq, tombs, audit_runs, index, histories, loaded, summaries, values, stamps,
        outbox, leftover,
    )  # fmt: skip


# =========================================================================== checks
@dataclass
class Findings:
    """Problems by category; ``lost`` and ``doubled`` are the headline figures."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    dlq: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)
    outbox: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # observations, not failures
    checked: Counter[str] = field(default_factory=Counter)  # what the checks covered

    def failures(self) -> dict[str, list[str]]:
        return {
            name: items
            for name, items in (
                ("lost", self.lost),
                ("doubled", self.doubled),
                ("dead letters", self.dlq),
                ("run state", self.state),
                ("network", self.network),
                ("outbox", self.outbox),
                ("workers", self.workers),
            )
            if items
        }


def _by_command(feed: list[FeedEvent]) -> dict[str, list[FeedEvent]]:
    out: dict[str, list[FeedEvent]] = defaultdict(list)
    for fe in feed:
        if fe.event.command_id:
            out[fe.event.command_id].append(fe)
    return out


def _feed_line(fe: FeedEvent) -> str:
    return f"{fe.entry_id} run={fe.run_id} v={fe.version} {_event_line(fe.event)}"


def check_commands(ledger: Ledger, data: Data, found: Findings) -> None:
    """1 and 2: every accepted command has exactly one outcome (or only rejections)."""
    by_cid = _by_command(data.feed)
    for cid, sent in ledger.sent.items():
        if not sent.entries:
            continue
        found.checked["commands: outcome checked"] += 1
        outcomes = by_cid.get(cid, [])
        if not outcomes:
            found.lost.append(
                f"{sent.kind} {cid} for run {sent.command.run_id} (stream entries "
                f"{sent.entries}, failed XADDs {sent.failed_xadds}): no event on the feed"
            )
            continue
        applied = [o for o in outcomes if not isinstance(o.event, ev.CommandRejected)]
        rejected = [o for o in outcomes if isinstance(o.event, ev.CommandRejected)]
        if len(applied) > 1:
            found.doubled.append(
                f"{sent.kind} {cid} applied {len(applied)} times:\n    "
                + "\n    ".join(_feed_line(o) for o in applied)
            )
        for o in applied:
            want = ACCEPTED_EVENT[sent.kind]
            if ev.event_type(o.event) not in want or o.run_id != sent.command.run_id:
                found.state.append(
                    f"{sent.kind} {cid} led to {ev.event_type(o.event)} for run {o.run_id}; "
                    f"expected one of {want} for {sent.command.run_id}"
                )
        for o in rejected:
            assert isinstance(o.event, ev.CommandRejected)
            if not o.event.reason or o.event.command_type != sent.kind:
                found.state.append(f"rejection of {cid} is malformed: {_feed_line(o)}")
        if sent.note == "expect-reject" and applied:
            found.state.append(
                f"{sent.kind} {cid} for run {sent.command.run_id} should have been rejected, "
                f"was applied: {_feed_line(applied[0])}"
            )
        if sent.note == "restart" and applied:
            found.notes.append(
                f"StartRun {cid} for existing run {sent.command.run_id} overtook the run's "
                "first StartRun (commands for one run, handled by two workers, in either order)"
            )
        if applied and rejected:
            first_rejected = min(r.entry_id for r in rejected)
            if _id_tuple(first_rejected) < _id_tuple(applied[0].entry_id) and all(
                "deleted" not in r.event.reason  # type: ignore[union-attr]
                for r in rejected
            ):
                found.notes.append(
                    f"{sent.kind} {cid} was first rejected, then applied by a re-published "
                    f"copy: {_feed_line(rejected[0])} / {_feed_line(applied[0])}"
                )
    # Garbage that looks like a command must never act.
    for g in ledger.garbage:
        if g.command_id and g.command_id in by_cid:
            found.doubled.append(
                f"garbage ({g.kind}) with command_id {g.command_id} produced events: "
                + "; ".join(_feed_line(o) for o in by_cid[g.command_id])
            )
    # Nothing on the feed names a command no one sent.
    known = set(ledger.sent)
    for cid, outcomes in by_cid.items():
        if cid not in known:
            found.doubled.append(
                f"events for a command_id no one sent ({cid}): {_feed_line(outcomes[0])}"
            )
    # Within each surviving run's history a command_id appears at most once.
    for run_id, history in data.histories.items():
        counts = Counter(e.command_id for _, e in history if e.command_id)
        for cid, n in counts.items():
            if n > 1:
                found.doubled.append(
                    f"command {cid} appears {n} times in the history of run {run_id}:\n    "
                    + "\n    ".join(
                        f"{i} {_event_line(e)}" for i, e in history if e.command_id == cid
                    )
                )


def check_dead_letters(ledger: Ledger, data: Data, found: Findings) -> None:
    """The DLQ holds exactly the garbage we sent, each with a reason; no valid command.

    Entries are told apart by shard and id: two shards' streams can hand out the same id.
    """
    by_source: dict[tuple[int, str], list[tuple[str, dict[bytes, bytes]]]] = defaultdict(list)
    for shard, letter_id, f in data.dlq:
        by_source[shard, f.get(b"source_id", b"").decode()].append((letter_id, f))
    garbage_entries = {(g.stream_shard, e): g for g in ledger.garbage for e in g.entries}
    valid_entries = {(s.shard, e): s for s in ledger.sent.values() for e in s.entries}

    def reason(f: dict[bytes, bytes]) -> str:
        return f.get(b"reason", b"").decode(errors="replace")

    for (shard, source), letters in by_source.items():
        where = f"shard {shard} entry {source}"
        for letter_id, f in letters:
            if not reason(f):
                found.dlq.append(f"dead letter {letter_id} ({where}) has no reason")
        if (shard, source) in valid_entries:
            s = valid_entries[shard, source]
            found.lost.append(
                f"valid {s.kind} {s.command.command_id} ({where}) was dead-lettered: "
                f"{reason(letters[0][1])}"
            )
        elif (shard, source) in garbage_entries:
            g = garbage_entries[shard, source]
            payload = letters[0][1].get(b"c", b"")
            if g.nonce not in payload and g.fields.get("c") != payload:
                found.dlq.append(f"dead letter for {where} ({g.kind}) lost its payload")
            if len(letters) > 1:
                found.dlq.append(
                    f"garbage {g.kind} ({where}) dead-lettered {len(letters)} times: "
                    + ", ".join(f"{lid} ({reason(f)[:80]})" for lid, f in letters)
                )
        else:
            # An entry we did not see accepted: a retried XADD whose first try landed.
            payload = letters[0][1].get(b"c", b"")
            g2 = next((g for g in ledger.garbage if g.nonce in payload), None)
            if g2 is None or not g2.failed_xadds:
                found.dlq.append(f"dead letter for unknown {where}: {reason(letters[0][1])[:200]}")
    for (shard, entry), g in garbage_entries.items():
        found.checked["garbage: dead letter checked"] += 1
        if (shard, entry) not in by_source:
            found.dlq.append(f"garbage {g.kind} (shard {shard} entry {entry}) is not in the DLQ")


def _fold(run_id: str, history: list[tuple[str, ev.Event]]) -> RunState:
    state = RunState(run_id=run_id)
    for _, event in history:
        apply(state, event)
    return state


def _diff(a: Any, b: Any) -> str:
    da, db = msgspec.to_builtins(a), msgspec.to_builtins(b)
    keys = sorted(set(da) | set(db))
    return ", ".join(f"{k}: {da.get(k)!r} != {db.get(k)!r}" for k in keys if da.get(k) != db.get(k))


@dataclass
class Replay:
    """A surviving run's confirmed chunks, replayed from its history."""

    values: dict[str, str]
    stamps: dict[str, str]
    notifications: list[str]
    items: int


def replay_history(run_id: str, history: list[tuple[str, ev.Event]], found: Findings) -> Replay:
    """Chunks in order: ranges contiguous from 0, effects numbered without overlap, each
    effect's recorded before-state the one the previous effects left."""
    prepared: dict[int, ev.ChunkPrepared] = {}
    resolved: set[int] = set()
    checkpoint = 0
    next_effect = 1
    values: dict[str, str] = {}
    stamps: dict[str, str] = {}
    notes: list[str] = []

    def bad(msg: str) -> None:
        tail = "\n    ".join(f"{i} {_event_line(e)}" for i, e in history[-8:])
        found.state.append(f"run {run_id}: {msg}\n    history tail:\n    {tail}")

    for entry_id, event in history:
        if isinstance(event, ev.ChunkPrepared):
            if event.chunk in prepared:
                bad(f"chunk {event.chunk} prepared twice ({entry_id})")
            if prepared and any(c not in resolved for c in prepared):
                bad(f"chunk {event.chunk} prepared while another is unresolved ({entry_id})")
            if event.items_from != checkpoint:
                bad(
                    f"chunk {event.chunk} starts at item {event.items_from}, "
                    f"checkpoint {checkpoint}"
                )
            if event.first_effect != next_effect:
                bad(
                    f"chunk {event.chunk} first effect {event.first_effect}, expected {next_effect}"
                )
            next_effect = event.first_effect + len(event.effects)
            prepared[event.chunk] = event
        elif isinstance(event, ev.ItemsProcessed | ev.ChunkVoided):
            p = prepared.get(event.chunk)
            if p is None or event.chunk in resolved:
                bad(
                    f"{ev.event_type(event)} of chunk {event.chunk} without a pending chunk "
                    f"({entry_id})"
                )
                continue
            resolved.add(event.chunk)
            if isinstance(event, ev.ChunkVoided):
                continue
            if (event.items_to, event.effects, event.irreversible) != (
                p.items_to, len(p.effects), len(p.notifications)
            ):  # fmt: skip
                bad(f"ItemsProcessed of chunk {event.chunk} does not match its ChunkPrepared")
            checkpoint = p.items_to
            for j, rec in enumerate(p.effects):
                stamp = ev.stamp_of(run_id, p.first_effect + j)
                if (values.get(rec.element, ""), stamps.get(rec.element, "")) != (
                    rec.before, rec.before_stamp
                ):  # fmt: skip
                    bad(
                        f"effect {p.first_effect + j} on {rec.element} records before "
                        f"{rec.before!r}/{rec.before_stamp!r}, but the run's own effects left "
                        f"{values.get(rec.element, '')!r}/{stamps.get(rec.element, '')!r}"
                    )
                if rec.after:
                    values[rec.element] = rec.after
                else:
                    values.pop(rec.element, None)
                stamps[rec.element] = stamp
            notes.extend(p.notifications)
    return Replay(values, stamps, notes, checkpoint)


def synthetic_network(
    run_id: str, args: dict[str, Any], items: int
) -> tuple[dict[str, str], list[str]]:
    """What ``items`` items of a synthetic run write, computed afresh (no Redis)."""
    params = msgspec.convert(args, SyntheticParams)
    params = msgspec.structs.replace(params, delay_ms=0, fail_at=-1)
    ctx = Context(run_id, lambda _element: None)
    for i in range(items):
        SYNTHETIC.step(ctx, params, i)
    values: dict[str, str] = {}
    for element, after in ctx.network.changes:
        if after:
            values[element] = after
        else:
            values.pop(element, None)
    return values, ctx.notifications


def namespace_of(element: str) -> str | None:
    """The run id an element belongs to: ``n:<R>:<i>`` / ``e:<R>:<i>|<R>:<j>``."""
    if element[:2] not in ("n:", "e:"):
        return None
    head = element[2:].split("|", 1)[0]
    run_id, sep, _ = head.partition(":")
    return run_id if sep else None


def check_runs(ledger: Ledger, data: Data, found: Findings) -> None:
    """3 and 4: every run's state is what its history says, and the network and outbox are
    exactly what its confirmed chunks wrote (or nothing, once reverted)."""
    feed_by_run: dict[str, list[FeedEvent]] = defaultdict(list)
    for fe in data.feed:
        if fe.version > 0:
            feed_by_run[fe.run_id].append(fe)
    queued = {
        r for r, evs in feed_by_run.items() if any(isinstance(f.event, ev.RunQueued) for f in evs)
    }

    # Every run that was queued is either still there or has a tombstone; nothing else is.
    for run_id in sorted(queued):
        if run_id not in data.index and run_id not in data.tombs:
            found.lost.append(f"run {run_id} was queued but is neither listed nor tombstoned")
    for run_id in data.index:
        if run_id not in queued:
            found.state.append(f"run {run_id} is listed but was never queued on the feed")
        if run_id in data.tombs:
            found.state.append(f"run {run_id} is both listed and tombstoned")
    for run_id in data.tombs:
        if run_id not in queued:
            found.state.append(f"tombstone for run {run_id} that was never queued")
        if not any(isinstance(f.event, ev.RunDeleted) for f in feed_by_run.get(run_id, [])):
            found.state.append(f"run {run_id} is tombstoned but RunDeleted is not on the feed")
    for run_id, n in data.leftover_events.items():
        found.state.append(f"deleted run {run_id} still has {n} events stored")
    for run_id, n in Counter(data.audit_runs).items():
        if n > 1:
            found.doubled.append(f"run {run_id} has {n} tombstones in the audit stream")
    for run_id in ledger.never_started:
        if run_id in queued:
            found.state.append(f"run {run_id} was started by a command that should be rejected")

    for run_id, evs in feed_by_run.items():
        n = sum(1 for f in evs if isinstance(f.event, ev.RunQueued))
        if n > 1:
            found.doubled.append(f"run {run_id} was queued {n} times")

    # The feed carries each version of each run exactly once, in order.
    for run_id, evs in feed_by_run.items():
        versions = [f.version for f in evs]
        if versions != list(range(1, len(versions) + 1)):
            counts = Counter(versions)
            dup = sorted(v for v, c in counts.items() if c > 1)
            gaps = sorted(set(range(1, max(versions) + 1)) - set(versions))
            found.doubled.append(
                f"run {run_id}: feed versions not 1..n (duplicated {dup[:10]}, missing {gaps[:10]})"
            )

    net_by_run: dict[str | None, set[str]] = defaultdict(set)
    for element in set(data.values) | set(data.stamps):
        net_by_run[namespace_of(element)].add(element)
    for owner, elements in net_by_run.items():
        if owner is None or owner not in queued:
            found.network.append(
                f"{len(elements)} network elements belong to run {owner!r}, which was never "
                f"started: {sorted(elements)[:5]}"
            )
    outbox_by_run: dict[str, list[str]] = defaultdict(list)
    for note in data.outbox:
        outbox_by_run[note.get("run_id", "")].append(note.get("message", ""))
    for run_id in outbox_by_run:
        if run_id not in queued:
            found.outbox.append(
                f"{len(outbox_by_run[run_id])} notifications for run {run_id!r}, never started"
            )

    for run_id in sorted(queued):
        evs = feed_by_run[run_id]
        queued_event = next(f.event for f in evs if isinstance(f.event, ev.RunQueued))
        assert isinstance(queued_event, ev.RunQueued)
        reverted = any(isinstance(f.event, ev.RunReverted) for f in evs)
        processed = max(
            (f.event.items_to for f in evs if isinstance(f.event, ev.ItemsProcessed)), default=0
        )
        irreversible = sum(
            f.event.irreversible for f in evs if isinstance(f.event, ev.ItemsProcessed)
        )
        want_values, want_notes = synthetic_network(run_id, queued_event.args, processed)
        have_values = {e: data.values[e] for e in net_by_run.get(run_id, ()) if e in data.values}
        have_stamps = {e: data.stamps[e] for e in net_by_run.get(run_id, ()) if e in data.stamps}
        where = "deleted" if run_id in data.tombs else data.index[run_id].state
        context = f"run {run_id} ({where}, {processed} items processed, reverted={reverted})"

        # Notifications: sent once per confirmed chunk's notifications, reverted or not.
        if outbox_by_run.get(run_id, []) != want_notes or irreversible != len(want_notes):
            found.outbox.append(
                f"{context}: outbox holds {len(outbox_by_run.get(run_id, []))} notifications, "
                f"confirmed chunks sent {irreversible}, {processed} items make {len(want_notes)}"
            )

        if reverted:
            done = next(f for f in evs if isinstance(f.event, ev.RunReverted))
            assert isinstance(done.event, ev.RunReverted)
            if done.event.skipped and run_id in data.tombs:
                # (A surviving run's skips are reported below, with their history.)
                found.state.append(
                    f"{context}: its revert skipped {done.event.skipped} effects as conflicts, "
                    f"in a namespace no one else writes ({_feed_line(done)})"
                )
            if have_values or have_stamps:
                found.network.append(
                    f"{context}: reverted, yet {len(have_values)} values / {len(have_stamps)} "
                    f"stamps remain in its namespace, e.g. {sorted(have_stamps.items())[:3]}"
                )
        elif have_values != want_values:
            missing = sorted(set(want_values) - set(have_values))
            extra = sorted(set(have_values) - set(want_values))
            differ = sorted(
                e for e in set(want_values) & set(have_values) if want_values[e] != have_values[e]
            )
            found.network.append(
                f"{context}: network differs from its {processed} items: missing {len(missing)} "
                f"{missing[:3]}, extra {len(extra)} {extra[:3]}, "
                f"different {len(differ)} {differ[:3]}"
            )
        elif set(have_stamps) != set(have_values) or any(
            not s.startswith(run_id + "/") for s in have_stamps.values()
        ):
            found.network.append(f"{context}: stamps do not match its elements")

        found.checked["runs: network vs items"] += 1
        if run_id in data.tombs:
            tomb = data.tombs[run_id]
            if tomb.get("effects_left", 0) == 0 and have_values:
                found.network.append(
                    f"{context}: tombstone says no effects left, yet {len(have_values)} "
                    "elements remain in its namespace"
                )
            continue

        # ---- a surviving run: history, state, summary, network stamps.
        history = data.histories[run_id]
        folded = _fold(run_id, history)
        loaded = data.loaded[run_id]
        if msgspec.to_builtins(folded) != msgspec.to_builtins(loaded):
            found.state.append(
                f"{context}: EventStore.load differs from the fold of its history: "
                f"{_diff(folded, loaded)}"
            )
        summary = data.summaries[run_id]
        if msgspec.to_builtins(summarize(folded)) != msgspec.to_builtins(summary):
            found.state.append(
                f"{context}: its summary differs from its history: "
                f"{_diff(summarize(folded), summary)}"
            )
        if folded.state in ACTIVE_STATES or folded.pending is not None:
            found.state.append(f"{context}: still {folded.state}, pending chunk {folded.pending}")
        if folded.state == "succeeded" and folded.items_processed != folded.items_total:
            found.state.append(
                f"{context}: succeeded after {folded.items_processed} of {folded.items_total} items"
            )
        if [f.version for f in evs][-1:] != [folded.version]:
            found.state.append(
                f"{context}: feed ends at a version other than its history's ({folded.version})"
            )
        for (eid, hist_event), fe in zip(history, evs, strict=False):
            if msgspec.to_builtins(ev.slim(hist_event)) != msgspec.to_builtins(fe.event):
                found.state.append(f"{context}: history {eid} and feed {fe.entry_id} differ")
                break
        found.checked["runs: history folded and replayed"] += 1
        found.checked["chunks replayed"] += sum(
            1 for _, e in history if isinstance(e, ev.ItemsProcessed)
        )
        found.checked["chunks voided"] += sum(
            1 for _, e in history if isinstance(e, ev.ChunkVoided)
        )
        replay = replay_history(run_id, history, found)
        if replay.items != folded.items_processed:
            found.state.append(
                f"{context}: chunks cover {replay.items} items, state says {folded.items_processed}"
            )
        if replay.notifications != want_notes:
            found.outbox.append(
                f"{context}: its chunks' notifications are not its items' notifications"
            )
        if folded.state == "reverted":
            if folded.compensated != folded.applied or folded.skipped:
                skipped = [
                    k for _, e in history if isinstance(e, ev.EffectsCompensated) for k in e.skipped
                ]
                stories = "\n".join(
                    element_story(run_id, history, k.element, data) for k in skipped[:3]
                )
                found.state.append(
                    f"{context}: reverted with {folded.compensated} of {folded.applied} effects "
                    f"compensated and {folded.skipped} skipped (its namespace is private); "
                    f"skipped: {[(k.effect_no, k.element) for k in skipped[:10]]}\n{stories}"
                )
            continue
        if replay.values != have_values or replay.stamps != have_stamps:
            bad_stamps = sorted(
                e
                for e in set(replay.stamps) | set(have_stamps)
                if replay.stamps.get(e) != have_stamps.get(e)
            )
            found.network.append(
                f"{context}: network is not the replay of its confirmed effects; stamps differ "
                f"on {len(bad_stamps)} elements, e.g. "
                + ", ".join(
                    f"{e}: {replay.stamps.get(e)!r} vs {have_stamps.get(e)!r}"
                    for e in bad_stamps[:3]
                )
            )
        if replay.values != want_values:
            found.network.append(f"{context}: its recorded effects are not what its items write")


def element_story(
    run_id: str, history: list[tuple[str, ev.Event]], element: str, data: Data
) -> str:
    """Every effect of the run on one element, with its chunk's fate, and the element now."""
    fate: dict[int, str] = {}
    for entry_id, e in history:
        if isinstance(e, ev.ItemsProcessed):
            fate[e.chunk] = f"confirmed {entry_id}"
        elif isinstance(e, ev.ChunkVoided):
            fate[e.chunk] = f"voided {entry_id} ({e.reason})"
    lines = [f"    element {element}:"]
    for entry_id, e in history:
        if isinstance(e, ev.ChunkPrepared):
            for j, rec in enumerate(e.effects):
                if rec.element == element:
                    lines.append(
                        f"      effect {e.first_effect + j} (chunk {e.chunk} prepared {entry_id}, "
                        f"{fate.get(e.chunk, 'unresolved')}): before_stamp {rec.before_stamp!r} "
                        f"before {rec.before!r} after {rec.after!r}"
                    )
        elif isinstance(e, ev.EffectsCompensated):
            for k in e.skipped:
                if k.element == element:
                    lines.append(f"      skipped effect {k.effect_no} at {entry_id}: {k.reason}")
    lines.append(
        f"      now: stamp {data.stamps.get(element)!r} value {data.values.get(element)!r}"
    )
    return "\n".join(lines)


def dump_data(data: Data, path: Path) -> None:
    """The collected Redis data as JSON, for the evidence folder."""
    body = {
        "feed": [msgspec.to_builtins(f) for f in data.feed],
        "histories": {
            r: [[i, msgspec.to_builtins(e)] for i, e in h] for r, h in data.histories.items()
        },
        "tombs": data.tombs,
        "dlq": [
            [shard, lid, {k.decode(): v.decode(errors="replace") for k, v in f.items()}]
            for shard, lid, f in data.dlq
        ],
        "stamps": data.stamps,
        "outbox": data.outbox,
    }
    path.write_bytes(msgspec.json.encode(body))


def check_workers(
    fleet: Fleet, exits: dict[str, tuple[int | None, float]], found: Findings
) -> None:
    found.workers.extend(fleet.unexpected)
    for name, (code, took) in exits.items():
        if code != 0 or took > SHUTDOWN_GRACE_S + EXIT_SLACK_S:
            w = next(w for w in fleet.procs if w.name == name)
            found.workers.append(
                f"worker {name} on SIGTERM: exit {code} after {took:.2f}s (grace "
                f"{SHUTDOWN_GRACE_S:g}s); log tail:\n{w.log_tail(2000)}"
            )
