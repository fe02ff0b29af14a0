"""The API remembers a valid token's record for a few seconds (token_cache): a revoked
token stops working within TOKEN_CACHE_S, an unknown one is never remembered, and the
cache stays bounded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from runstream.connect import open_redis
from runstream.keys import Keys
from runstream.settings import Settings
from runstream.tokens import TokenStore
from runstream_api.token_cache import TOKEN_CACHE_S, TokenCache

from .api_service import api_service, create_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_token_is_refused_once_its_cached_record_expires(settings: Settings) -> None:
    async def main() -> None:
        redis = open_redis(settings)
        try:
            store = TokenStore(redis, Keys(settings.prefix, settings.shards))
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
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_an_unknown_token_is_asked_about_every_time(settings: Settings) -> None:
    async def main() -> None:
        redis = open_redis(settings)
        try:
            store = TokenStore(redis, Keys(settings.prefix, settings.shards))
            cache = TokenCache(store, clock=Clock())
            text, record = await store.create("bob", "operator")
            wrong = text[:-4] + "AAAA"
            assert await cache.check(wrong) is None
            assert await cache.check("not a token") is None
            assert cache._entries == {}
            assert await cache.check(text) == record
            assert list(cache._entries) != []
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_the_cache_forgets_its_oldest_token_past_its_size(settings: Settings) -> None:
    async def main() -> None:
        redis = open_redis(settings)
        try:
            store = TokenStore(redis, Keys(settings.prefix, settings.shards))
            cache = TokenCache(store, max_entries=3, clock=Clock())
            texts = [(await store.create(f"s{i}", "viewer"))[0] for i in range(5)]
            for text in texts:
                assert await cache.check(text) is not None
            assert len(cache._entries) == 3
            await store.revoke(texts[0].split("_")[1])  # forgotten: Redis is asked again
            assert await cache.check(texts[0]) is None
            await store.revoke(texts[4].split("_")[1])  # remembered: still honoured
            assert await cache.check(texts[4]) is not None
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_through_http_a_revoked_token_gets_401_within_the_cache_time(
    settings: Settings, tmp_path: Path
) -> None:
    with api_service(settings, tmp_path) as api:
        token = create_token(api.settings, "carol", "viewer")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30.0) as http:
            assert http.get("/scenarios").status_code == 200
            token_id = token.split("_")[1]
            revoked_at = time.monotonic()
            asyncio.run(_revoke(api.settings, token_id))
            while http.get("/scenarios").status_code == 200:
                assert time.monotonic() - revoked_at < TOKEN_CACHE_S + 2, "still honoured"
                time.sleep(0.2)
            assert http.get("/scenarios").status_code == 401


async def _revoke(settings: Settings, token_id: str) -> None:
    redis = open_redis(settings)
    try:
        await TokenStore(redis, Keys(settings.prefix, settings.shards)).revoke(token_id)
    finally:
        await redis.aclose()
