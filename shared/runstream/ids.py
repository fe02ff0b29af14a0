"""Run ids: 26-character, time-ordered, Crockford base32 (ULID layout)."""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)
# Command ids come from other services too: any short token of safe characters.
COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"


def new_id() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))
