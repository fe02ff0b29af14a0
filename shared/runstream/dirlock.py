"""One server per data directory: an exclusive flock on ``DIR/runstream.lock``.

Two redis-servers appending to one append-only file corrupt it. The lock is taken before
the server starts and its file descriptor is inherited by the server, so the directory
stays locked for as long as either the server or the process that started it lives
(also when that process is killed with SIGKILL and the server goes on). The file says
who holds it, so a refusal can name the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

LOCK_NAME = "runstream.lock"


class DataDirLocked(RuntimeError):
    """Another process holds the data directory."""


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not locked by us")
        return self._fd

    def acquire(self) -> None:
        """Lock the directory (a no-op if we hold it); DataDirLocked names the holder."""
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.directory} is in use by {self.holder()}; two servers "
                "on one append-only file corrupt it: stop that one, or use another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record()

    def record(self, **facts: object) -> None:
        """Write who holds the lock (our pid and command, plus ``facts``) into the file."""
        if self._fd is None:
            return
        data = {"pid": os.getpid(), "command": " ".join(sys.argv[:3]), **facts}
        text = json.dumps(data).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def holder(self) -> str:
        """Who holds the lock, as its file says (best effort: it may be mid-write)."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return "another process"
        if not isinstance(data, dict):
            return "another process"
        parts = []
        if data.get("server_pid"):
            port = f" on port {data['server_port']}" if data.get("server_port") else ""
            parts.append(f"redis-server pid {data['server_pid']}{port}")
        if data.get("pid"):
            command = f" ({data['command']})" if data.get("command") else ""
            parts.append(f"started by pid {data['pid']}{command}")
        return ", ".join(parts) or "another process"

    def release(self) -> None:
        """Drop our hold (a server that inherited the descriptor still holds it until it
        exits)."""
        if self._fd is None:
            return
        # Close only: LOCK_UN would unlock the shared file description, the server's too.
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
