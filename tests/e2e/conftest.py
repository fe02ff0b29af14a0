"""End-to-end helpers: real worker processes and real ``runctl`` invocations.

Everything here talks to the service the way an operator does: workers are
``python -m runstream_worker`` subprocesses, commands are ``python -m runctl.main``
subprocesses, both configured only through the environment (the test's ``settings``:
its Redis and its fresh key prefix).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import pytest

from runstream import processes
from runstream.processes import WorkerProcess, worker_env
from runstream.settings import Settings

T = TypeVar("T")

RUNCTL = (sys.executable, "-m", "runctl.main")
RUNCTL_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The process environment for the test's service: its Redis, its prefix, snappy chunks."""
    snappy = msgspec.structs.replace(
        settings, chunk_seconds=0.05, shutdown_grace_s=2.0, log_format="json"
    )
    return worker_env(snappy, **extra)


# --------------------------------------------------------------------------- waiting
def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


# --------------------------------------------------------------------------- runctl
@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"runctl {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class Runctl(Protocol):
    def __call__(
        self,
        *args: str,
        check: int | None = 0,
        env: dict[str, str] | None = None,
        timeout: float = RUNCTL_TIMEOUT_S,
    ) -> Result: ...


def run_runctl(
    base_env: dict[str, str],
    *args: str,
    check: int | None = 0,
    env: dict[str, str] | None = None,
    timeout: float = RUNCTL_TIMEOUT_S,
) -> Result:
    """Run ``runctl ARGS``; with ``check`` (default 0), assert that exit code."""
    proc = subprocess.run(
        [*RUNCTL, *args],
        env={**base_env, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check is not None:
        assert result.code == check, f"expected exit {check}\n{result}"
    return result


@pytest.fixture
def runctl(settings: Settings) -> Runctl:
    """``runctl(*args, check=0, env=None)`` -> Result(code, stdout, stderr), test's env."""
    base = service_env(settings)

    def call(
        *args: str,
        check: int | None = 0,
        env: dict[str, str] | None = None,
        timeout: float = RUNCTL_TIMEOUT_S,
    ) -> Result:
        return run_runctl(base, *args, check=check, env=env, timeout=timeout)

    return call


# --------------------------------------------------------------------------- workers
@dataclass
class Workers:
    """Worker subprocesses of one test. ``kill(i)`` is a SIGKILL; ``start_more(n)`` adds."""

    env: dict[str, str]
    directory: Path
    tag: str = "w"
    procs: list[WorkerProcess] = field(default_factory=list)

    def start_more(self, n: int = 1, wait_ready: bool = True) -> list[WorkerProcess]:
        """Start ``n`` more workers; by default, return once each is consuming (a worker
        that dies on start fails the test at once, with its log)."""
        names = [f"{self.tag}{len(self.procs) + i}" for i in range(n)]
        started = processes.start_workers(names, self.env, self.directory, wait_ready=False)
        self.procs += started
        if wait_ready:
            for worker in started:
                worker.wait_ready()
        return started

    def __getitem__(self, i: int) -> WorkerProcess:
        return self.procs[i]

    def __len__(self) -> int:
        return len(self.procs)

    def index_of(self, name: str) -> int:
        return next(i for i, w in enumerate(self.procs) if w.name == name)

    def kill(self, i: int) -> None:
        """SIGKILL worker ``i``, as a crash would, and reap it."""
        self.procs[i].kill()

    def alive(self) -> list[int]:
        return [i for i, w in enumerate(self.procs) if w.alive()]

    def assert_alive(self, *indexes: int) -> None:
        for i in indexes or range(len(self.procs)):
            w = self.procs[i]
            assert w.alive(), f"worker {w.name} exited with {w.returncode}:\n{w.log_tail()}"

    def stop_all(self) -> None:
        processes.stop_all(self.procs, STOP_GRACE_S)
        for w in self.procs:
            w.close()


class StartWorkers(Protocol):
    def __call__(self, n: int = 1, **env: str) -> Workers: ...


@pytest.fixture
def start_workers(settings: Settings, tmp_path: Path) -> Iterator[StartWorkers]:
    """``start_workers(n, RUNSTREAM_LEASE_MS="1500", ...)``: n workers on the test's
    settings (extra env on top); all stopped (SIGTERM, then SIGKILL) at teardown."""
    pools: list[Workers] = []

    def start(n: int = 1, **env: str) -> Workers:
        directory = tmp_path / f"workers-{len(pools)}"
        directory.mkdir()
        tag = "w" if not pools else f"p{len(pools)}w"  # consumer names stay unique
        pool = Workers(service_env(settings, **env), directory, tag)
        pools.append(pool)
        pool.start_more(n)
        return pool

    yield start
    for pool in pools:
        pool.stop_all()
