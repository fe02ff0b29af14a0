"""Exit statuses and the one-line errors runctl prints."""

from __future__ import annotations

OK = 0
REJECTED = 1  # the service refused the command (state does not allow it)
BAD_INPUT = 2  # bad arguments, unknown scenario, malformed id (also typer's usage errors)
NOT_FOUND = 3  # the run does not exist or was deleted
UNREACHABLE = 4  # Redis cannot be reached, or what answers is not Redis
TIMEOUT = 5  # --wait gave up; the command was accepted and goes on
NOT_SUCCEEDED = 6  # --wait: the run failed, or someone else stopped or cancelled it
REDIS_REFUSED = 7  # Redis refused a command (OOM, READONLY, NOPERM ...)
NO_WORKER = 8  # no worker is running / no worker has published its scenarios


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
