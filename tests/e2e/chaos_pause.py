"""Pausing lease holders: SIGSTOP a worker that drives runs, for longer than a lease, at a
random moment, then SIGCONT it. The paused worker comes back believing it still drives its
runs while another worker has taken them over; it must notice, write nothing more for
them, free its slots, and still stop promptly on SIGTERM (issue 12).

Used by the paused-lease-holder e2e test and by the chaos suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aredis
from redis.exceptions import RedisError

from runstream.keys import Keys

Processes = Callable[[], dict[str, "subprocess.Popen[bytes]"]]


async def lease_holders(redis: aredis.Redis, keys: Keys) -> dict[str, list[str]]:
    """Worker name -> the runnable runs whose lease it holds right now."""
    holders: dict[str, list[str]] = {}
    for shard in range(keys.shards):
        for raw in await redis.zrange(keys.runnable(shard), 0, -1):
            run_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            owner = await redis.get(keys.lease(run_id))
            if owner:
                name = owner.decode() if isinstance(owner, bytes) else str(owner)
                holders.setdefault(name, []).append(run_id)
    return holders


@dataclass
class Pauser:
    """Pauses lease holders one after the other, each for ``pause_s`` (drawn), with
    ``gap_s`` (drawn) between pauses. ``processes()`` names the live workers."""

    rng: random.Random
    redis: aredis.Redis
    keys: Keys
    processes: Processes
    pause_s: tuple[float, float]
    gap_s: tuple[float, float] = (0.1, 0.9)
    note: Callable[[str], None] = lambda _text: None
    pauses: int = 0
    runs_paused: int = 0
    # Any process currently stopped, so it is resumed whatever happens to the caller.
    _stopped: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def pause_one(self) -> str | None:
        """Pause one lease holder (if some worker holds a lease) and resume it; its name."""
        try:
            holders = await lease_holders(self.redis, self.keys)
        except (RedisError, OSError):
            return None  # Redis down (the chaos suite crashes it): no holder to find
        live = {n: p for n, p in self.processes().items() if p.poll() is None}
        candidates = sorted(n for n in holders if n in live)
        if not candidates:
            return None
        name = self.rng.choice(candidates)
        proc = live[name]
        pause = self.rng.uniform(*self.pause_s)
        self._stop(proc)
        self.note(f"SIGSTOP {name} (holds {len(holders[name])} runs) for {pause:.2f}s")
        try:
            await asyncio.sleep(pause)
        finally:
            self._cont(proc)
            self.note(f"SIGCONT {name}")
        self.pauses += 1
        self.runs_paused += len(holders[name])
        return name

    async def run(self, stop_at: float, done: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Pause holders until ``stop_at`` (or until ``done()`` says so)."""
        try:
            while time.monotonic() < stop_at:
                await asyncio.sleep(self.rng.uniform(*self.gap_s))
                if done is not None and await done():
                    return
                await self.pause_one()
        finally:
            self.resume_all()

    def resume_all(self) -> None:
        for proc in list(self._stopped.values()):
            self._cont(proc)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        self._stopped[proc.pid] = proc
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGSTOP)

    def _cont(self, proc: subprocess.Popen[bytes]) -> None:
        self._stopped.pop(proc.pid, None)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
