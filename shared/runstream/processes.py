"""Worker processes, started, watched and stopped the same way by everyone who starts
them: ``runctl dev``, the tests, the benchmark and the soak.

A worker is ``python -m runstream_worker`` configured only through its environment
(``worker_env``). It logs ``READY_MARK`` once its signal handlers are installed and it
reads commands: before that, SIGTERM would kill it outright instead of stopping it
gracefully, so ``stop_all`` waits for the mark (briefly) before it signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO

from runstream.settings import Settings, env_name

WORKER_COMMAND = (sys.executable, "-m", "runstream_worker")
# The HTTP API (runstream-api), configured like a worker plus RUNSTREAM_API_HOST/PORT.
API_COMMAND = (sys.executable, "-m", "runstream_api")
# The log event a worker emits once it handles signals and consumes commands.
READY_MARK = "worker_started"
# The API's: its app started (uvicorn handles signals from the start; it listens just after).
API_READY_MARK = "api_started"
READY_TIMEOUT_S = 20.0
STOP_GRACE_S = 10.0
_POLL_S = 0.05


class WorkerDied(RuntimeError):
    """A worker exited while we waited for it to become ready."""


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a process configured by ``settings``: ours without any REDIS_URL
    or RUNSTREAM_* of its own, then every setting, then ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RUNSTREAM_") and k != "REDIS_URL"
    }
    env.update(settings.to_env())
    # Log lines must reach the file at once: they are how readiness (and a crash) is seen.
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class WorkerProcess:
    """One worker subprocess. With ``log_path`` its output goes there (and readiness can be
    seen); without, it shares our stdout (``runctl dev``)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path | None = None,
        command: Iterable[str] = WORKER_COMMAND,
        ready_mark: str = READY_MARK,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.ready_mark = ready_mark
        self._log_file: IO[bytes] | None = None
        if log_path is not None:
            self._log_file = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            list(command),
            env={**env, env_name("worker_name"): name},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT if self._log_file is not None else None,
            # Our own Ctrl-C must not reach it: it is stopped in order, by us.
            start_new_session=True,
        )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def ready(self) -> bool:
        """True once the worker logged its ready mark; raises WorkerDied if it exited."""
        if self.log_path is None:
            raise ValueError(f"worker {self.name} has no log file to watch for readiness")
        if self.ready_mark in self.log():
            return True
        code = self.proc.poll()
        if code is not None:
            raise WorkerDied(
                f"worker {self.name} exited with code {code} before it was ready:\n"
                f"{self.log_tail()}"
            )
        return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"worker {self.name} not ready after {timeout:g}s:\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)

    def terminate(self) -> None:
        """SIGTERM: a graceful stop (SIGCONT first, in case a test paused it)."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> int:
        """SIGKILL, as a crash would; reaped."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        return self.proc.wait()

    def close(self) -> None:
        """Kill it if it still runs, and close its log."""
        self.kill()
        if self._log_file is not None:
            self._log_file.close()


def start_workers(
    names: Iterable[str], env: Mapping[str, str], directory: Path, wait_ready: bool = True
) -> list[WorkerProcess]:
    """Start one worker per name, logging to ``directory/worker-NAME.log``; by default
    return once every one is ready (one that dies first raises WorkerDied)."""
    workers = [WorkerProcess(name, env, directory / f"worker-{name}.log") for name in names]
    if wait_ready:
        for worker in workers:
            worker.wait_ready()
    return workers


def start_api(
    env: Mapping[str, str], port: int, log_path: Path | None = None, host: str = "127.0.0.1"
) -> WorkerProcess:
    """Start the HTTP API on ``host:port`` (its output to ``log_path``, else ours); see
    ``wait_http`` for when it answers."""
    api_env = {**env, "RUNSTREAM_API_HOST": host, "RUNSTREAM_API_PORT": str(port)}
    return WorkerProcess("api", api_env, log_path, command=API_COMMAND, ready_mark=API_READY_MARK)


def wait_http(proc: WorkerProcess, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Until ``url`` answers (any HTTP status); WorkerDied if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            pass
        code = proc.returncode
        if code is not None:
            raise WorkerDied(f"{proc.name} exited with code {code}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not answering after {timeout:g}s:\n{proc.log_tail()}")
        time.sleep(_POLL_S)


def stop_all(
    workers: Iterable[WorkerProcess],
    grace: float = STOP_GRACE_S,
    give_up: Callable[[], bool] = lambda: False,
    on_kill: Callable[[WorkerProcess], None] | None = None,
) -> dict[str, tuple[int | None, float]]:
    """Stop the live workers gracefully: SIGTERM each (once it is ready, so it has its
    handlers), wait up to ``grace`` s in all (less once ``give_up()``), then SIGKILL.
    Returns each one's exit code after SIGTERM (None if it had to be killed) and how long
    it took."""
    live = [w for w in workers if w.alive()]
    for w in live:
        if w.log_path is not None:
            # Not ready yet means no handlers yet: SIGTERM would not be a graceful stop.
            with contextlib.suppress(WorkerDied, TimeoutError):
                w.wait_ready(min(grace, READY_TIMEOUT_S))
    sent = time.monotonic()
    for w in live:
        w.terminate()
    deadline = sent + grace
    out: dict[str, tuple[int | None, float]] = {}
    for w in live:
        while w.alive() and time.monotonic() < deadline and not give_up():
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(_POLL_S * 5)
        code = w.proc.poll()
        out[w.name] = (code, time.monotonic() - sent)
        if code is None:
            if on_kill is not None:
                on_kill(w)
            w.kill()
    return out
