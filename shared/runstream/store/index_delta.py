"""The change to a run's query index entries, computed here instead of in Redis.

lua/index_update.lua brings a run's entries from its stored postings to new ones by
decoding both and comparing every entry: about half of an append's time in Redis. The
worker usually knows the stored postings (it wrote them, with the run's previous append),
so it sends the change itself, with the postings it is based on; the script applies it
only if those are still the stored ones (index_apply), else falls back to the full diff.
A stale or missing memory here costs speed, never correctness.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from runstream.query import Posting

# Runs whose last written postings are remembered (a few KB each).
REMEMBERED_RUNS = 4096

NONE: Posting = {"z": {}, "s": [], "t": "", "l": {}}

_ops_encoder = msgspec.json.Encoder()


def delta(old: Posting, new: Posting) -> list[str]:
    """The triples (op, field or member, value) index_apply takes: exactly the writes
    index_update would make to go from ``old`` to ``new``."""
    ops: list[str] = []
    _dict_delta(ops, old["z"], new["z"], "za", "zr")
    old_t, new_t = old.get("t", ""), new.get("t", "")
    if old_t != new_t:
        ops += ("ta", "", new_t) if new_t else ("tr", "", "")
    # A lexical entry's member holds its text: a changed one is removed by its old text.
    old_l, new_l = old.get("l", {}), new.get("l", {})
    for name, prefix in old_l.items():
        if new_l.get(name) != prefix:
            ops += ("lr", name, prefix)
    for name, prefix in new_l.items():
        if old_l.get(name) != prefix:
            ops += ("la", name, prefix)
    old_s, new_s = set(old["s"]), set(new["s"])
    for member in old_s - new_s:
        ops += ("sr", member, "")
    for member in new_s - old_s:
        ops += ("sa", member, "")
    return ops


def _dict_delta(
    ops: list[str], old: dict[str, Any], new: dict[str, Any], put: str, drop: str
) -> None:
    for name in old.keys() - new.keys():
        ops += (drop, name, "")
    for name, value in new.items():
        if old.get(name) != value:
            ops += (put, name, value)


class IndexMemory:
    """The postings this process last wrote per run (most recent runs only)."""

    def __init__(self, size: int = REMEMBERED_RUNS) -> None:
        self.size = size
        self._written: OrderedDict[str, tuple[bytes, Posting]] = OrderedDict()

    def change(self, run_id: str, new: Posting, *, new_run: bool) -> tuple[bytes, bytes]:
        """(based_on, ops) for the scripts: ops b"" when the stored postings are unknown
        here. A run without history has none stored."""
        known = self._written.get(run_id)
        if known is None:
            if not new_run:
                return b"", b""
            known = (b"", NONE)
        return known[0], _ops_encoder.encode(delta(known[1], new))

    def wrote(self, run_id: str, raw: bytes, postings: Posting) -> None:
        self._written[run_id] = (raw, postings)
        self._written.move_to_end(run_id)
        while len(self._written) > self.size:
            self._written.popitem(last=False)

    def forget(self, run_id: str) -> None:
        self._written.pop(run_id, None)
