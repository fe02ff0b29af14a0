"""Times on the wire: ISO 8601 with the zone (UTC), never epoch floats.

The contracts and read models keep times as epoch seconds (cheap to store and compare);
what the API sends converts every ``at`` / ``*_at`` field on the way out. A zero time
means "not yet" (a run not started) and goes out as null. Only the models' own fields are
converted, and the models nested under ``NESTED`` keys: never a run's arguments or labels
(user data that may well have a key ending in ``_at``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NESTED = frozenset({"run", "runs", "event", "events", "tombstone"})


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _is_time(key: str, value: Any) -> bool:
    return (
        (key == "at" or key.endswith("_at"))
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    )


def iso_times(value: Any) -> Any:
    """A model as builtins (``msgspec.to_builtins``) with its time fields as ISO 8601."""
    if isinstance(value, list):
        return [iso_times(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if _is_time(key, item):
            out[key] = iso(item) if item else None
        elif key in NESTED:
            out[key] = iso_times(item)
        else:
            out[key] = item
    return out
