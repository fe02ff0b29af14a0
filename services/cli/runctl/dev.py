"""``runctl dev``: a whole runstream on one machine, Redis and workers included.

Redis is an EmbeddedRedis persisting to ``data_dir`` (so runs survive a restart of the
dev stack), or with ``cluster`` a LocalCluster of 3 masters and 3 replicas on ports
``port`` .. ``port+5`` (AOF in ``data_dir/cluster``, kept likewise); each worker is a
separate ``python -m runstream_worker`` process. Workers
that die are restarted with a backoff; Ctrl-C or SIGTERM stops workers first, Redis last.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from runstream import processes
from runstream.connect import open_redis
from runstream.embedded import EmbeddedRedis
from runstream.keys import Keys
from runstream.local_cluster import LocalCluster
from runstream.processes import (
    API_COMMAND,
    API_READY_MARK,
    WORKER_COMMAND,
    WorkerProcess,
    worker_env,
)
from runstream.redis_url import redacted_url
from runstream.settings import DEFAULT_REDIS_URL, EMBEDDED_PORT, Settings, load_settings
from runstream.tokens import TokenStore

DEFAULT_DATA_DIR = Path(".runstream/data")
STOP_GRACE_S = 10.0
# A process that stayed up this long counts as healthy again: its backoff starts over.
HEALTHY_AFTER_S = 30.0
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
TICK_S = 0.25


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** max(0, failures - 1)))


def _runctl_command() -> str:
    """How the user can call runctl: plainly if it is on PATH, else by its path (the venv
    of ``make run`` is usually not activated)."""
    here = Path(sys.executable).parent / "runctl"
    on_path = shutil.which("runctl")
    if on_path and Path(on_path).resolve() == here.resolve():
        return "runctl"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


@dataclass
class _Worker:
    name: str
    proc: WorkerProcess | None = None
    # The HTTP API is supervised like a worker, with its own command and environment.
    command: Sequence[str] | None = None
    env: dict[str, str] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


class _DevStack:
    def __init__(
        self,
        redis: EmbeddedRedis | LocalCluster,
        workers: int,
        worker_env: dict[str, str],
        worker_command: Sequence[str],
        console: Console,
        api_port: int | None = None,
    ) -> None:
        self.redis = redis
        self.worker_env = worker_env
        self.worker_command = list(worker_command)
        self.console = console
        self.workers = [_Worker(name=f"worker-{i}") for i in range(1, workers + 1)]
        self.api_port = api_port
        self.api_token = ""
        if api_port is not None:
            api_env = {
                **worker_env,
                "RUNSTREAM_API_HOST": "127.0.0.1",
                "RUNSTREAM_API_PORT": str(api_port),
            }
            self.workers.append(_Worker(name="api", command=API_COMMAND, env=api_env))
        self.stopping = threading.Event()
        self.signals = 0
        self.redis_failures = 0
        self.redis_restart_at: float | None = None

    # --- signals -------------------------------------------------------------------
    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only flags here: the main loop does the work, outside the signal handler.
        self.signals += 1
        self.stopping.set()

    # --- workers -------------------------------------------------------------------
    def spawn(self, worker: _Worker) -> None:
        # Its output is ours (no log file): the developer watches it in this terminal.
        worker.proc = WorkerProcess(
            worker.name,
            worker.env if worker.env is not None else self.worker_env,
            command=worker.command if worker.command is not None else self.worker_command,
            ready_mark=API_READY_MARK if worker.command is not None else processes.READY_MARK,
        )
        worker.started_at = time.monotonic()
        worker.restart_at = None

    def check_workers(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and not proc.alive():
                uptime = now - worker.started_at
                worker.failures = 1 if uptime >= HEALTHY_AFTER_S else worker.failures + 1
                delay = _backoff(worker.failures)
                self.console.print(
                    f"[yellow]{worker.name} (pid {proc.pid}) exited with code "
                    f"{proc.returncode} after {uptime:.1f}s; restarting in {delay:.1f}s[/]"
                )
                worker.proc = None
                worker.restart_at = now + delay
            if worker.proc is None and worker.restart_at is not None and now >= worker.restart_at:
                self.spawn(worker)
                self.console.print(f"[green]{worker.name} restarted (pid {self.pid(worker)})[/]")

    def check_redis(self) -> None:
        now = time.monotonic()
        if self.redis_restart_at is None:
            if self.redis.running:
                return
            self.redis_failures += 1
            delay = _backoff(self.redis_failures)
            self.console.print(
                f"[red]redis-server died; restarting in {delay:.1f}s[/] "
                f"(log: {escape(str(self.redis.log_path))})"
            )
            self.redis.kill()  # reaps the dead process
            self.redis_restart_at = now + delay
            return
        if now < self.redis_restart_at:
            return
        try:
            self.redis.start()
        except RuntimeError as exc:
            self.redis_failures += 1
            delay = _backoff(self.redis_failures)
            self.console.print(f"[red]redis-server restart failed; next try in {delay:.1f}s[/]")
            self.console.print(escape(str(exc)))
            self.redis_restart_at = now + delay
            return
        self.redis_restart_at = None
        self.console.print(f"[green]redis-server restarted (pid {self.redis.pid})[/]")

    @staticmethod
    def pid(worker: _Worker) -> int | None:
        return worker.proc.pid if worker.proc is not None else None

    def stop_workers(self) -> None:
        live = [w.proc for w in self.workers if w.proc is not None]
        processes.stop_all(
            live,
            STOP_GRACE_S,
            # A second Ctrl-C cuts the grace period short.
            give_up=lambda: self.signals >= 2,
            on_kill=lambda p: self.console.print(
                f"[yellow]worker pid {p.pid} did not stop; killing it[/]"
            ),
        )
        for worker in self.workers:
            worker.proc = None

    # --- the whole stack -----------------------------------------------------------
    def banner(self) -> None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")  # paths stay whole, for copy and paste
        table.add_row("REDIS_URL", redacted_url(self.redis.url))
        if isinstance(self.redis, LocalCluster):
            ports = ", ".join(str(n.port) for n in self.redis.nodes)
            shape = f"{self.redis.masters} masters, {self.redis.replicas} replica each"
            table.add_row(
                "redis cluster",
                f"{escape(self.redis.binary)} ({self.redis.origin}): {shape}, ports {ports}",
            )
        else:
            table.add_row(
                "redis-server",
                f"{escape(self.redis.binary)} ({self.redis.origin}), pid {self.redis.pid}",
            )
        table.add_row("data", escape(str(self.redis.data_dir)))
        for worker in self.workers:
            table.add_row(worker.name, f"pid {self.pid(worker)}")
        if self.api_port is not None:
            api = f"http://127.0.0.1:{self.api_port}"
            table.add_row("API", api)
            table.add_row("Admin UI", f"{api}/ui (sign in with the API token below)")
            table.add_row("API docs", f"{api}/schema (OpenAPI 3.1: {api}/schema/openapi.json)")
            table.add_row("API token", f"{self.api_token} (admin; a new one each start)")
        table.add_row("stop", "Ctrl-C")
        self.console.print(Panel(table, title="runstream dev", expand=False))
        # runctl's default REDIS_URL is the default embedded port; other ports need it set.
        lines = (
            []
            if self.redis.url == DEFAULT_REDIS_URL
            else [f"export REDIS_URL={redacted_url(self.redis.url)}"]
        )
        lines.append(f"{_runctl_command()} start synthetic --arg items=100 --wait")
        self.console.print("try, in another terminal:")
        for line in lines:
            self.console.print(f"  {escape(line)}", soft_wrap=True, highlight=False)

    def run(self) -> int:
        if self.stopping.is_set():  # Ctrl-C while Redis was starting
            return 0
        for worker in self.workers:
            self.spawn(worker)
        self.banner()
        while not self.stopping.wait(TICK_S):
            self.check_redis()
            self.check_workers()
        self.console.print("stopping workers...")
        self.stop_workers()
        self.console.print("stopping redis-server...")
        self.redis.stop()
        self.console.print("stopped")
        return 0


async def _dev_token(settings: Settings, url: str) -> str:
    client = open_redis(msgspec.structs.replace(settings, redis_url=url))
    try:
        store = TokenStore(client, Keys.of(settings))
        token, _ = await store.create("dev", "admin", token_id="dev")
        return token
    finally:
        await client.aclose()


def run_dev(
    port: int = EMBEDDED_PORT,
    data_dir: Path = DEFAULT_DATA_DIR,
    workers: int = 2,
    prefer: str = "auto",
    *,
    worker_command: Sequence[str] = WORKER_COMMAND,
    api_port: int | None = None,
    cluster: bool = False,
) -> int:
    """Run Redis (a local Redis Cluster with ``cluster``), ``workers`` worker processes and
    (with ``api_port``) the HTTP API until SIGINT/SIGTERM; return exit code."""
    console = Console()
    if workers < 0:
        console.print("[red]workers must be 0 or more[/]")
        return 2
    try:
        settings = load_settings()
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 2
    redis: EmbeddedRedis | LocalCluster
    try:
        if cluster:
            if not 0 < port <= 55535 - 6:
                raise ValueError(f"--port {port}: a cluster needs ports up to 55535 (bus +10000)")
            redis = LocalCluster(
                data_dir / "cluster", prefer=prefer, appendonly=True, base_port=port
            )
        else:
            redis = EmbeddedRedis(port=port, data_dir=data_dir, prefer=prefer)
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 1
    # Workers get our RUNSTREAM_* settings, and this stack's Redis.
    env = worker_env(msgspec.structs.replace(settings, redis_url=redis.url))
    stack = _DevStack(redis, workers, env, worker_command, console, api_port)
    previous = {
        signum: signal.signal(signum, stack.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            redis.start()
        except RuntimeError as exc:
            console.print(f"[red]could not start redis-server:[/] {escape(str(exc))}")
            return 1
        if api_port is not None:
            # Friction-free: an admin token of subject "dev", replaced at each start.
            stack.api_token = asyncio.run(_dev_token(settings, redis.url))
        try:
            return stack.run()
        finally:
            # Reached on errors too: never leave workers or Redis behind.
            stack.stop_workers()
            redis.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
