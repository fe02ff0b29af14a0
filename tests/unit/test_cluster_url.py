"""REDIS_URL naming a Redis Cluster: parsed into its nodes, checked, never shown with its
password; the connection factory picks the cluster client for it."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from runstream.connect import open_redis
from runstream.redis_url import BadRedisUrl, check_redis_url, redacted_url, redis_target
from runstream.settings import Settings, load_settings


def test_a_cluster_url_names_its_nodes_and_a_plain_url_for_the_first() -> None:
    target = redis_target("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002/0?x=1")
    assert target.cluster
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert target.url == "redis://app:s3cret@10.0.0.1:7000/0?x=1"


def test_tls_cluster_url_gives_a_rediss_url() -> None:
    target = redis_target("rediss+cluster://h1:7000,h2:7001")
    assert target.url == "rediss://h1:7000"
    assert target.nodes == (("h1", 7000), ("h2", 7001))


def test_a_plain_url_is_one_server() -> None:
    target = redis_target("redis://127.0.0.1:6390/0")
    assert not target.cluster
    assert target.url == "redis://127.0.0.1:6390/0"


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://h1:7000,h2:7001",
        "rediss+cluster://user:pw@h1:7000/0?ssl_cert_reqs=none",
    ],
)
def test_good_cluster_urls_pass_the_check(url: str) -> None:
    assert check_redis_url(url) == url
    assert load_settings({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://h1:7000,h2:notaport", "not a valid URL"),
        ("redis+cluster://h1:7000,,h2:7001", "not host:port"),
        ("redis+cluster://h1:7000,h2:0", "port 0"),
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://", "not host:port"),
    ],
)
def test_bad_cluster_urls_are_refused_naming_why(url: str, says: str) -> None:
    with pytest.raises(BadRedisUrl, match=says):
        check_redis_url(url)


def test_a_cluster_urls_password_is_never_shown() -> None:
    url = "redis+cluster://app:hunter22@h1:7000,h2:7001/9"
    assert "hunter22" not in redacted_url(url)
    with pytest.raises(BadRedisUrl) as caught:
        check_redis_url(url)
    assert "hunter22" not in str(caught.value)


def test_the_factory_builds_a_cluster_client_for_a_cluster_url() -> None:
    settings = Settings(redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001")

    async def nodes() -> set[tuple[str, int]]:
        client = open_redis(settings)
        try:
            assert isinstance(client, RedisCluster)
            return {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()}
        finally:
            await client.aclose()

    assert asyncio.run(nodes()) >= {("127.0.0.1", 7000), ("127.0.0.1", 7001)}
