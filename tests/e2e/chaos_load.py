"""The chaos suite's load: valid commands (with duplicates), garbage messages, and a ledger
of every stream entry published, which the checks hold the service to."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import RedisError

from runstream.contracts import commands as cmd
from runstream.ids import new_id
from runstream.keys import Fields, Keys

from .chaos_fleet import MAX_COMMAND_BYTES, ChaosConfig, Timeline


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
    acked_at: float = 0.0  # when Redis first accepted it (wall clock, as failovers are)

    @property
    def kind(self) -> str:
        return cmd.command_type(self.command)


@dataclass
class Garbage:
    kind: str
    stream_shard: int
    fields: dict[bytes, bytes]
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
        self, shard: int, fields: dict[bytes, bytes], deadline_s: float = 60
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
        entry, failures = await self.xadd(shard, {Fields.COMMAND: data})
        sent.acked_at = time.time()
        sent.entries.append(entry)
        sent.failed_xadds += failures
        return sent

    async def republish(self, sent: Sent) -> None:
        """The very same message again (same bytes, same command_id)."""
        self.ledger.duplicates += 1
        entry, failures = await self.xadd(sent.shard, {Fields.COMMAND: sent.data})
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
        fields = {Fields.COMMAND: data}
    elif kind == "json_wrong_shape":
        shapes: list[Any] = [
            [1, 2, 3, nonce.decode()],
            {"type": "StopRun", "nonce": nonce.decode()},  # no run_id
            {"type": "Explode", "run_id": new_id(), "command_id": nonce.decode()},
            {"type": "StopRun", "run_id": "not-a-run-id", "command_id": nonce.decode()},
            {"type": "StopRun", "run_id": new_id(), "command_id": "bad id " + nonce.decode()},
            nonce.decode(),
        ]
        fields = {Fields.COMMAND: json.dumps(rng.choice(shapes)).encode()}
    elif kind == "unknown_field":
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        body = json.loads(cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid)))
        body["surprise"] = nonce.decode()
        fields = {Fields.COMMAND: json.dumps(body).encode()}
        shard = keys.shard_of(run_id)
    elif kind == "no_c_field":
        fields = {b"x": b"no command here", b"nonce": nonce}
    elif kind == "oversized":
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        body = json.loads(cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid)))
        body["reason"] = "x" * 5000
        fields = {Fields.COMMAND: json.dumps(body).encode()}
        assert len(fields[Fields.COMMAND]) > MAX_COMMAND_BYTES
        shard = keys.shard_of(run_id)
    elif kind == "deeply_nested":
        depth = 1900
        fields = {Fields.COMMAND: b"[" * depth + b'"' + nonce + b'"' + b"]" * depth}
        assert len(fields[Fields.COMMAND]) <= MAX_COMMAND_BYTES
    elif kind == "wrong_shard":
        # A valid command on the other shard's stream: must be parked, never applied.
        run_id = some_run or new_id()
        cid = "garbage-" + nonce.decode()
        fields = {Fields.COMMAND: cmd.encode_command(cmd.StopRun(run_id=run_id, command_id=cid))}
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
            # Nodes in several namespaces: with several network partitions, chunks then
            # span some (a two-phase commit under the chaos).
            "spread": rng.choice([1, 3]),
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
