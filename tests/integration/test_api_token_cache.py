"""The API remembers a valid token's record for a few seconds (token_cache): a revoked
token is forgotten as soon as its revocation's message arrives (every API process), and
within TOKEN_CACHE_S when the message is missed; an unknown one is never remembered, and
the cache stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aredis

from runstream import processes
from runstream.connect import open_redis
from runstream.embedded import free_port
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.tokens import TokenRecord, TokenStore
from runstream_api.token_cache import TokenCache

from .api_service import ApiService, api_service, create_token
from .support import service_env


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_the_revocation_message_a_revoked_token_is_refused_once_its_record_expires(
    settings: Settings,
) -> None:
    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = TokenStore(redis, keys)
            clock = Clock()
            cache = TokenCache(store, ttl_s=5.0, clock=clock)
            text, record = await store.create("alice", "viewer")
            assert await cache.check(text) == record
            assert await store.revoke(record.id)
            clock.now += 4.9  # still remembered: at most ttl_s of grace
            assert await cache.check(text) == record
            clock.now += 0.2
            assert await cache.check(text) is None
            assert await cache.check(text) is None  # and a "no" is not remembered as a "yes"

    asyncio.run(main())


def test_an_unknown_token_is_asked_about_every_time(settings: Settings) -> None:
    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = TokenStore(redis, keys)
            cache = TokenCache(store, clock=Clock())
            text, record = await store.create("bob", "operator")
            wrong = text[:-4] + "AAAA"
            assert await cache.check(wrong) is None
            assert await cache.check("not a token") is None
            assert cache._entries == {}
            assert await cache.check(text) == record
            assert list(cache._entries) != []

    asyncio.run(main())


def test_the_cache_forgets_its_oldest_token_past_its_size(settings: Settings) -> None:
    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = TokenStore(redis, keys)
            cache = TokenCache(store, max_entries=3, clock=Clock())
            texts = [(await store.create(f"s{i}", "viewer"))[0] for i in range(5)]
            for text in texts:
                assert await cache.check(text) is not None
            assert len(cache._entries) == 3
            await store.revoke(texts[0].split("_")[1])  # forgotten: Redis is asked again
            assert await cache.check(texts[0]) is None
            await store.revoke(texts[4].split("_")[1])  # remembered: still honoured
            assert await cache.check(texts[4]) is not None

    asyncio.run(main())


def test_a_revocation_message_makes_the_cache_forget_the_token_at_once(
    settings: Settings,
) -> None:
    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = TokenStore(redis, keys)
            # The clock never moves: only the message can make the cache ask Redis again.
            cache = TokenCache(store, ttl_s=5.0, clock=Clock())
            async with following(cache, redis, keys):
                text, record = await store.create("dave", "viewer")
                other, other_record = await store.create("erin", "viewer")
                assert await cache.check(text) == record
                assert await cache.check(other) == other_record
                assert await store.revoke(record.id)
                await until_true(lambda: len(cache._entries) == 1, "the revoked token forgotten")
                assert await cache.check(text) is None
                assert await cache.check(other) == other_record  # the others stay remembered

    asyncio.run(main())


def test_a_token_replaced_under_its_id_is_forgotten_at_once(settings: Settings) -> None:
    # runctl dev creates its token under the id "dev" at each start: the previous one stops.
    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = TokenStore(redis, keys)
            cache = TokenCache(store, ttl_s=5.0, clock=Clock())
            async with following(cache, redis, keys):
                old, _ = await store.create("dev", "admin", token_id="dev")
                assert await cache.check(old) is not None
                new, _ = await store.create("dev", "admin", token_id="dev")
                await until_true(lambda: not cache._entries, "the replaced token forgotten")
                assert await cache.check(old) is None
                assert await cache.check(new) is not None

    asyncio.run(main())


def test_a_record_read_before_a_revocation_arrived_is_not_remembered(
    settings: Settings,
) -> None:
    class SlowStore(TokenStore):
        """Its check answers only once the test let it (a revocation came meanwhile)."""

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.reading = asyncio.Event()
            self.answer = asyncio.Event()

        async def check(self, token: str) -> TokenRecord | None:
            record = await super().check(token)
            self.reading.set()
            await self.answer.wait()
            return record

    async def main() -> None:
        async with redis_and_keys(settings) as (redis, keys):
            store = SlowStore(redis, keys)
            cache = TokenCache(store, ttl_s=5.0, clock=Clock())
            text, record = await store.create("frank", "viewer")
            checking = asyncio.create_task(cache.check(text))
            await store.reading.wait()
            assert await store.revoke(record.id)
            cache.forget(record.id)  # what follow does when the message arrives
            store.answer.set()
            assert await checking == record  # read before the revocation: answered...
            assert cache._entries == {}  # ...but not remembered

    asyncio.run(main())


def test_through_http_a_revoked_token_is_refused_at_once_by_every_api_process(
    settings: Settings, tmp_path: Path
) -> None:
    with api_service(settings, tmp_path) as api, second_api(api, tmp_path) as url2:
        urls = [api.url, url2]
        for url in urls:  # both listen for revocations
            deadline = time.monotonic() + 15
            while not httpx.get(f"{url}/health").json()["token_revocations"]:
                assert time.monotonic() < deadline, f"{url} never subscribed"
                time.sleep(0.05)
        token = create_token(api.settings, "carol", "viewer")
        headers = {"Authorization": f"Bearer {token}"}
        clients = [httpx.Client(base_url=u, headers=headers, timeout=30.0) for u in urls]
        try:
            for http in clients:  # each process remembers the token now
                assert http.get("/scenarios").status_code == 200
            asyncio.run(_revoke(api.settings, token.split("_")[1]))
            revoked_at = time.monotonic()
            for http in clients:
                # Remembered less than a second ago, it would be honoured for TOKEN_CACHE_S
                # more without the message; the message arrives in milliseconds.
                while http.get("/scenarios").status_code == 200:
                    assert time.monotonic() - revoked_at < 1.0, f"{http.base_url} honours it"
                    time.sleep(0.01)
                assert http.get("/scenarios").status_code == 401
        finally:
            for http in clients:
                http.close()


@contextlib.contextmanager
def second_api(api: ApiService, directory: Path) -> Iterator[str]:
    """Another API process on the same Redis and settings; its URL."""
    port = free_port()
    proc = processes.start_api(service_env(api.settings), port, directory / "api2.log")
    try:
        url = f"http://127.0.0.1:{port}"
        processes.wait_http(proc, f"{url}/health")
        yield url
    finally:
        processes.stop_all([proc], grace=5)
        proc.close()


async def until_true(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"not {what} after {timeout:g}s"
        await asyncio.sleep(0.01)


async def _revoke(settings: Settings, token_id: str) -> None:
    async with redis_and_keys(settings) as (redis, keys):
        await TokenStore(redis, keys).revoke(token_id)


@contextlib.asynccontextmanager
async def redis_and_keys(settings: Settings) -> AsyncIterator[tuple[aredis.Redis, Keys]]:
    redis = open_redis(settings)
    try:
        yield redis, Keys(settings.prefix, settings.shards)
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def following(cache: TokenCache, redis: aredis.Redis, keys: Keys) -> AsyncIterator[None]:
    """The cache following revocation messages (as the API process does) while inside."""
    follow = asyncio.create_task(cache.follow(redis, keys.api_tokens_changed))
    try:
        await until_true(lambda: cache.subscribed, "subscribed")
        yield
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
