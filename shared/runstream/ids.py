"""Run ids: 26-character, time-ordered, Crockford base32 (ULID layout).

Patterns end in ``\\Z``, not ``$``: Python's ``$`` also matches before a final newline, so
``"<valid id>\\n"`` would pass as a second, different id that prints like the first.
msgspec applies a pattern with ``re.search``, hence the anchors on both ends.
"""

from __future__ import annotations

import os
import re
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
RUN_ID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}\Z"
_RUN_ID = re.compile(RUN_ID_PATTERN)
# Command ids come from other services too: any short token of safe characters.
COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}\Z"
_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


def new_id() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_run_id(text: str) -> bool:
    return _RUN_ID.fullmatch(text) is not None


def is_command_id(text: str) -> bool:
    return _COMMAND_ID.fullmatch(text) is not None
