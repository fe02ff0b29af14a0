"""One server per data directory: a second ``runctl dev`` (or EmbeddedRedis) on a data
directory in use refuses, naming the process that holds it, for as long as that server
lives, also after the ``runctl dev`` that started it was killed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runstream.dirlock import DataDirLocked, DirLock
from runstream.embedded import EmbeddedRedis, free_port, port_in_use
from runstream.local_cluster import LocalCluster
from runstream.settings import Settings

from .support import RUNCTL_CMD, service_env

PASSWORD = "hunter2-dev-banner-77"


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """Running, not a zombie its (paused) parent has yet to reap."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@contextlib.contextmanager
def dev(
    settings: Settings, port: int, data: Path, out: Path, *more: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``runctl dev --port PORT --data-dir DATA`` with one real worker, output to ``out``."""
    env = service_env(settings, REDIS_URL=f"redis://app:{PASSWORD}@127.0.0.1:1/0")
    argv = [*RUNCTL_CMD, "dev", "--port", str(port), "--data-dir", str(data), "--workers", "1"]
    argv += more
    argv += ["--api-port", "0"]  # no API: this test kills runctl dev, which would orphan it
    with open(out, "wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def answers(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as client:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


def test_a_second_server_on_one_data_dir_is_refused(tmp_path: Path, settings: Settings) -> None:
    data = tmp_path / "data"
    first_port, second_port = free_port(), free_port()
    with dev(settings, first_port, data, tmp_path / "first.out") as first:
        wait_for(lambda: "try, in another terminal" in (tmp_path / "first.out").read_text(), "dev")
        assert answers(first_port)
        banner = (tmp_path / "first.out").read_text()
        assert PASSWORD not in banner
        server_pid = int(re.search(r"redis-server.*?pid (\d+)", banner, re.S)[1])  # type: ignore[index]
        worker_pid = int(re.search(r"worker-1\s+pid (\d+)", banner)[1])  # type: ignore[index]

        # Another runctl dev, another port, the same directory: refused, naming the holder.
        with dev(settings, second_port, data, tmp_path / "second.out") as second:
            assert second.wait(30) == 1
        said = (tmp_path / "second.out").read_text()
        assert f"redis-server pid {server_pid}" in said, said
        assert f"started by pid {first.pid}" in said, said
        assert "--data-dir" in said
        assert not port_in_use(second_port)
        # The same from Python.
        with pytest.raises(DataDirLocked, match=f"pid {server_pid}"):
            EmbeddedRedis(port=0, data_dir=data).start()

        # runctl dev dies without a word; its redis-server goes on and keeps the lock.
        # (Paused first, so it does not start the worker again; the worker is stopped.)
        os.kill(first.pid, signal.SIGSTOP)
        os.kill(worker_pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(worker_pid), "the worker to stop")
        first.kill()
        first.wait()
        try:
            assert answers(first_port)
            with dev(settings, second_port, data, tmp_path / "third.out") as third:
                assert third.wait(30) == 1
            assert f"redis-server pid {server_pid}" in (tmp_path / "third.out").read_text()
        finally:
            os.kill(server_pid, signal.SIGTERM)
            wait_for(lambda: not answers(first_port), "the orphaned redis-server to stop")

    # Once no server holds it, the directory is free again (and its data intact).
    server = EmbeddedRedis(port=0, data_dir=data)
    with server:
        assert answers(server.port)


CLUSTER_NODES = 6  # runctl dev --cluster: 3 masters and a replica each, on PORT..PORT+5


def cluster_ports(avoid: set[int]) -> int:
    """A base port whose 6 ports and their cluster-bus ports (+10000) are all free."""
    for base in range(21000, 45000, 97):
        ports = {base + i for i in range(CLUSTER_NODES)}
        ports |= {p + 10000 for p in ports}
        if not ports & avoid and not any(port_in_use(p) for p in ports):
            return base
    raise AssertionError("no 6 free consecutive ports for a cluster")


@pytest.mark.timeout(180)
def test_a_second_cluster_on_one_data_dir_is_refused(tmp_path: Path, settings: Settings) -> None:
    data = tmp_path / "data"
    first_port = cluster_ports(set())
    taken = {first_port + i + bus for i in range(CLUSTER_NODES) for bus in (0, 10000)}
    second_port = cluster_ports(taken)
    first_out = tmp_path / "first.out"
    with dev(settings, first_port, data, first_out, "--cluster") as first:
        wait_for(lambda: "try, in another terminal" in first_out.read_text(), "dev", timeout=90)
        assert answers(first_port)
        # Another runctl dev --cluster, other ports, the same directory: refused, naming
        # the holder, and not one node of its own started.
        with dev(settings, second_port, data, tmp_path / "second.out", "--cluster") as second:
            assert second.wait(60) == 1
        said = " ".join((tmp_path / "second.out").read_text().split())  # rich wraps lines
        assert "is in use by redis-server pid" in said, said
        assert f"on port {first_port}" in said, said
        assert f"started by pid {first.pid}" in said, said
        assert "--data-dir" in said
        assert not any(port_in_use(second_port + i) for i in range(CLUSTER_NODES))
        # The same from Python; the first cluster is untouched.
        with pytest.raises(DataDirLocked, match=f"started by pid {first.pid}"):
            LocalCluster(data / "cluster", base_port=second_port).start()
        assert answers(first_port)
    # Stopped, the cluster frees its directory.
    lock = DirLock(data / "cluster")
    lock.acquire()
    lock.release()
