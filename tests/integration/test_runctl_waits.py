"""What ``runctl ... --wait`` reports: 6 when the run did not succeed (it failed, or someone
else stopped it), 5 with "accepted and goes on" when --timeout runs out, 8 when no worker
runs at all; and on a terminal, a progress bar while it waits."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import redis

from runstream import catalog
from runstream.connect import open_redis
from runstream.domain.scenarios import load_registry
from runstream.keys import Keys
from runstream.settings import Settings

from .support import RUNCTL_CMD, CliResult, fast, logs_of, runctl, service_env, worker_pool

TIMEOUT, NOT_SUCCEEDED, NO_WORKER = 5, 6, 8


def one_line(result: CliResult, code: int) -> str:
    assert result.code == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runctl: "), result
    return lines[0]


def state_of(settings: Settings, run_id: str) -> str:
    shown = runctl(settings, "show", run_id, "--json")
    assert shown.code == 0, shown
    state: str = json.loads(shown.stdout)["state"]
    return state


def test_wait_exit_codes(tmp_path: Path, settings: Settings) -> None:
    s = fast(settings)
    with worker_pool(s, tmp_path) as pool:
        pool.start("w-waits").wait_ready()
        # The run fails: 6 (not 1, which is "rejected"), its error on stdout.
        failed = runctl(s, "start", "synthetic", "--arg", "items=5", "--arg", "fail_at=2", "--wait")
        line = one_line(failed, NOT_SUCCEEDED)
        assert "did not succeed" in line and "failed" in line, failed
        run_id = failed.stdout.split()[0]
        assert "failed" in failed.stdout and state_of(s, run_id) == "failed"

        # Someone else stops it while we wait for it to succeed: 6.
        slow = ["start", "synthetic", "--arg", "items=100000", "--arg", "delay_ms=1", "--json"]
        waiting = subprocess.Popen(
            [*RUNCTL_CMD, *slow, "--wait"],
            env=service_env(s),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            running: list[str] = []
            while not running:
                listed = json.loads(runctl(s, "list", "--state", "running", "--json").stdout)
                running = [r["id"] for r in listed]
                assert time.monotonic() < deadline, logs_of(pool)
                time.sleep(0.1)
            stopped = runctl(s, "stop", running[0], "--wait", "--reason", "enough")
            assert stopped.code == 0, stopped
            out, err = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        assert waiting.returncode == NOT_SUCCEEDED, (out, err)
        assert "did not succeed: stopped (enough)" in err

        # --timeout runs out: 5, and it says the command was accepted and goes on.
        late = runctl(s, *slow[:-1], "--wait", "--timeout", "1")
        line = one_line(late, TIMEOUT)
        assert "accepted and goes on" in line, line
        assert runctl(s, "cancel", line.split("for run ")[1].split()[0]).code == 0
        assert runctl(s, "cancel", running[0]).code == 0


def test_no_worker_is_exit_8_and_a_worker_that_never_takes_it_is_5(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = Keys.of(settings)

    async def publish() -> None:  # a worker published its scenarios, then went away
        client = open_redis(settings)
        try:
            await catalog.publish(client, keys, load_registry(), "gone")
        finally:
            await client.aclose()

    asyncio.run(publish())
    line = one_line(runctl(settings, "start", "synthetic", "--timeout", "1"), NO_WORKER)
    assert "no worker is running" in line, line
    # A worker's heartbeat, but nothing reads the stream: published, not handled, 5.
    redis_client.set(keys.worker_alive("stuck"), "1", ex=60)
    line = one_line(runctl(settings, "start", "synthetic", "--timeout", "1"), TIMEOUT)
    assert "no worker handled it" in line, line


def test_wait_shows_a_progress_bar_on_a_terminal(tmp_path: Path, settings: Settings) -> None:
    s = fast(settings)
    with worker_pool(s, tmp_path) as pool:
        pool.start("w-tty").wait_ready()
        leader, follower = pty.openpty()
        argv = ["start", "synthetic", "--arg", "items=400", "--arg", "delay_ms=5", "--wait"]
        env = {**service_env(s), "COLUMNS": "120", "TERM": "xterm"}
        proc = subprocess.Popen(
            [*RUNCTL_CMD, *argv], env=env, stdin=follower, stdout=follower, stderr=follower
        )
        os.close(follower)
        chunks: list[bytes] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    try:
                        data = os.read(leader, 65536)
                    except OSError:  # the other side closed: runctl exited
                        break
                    if not data:
                        break
                    chunks.append(data)
                elif proc.poll() is not None:
                    break
            assert proc.wait(30) == 0, b"".join(chunks).decode(errors="replace")
        finally:
            os.close(leader)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    shown = b"".join(chunks).decode(errors="replace")
    assert "items processed" in shown, shown
    assert "/400" in shown, shown
    assert "succeeded" in shown, shown
