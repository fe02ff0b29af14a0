"""API tokens: who calls the HTTP API, and with which role, for one project or all.

A token is ``rst_<id>_<secret>``; Redis keeps only its sha256 (``Keys.api_tokens``: hash
id -> TokenRecord JSON), so a token is shown once, at creation. Roles rank
viewer < operator < admin: a viewer reads; an operator also starts, stops, continues and
cancels; an admin also reverts, deletes and manages tokens. The token's subject is the
actor of the commands it sends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Annotated, Literal

import msgspec
import redis.asyncio as aredis

from runstream.keys import Keys

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
# Every project: a token for all of them.
ALL_PROJECTS = "*"
DEFAULT_PROJECT = "default"
# How long an API process may go on honouring a token after it was revoked when it missed
# the revocation's message (its subscription was down): it remembers a token it checked
# that long (runstream_api.token_cache), not to ask Redis per request. With the message, it
# forgets the token at once.
TOKEN_CACHE_S = 5.0
TOKEN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}\Z"
_TOKEN = re.compile(r"rst_([a-z0-9][a-z0-9-]{0,39})_([A-Za-z0-9_-]{20,100})\Z")

Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Project = Annotated[str, msgspec.Meta(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,63})\Z")]


class TokenRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    subject: Subject
    role: Role
    project: Project = ALL_PROJECTS
    created_at: float = 0.0
    # sha256 of the whole token, hex; never the token itself.
    sha256: str = ""


class BadToken(ValueError):
    pass


def rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1


def allows(token: TokenRecord, needed: Role, project: str) -> bool:
    """Does ``token`` carry at least ``needed`` for ``project``?"""
    in_scope = token.project in (ALL_PROJECTS, project)
    return in_scope and rank(token.role) >= rank(needed)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_decoder = msgspec.json.Decoder(TokenRecord)
_encoder = msgspec.json.Encoder()


class TokenStore:
    def __init__(self, redis: aredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.api_tokens
        self.changed_channel = keys.api_tokens_changed

    async def create(
        self, subject: str, role: Role, project: str = ALL_PROJECTS, token_id: str | None = None
    ) -> tuple[str, TokenRecord]:
        """A new token (its text, shown once) and its record; ``token_id`` replaces the
        token of that id if there is one (``runctl dev``'s own token)."""
        token_id = token_id or secrets.token_hex(6)
        if not re.fullmatch(TOKEN_ID_PATTERN, token_id):
            raise BadToken(f"bad token id {token_id!r}: lower-case letters, digits and '-'")
        text = f"rst_{token_id}_{secrets.token_urlsafe(32)}"
        try:
            record = msgspec.convert(
                {
                    "id": token_id,
                    "subject": subject,
                    "role": role,
                    "project": project,
                    "created_at": time.time(),
                    "sha256": _digest(text),
                },
                TokenRecord,
            )
        except msgspec.ValidationError as exc:
            raise BadToken(f"bad token: {exc}") from None
        replaced = await self.redis.hset(self.key, token_id, _encoder.encode(record)) == 0
        if replaced:
            await self.changed(token_id)
        return text, record

    async def list(self) -> list[TokenRecord]:
        raw = await self.redis.hvals(self.key)
        return sorted((_decoder.decode(r) for r in raw), key=lambda t: (t.created_at, t.id))

    async def revoke(self, token_id: str) -> bool:
        if not await self.redis.hdel(self.key, token_id):
            return False
        await self.changed(token_id)
        return True

    async def changed(self, token_id: str) -> None:
        """Tell every API process that the token ``token_id`` was revoked or replaced:
        after the write, so that one that forgets it and asks again reads the change."""
        await self.redis.publish(self.changed_channel, token_id)

    async def check(self, token: str) -> TokenRecord | None:
        """The record of a valid token; None for a malformed, unknown or revoked one."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        raw = await self.redis.hget(self.key, match[1])
        if raw is None:
            return None
        record = _decoder.decode(raw)
        return record if hmac.compare_digest(record.sha256, _digest(token)) else None
