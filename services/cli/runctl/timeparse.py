"""Times given on the command line: ISO 8601 (a zone, or UTC when none), or an age."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from runctl import errors
from runctl.errors import CliError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, option: str) -> float:
    """Seconds since the epoch from ``2026-11-23T10:00:00Z`` or an age like ``10m``."""
    age = _AGE.match(text.strip())
    if age:
        return time.time() - float(age.group(1)) * _UNIT_S[age.group(2)]
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"bad {option} {text!r}: expected ISO 8601 (2026-11-23T10:00:00Z) "
            "or an age (30s, 10m, 2h, 1d)",
            errors.BAD_INPUT,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(ts: float) -> str:
    """A time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
