"""A Redis Cluster on loopback ports, from the same redis-server binary as ``runctl dev``.

Masters and replicas are separate ``redis-server --cluster-enabled yes`` processes, each in
its own directory; ``redis-cli --cluster create`` (the one beside the binary, else one on
PATH) assigns the slots and the replicas. For the tests, ``runctl dev --cluster`` and
failover drills (``kill`` a master: its replica is promoted after the node timeout).

With ``base_port`` the nodes take fixed ports (base, base+1, ...) and directories named by
them: started again on the same directory, the nodes read their ``nodes.conf`` and AOF and
form the same cluster again (no ``create``).

Like EmbeddedRedis, a cluster holds its directory's lock (runstream.dirlock) for as long as
any of its nodes lives: two clusters on one directory would share nodes' AOF files.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from runstream.dirlock import DirLock
from runstream.embedded import find_redis_server, port_in_use


@dataclass
class ClusterNodeProcess:
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None


# A node's cluster bus listens 10000 above its port: both must be free, the port <= 55535.
_BUS_OFFSET = 10000


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 45000)
        if port in taken or port + _BUS_OFFSET in taken:
            continue
        if not port_in_use(port) and not port_in_use(port + _BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair (port, port+10000) for a cluster node")


def _redis_cli(server: str) -> str:
    beside = Path(server).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError(f"no redis-cli beside {server} or on PATH to create a cluster with")
    return found


@dataclass
class LocalCluster:
    directory: Path
    masters: int = 3
    replicas: int = 1
    prefer: str = "auto"
    # AOF on each node (runctl dev keeps its data); the tests run without.
    appendonly: bool = False
    node_timeout_ms: int = 2000
    base_port: int = 0
    nodes: list[ClusterNodeProcess] = field(default_factory=list)
    binary: str = ""
    origin: str = ""
    _lock: DirLock | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The REDIS_URL of the cluster: its masters as start-up nodes."""
        # With fixed ports it is known before the start (to configure the workers with).
        ports = [n.port for n in self.nodes] or [self.base_port + i for i in range(self.masters)]
        seeds = ",".join(f"127.0.0.1:{port}" for port in ports[: self.masters])
        return f"redis+cluster://{seeds}"

    def start(self, timeout: float = 30.0) -> LocalCluster:
        server, self.origin = find_redis_server(self.prefer)
        self.binary = server
        cli = _redis_cli(server)
        # One cluster per directory (DataDirLocked names the holder), before any node runs.
        self._lock = DirLock(self.directory)
        self._lock.acquire()
        self.nodes = []
        try:
            for i in range(self.masters * (1 + self.replicas)):
                taken = {n.port for n in self.nodes}
                port = self.base_port + i if self.base_port else cluster_port(taken)
                node = ClusterNodeProcess(port, self.directory / f"node-{port}")
                self.nodes.append(node)
                self._spawn(server, node)
            first = self.nodes[0]
            assert first.proc is not None
            self._lock.record(server_pid=first.proc.pid, server_port=first.port)
            for node in self.nodes:
                self._wait_ping(node, timeout)
            if all((n.directory / "nodes.conf").exists() for n in self.nodes) and self._known():
                self.wait_ok(timeout)  # formed before: the nodes found each other again
                return self
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            create = [cli, "--cluster", "create", *addresses]
            create += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
            if done.returncode != 0:
                output = (done.stdout + done.stderr).decode(errors="replace")
                raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _known(self) -> bool:
        """Do the nodes already belong to one cluster (a restart on the same directory)?"""
        with redis.Redis(port=self.nodes[0].port, socket_timeout=1) as client:
            return len(client.cluster("NODES")) == len(self.nodes)

    def _spawn(self, server: str, node: ClusterNodeProcess) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        command = [server, "--port", str(node.port), "--bind", "127.0.0.1"]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        command += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        # A replica takes over however long it was cut off (the default refuses after
        # 10 node timeouts): a local cluster prefers availability.
        command += ["--cluster-replica-validity-factor", "0"]
        command += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        command += ["--dir", str(node.directory)]
        # Each node holds the directory's lock too, for as long as it lives.
        fds = (self._lock.fd,) if self._lock is not None and self._lock.held else ()
        with open(node.directory / "redis.out", "ab") as out:
            node.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, pass_fds=fds
            )

    def _wait_ping(self, node: ClusterNodeProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with redis.Redis(port=node.port, socket_timeout=1) as probe:
            while True:
                if node.proc is not None and node.proc.poll() is not None:
                    out = (node.directory / "redis.out").read_text(errors="replace")
                    raise RuntimeError(f"cluster node on port {node.port} exited:\n{out}")
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node on port {node.port}: {exc}") from None
                    time.sleep(0.05)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and sees ``masters`` masters
        serving slots, all of them live (after a ``kill``: its replica promoted)."""
        deadline = time.monotonic() + timeout
        while True:
            live = {n.port for n in self.live_nodes()}
            states = [self._state(n) for n in self.live_nodes()]
            if (
                states
                and all(
                    state == "ok" and len(serving) == self.masters and serving <= live
                    for state, serving in states
                )
                and self._replicas_synced()
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready after {timeout:g}s: {states}")
            time.sleep(0.1)

    def _replicas_synced(self) -> bool:
        """Every live replica has its master link up (a replica still in its first full
        sync could not take over)."""
        for node in self.live_nodes():
            try:
                with redis.Redis(port=node.port, socket_timeout=1) as client:
                    info = client.info("replication")
            except redis.RedisError:
                return False
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    @staticmethod
    def _state(node: ClusterNodeProcess) -> tuple[str, set[int]]:
        """The node's cluster_state, and the ports of the masters it sees serving slots."""
        try:
            with redis.Redis(port=node.port, socket_timeout=1) as client:
                info = client.cluster("INFO")
                nodes = client.cluster("NODES")
        except redis.RedisError:
            return ("down", set())
        serving = {
            int(address.rsplit(":", 1)[1].split("@")[0])
            for address, v in nodes.items()
            if "master" in v["flags"] and "fail" not in v["flags"] and v["slots"]
        }
        return (str(info.get("cluster_state", "?")), serving)

    def live_nodes(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def master_ports(self) -> list[int]:
        """Ports of the nodes that are masters now (after failovers too)."""
        ports = []
        for node in self.live_nodes():
            with (
                contextlib.suppress(redis.RedisError),
                redis.Redis(port=node.port, socket_timeout=1) as client,
            ):
                if client.info("replication")["role"] == "master":
                    ports.append(node.port)
        return ports

    @property
    def running(self) -> bool:
        return bool(self.nodes) and len(self.live_nodes()) == len(self.nodes)

    @property
    def pid(self) -> int | None:
        first = self.nodes[0].proc if self.nodes else None
        return first.pid if first is not None else None

    @property
    def data_dir(self) -> Path:
        return self.directory

    @property
    def log_path(self) -> Path:
        return self.directory / "node-*" / "redis.out"

    def kill(self, port: int | None = None) -> None:
        """SIGKILL the node on ``port`` (a crash: no shutdown save); every node without."""
        if port is None:
            for node in self.live_nodes():
                self.kill(node.port)
            return
        for node in self.nodes:
            if node.port == port and node.proc is not None:
                node.proc.send_signal(signal.SIGKILL)
                node.proc.wait(10)
                return
        raise ValueError(f"no cluster node on port {port}")

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again on its directory: it reads its ``nodes.conf`` and
        rejoins (a master that was failed over comes back as its successor's replica)."""
        node = next((n for n in self.nodes if n.port == port), None)
        if node is None:
            raise ValueError(f"no cluster node on port {port}")
        if node.proc is not None and node.proc.poll() is None:
            return
        self._spawn(self.binary, node)
        self._wait_ping(node, timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
