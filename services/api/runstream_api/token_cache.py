"""The API's check of a token, remembered for a few seconds, and forgotten at once when the
token is revoked.

Every request carries a token; asking Redis for its record each time was one round trip
per request (a tenth of a GET's cost). A valid token's record is kept here for
``TOKEN_CACHE_S`` seconds. Revoking or replacing a token (``runctl token revoke``,
``TokenStore.changed``) publishes its id on ``Keys.api_tokens_changed``; ``follow``
listens and forgets that token here at once, so every API process refuses it from then
on. Messages are not queued for a listener that is away: while the subscription is down
(Redis restarting, a failover) a revoked token may be honoured up to ``TOKEN_CACHE_S``
more, as before; on subscribing again everything remembered is forgotten (what was
revoked in between is asked about again).

An unknown or revoked token is never remembered: it is asked about again at once (no
stale "no" after a token is created, and a flood of made-up tokens cannot fill the cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aredis
import structlog

from runstream.redis_trouble import REDIS_TROUBLE
from runstream.tokens import TOKEN_CACHE_S, TokenRecord, TokenStore

# Past this many tokens, the oldest remembered one is forgotten first.
MAX_CACHED_TOKENS = 4096
# After the subscription failed, how long before subscribing again.
RESUBSCRIBE_S = 1.0

log = structlog.get_logger("runstream_api")


class TokenCache:
    def __init__(
        self,
        store: TokenStore,
        ttl_s: float = TOKEN_CACHE_S,
        max_entries: int = MAX_CACHED_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        # sha256 of the token (never the token itself) -> (valid until, record).
        self._entries: dict[str, tuple[float, TokenRecord]] = {}
        # Counts what was forgotten: a record read from Redis before a revocation arrived
        # is not remembered after it (its check was in flight when the message came).
        self._generation = 0
        # Whether revocations reach this process now (else: the TOKEN_CACHE_S bound).
        self.subscribed = False

    async def check(self, token: str) -> TokenRecord | None:
        """The record of a valid token (as ``TokenStore.check``), at most ``ttl_s`` old."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        record = await self.store.check(token)
        if record is None:
            self._entries.pop(key, None)
            return None
        if generation != self._generation:
            return record  # read before a revocation arrived: answered, not remembered
        if key not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + self.ttl_s, record)
        return record

    def forget(self, token_id: str) -> None:
        """The token ``token_id`` was revoked or replaced: ask Redis next time."""
        self._generation += 1
        for key, (_, record) in list(self._entries.items()):
            if record.id == token_id:
                del self._entries[key]

    def forget_all(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def follow(self, redis: aredis.Redis, channel: str) -> None:
        """Forget each token named on ``channel`` as its message arrives; until cancelled.
        A failed subscription is retried every RESUBSCRIBE_S (the TTL bounds meanwhile)."""
        while True:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                async for message in pubsub.listen():
                    self._receive(message)
            except REDIS_TROUBLE as exc:
                if self.subscribed:
                    log.warning("token_revocations_unsubscribed", error=str(exc))
            finally:
                self.subscribed = False
                await _close(pubsub)
            await asyncio.sleep(RESUBSCRIBE_S)

    def _receive(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "subscribe":
            # Also after redis-py reconnected by itself: what was revoked while no one
            # listened is not known, so nothing remembered stays.
            self.forget_all()
            if not self.subscribed:
                log.info("token_revocations_subscribed")
            self.subscribed = True
        elif kind == "message":
            data = message["data"]
            self.forget(data.decode() if isinstance(data, bytes) else str(data))


async def _close(pubsub: Any) -> None:
    with contextlib.suppress(*REDIS_TROUBLE):  # the connection is gone already
        await pubsub.aclose()
