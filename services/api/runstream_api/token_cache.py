"""The API's check of a token, remembered for a few seconds.

Every request carries a token; asking Redis for its record each time was one round trip
per request (a tenth of a GET's cost). A valid token's record is kept here for
``TOKEN_CACHE_S`` seconds, so a token revoked (``runctl token revoke``) stops working
within that time on every API process. An unknown or revoked token is never remembered:
it is asked about again at once (no stale "no" after a token is created, and a flood of
made-up tokens cannot fill the cache).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from runstream.tokens import TokenRecord, TokenStore

# How long a revoked token may still be honoured (documented in the README).
TOKEN_CACHE_S = 5.0
# Past this many tokens, the oldest remembered one is forgotten first.
MAX_CACHED_TOKENS = 4096


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

    async def check(self, token: str) -> TokenRecord | None:
        """The record of a valid token (as ``TokenStore.check``), at most ``ttl_s`` old."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self.store.check(token)
        if record is None:
            self._entries.pop(key, None)
            return None
        if key not in self._entries and len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (now + self.ttl_s, record)
        return record
