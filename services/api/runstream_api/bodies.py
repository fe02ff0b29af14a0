"""Request bodies: what a caller may send with a write. Responses are the contracts' and
read models' own Structs (RunSummary, events, Tombstone, revert.Plan)."""

from __future__ import annotations

from typing import Any

import msgspec

from runstream.contracts.commands import DeleteMode, RunId, ScenarioName, ShortText


class StartBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Start a run of ``scenario`` with ``args``; or, with ``source_run_id``, a re-run of
    that run (its scenario, version and arguments, ``args`` on top)."""

    scenario: ScenarioName | None = None
    args: dict[str, Any] = {}
    name: ShortText | None = None
    description: ShortText | None = None
    source_run_id: RunId | None = None


class ReasonBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: ShortText = ""


class RevertBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Also overwrite elements someone else changed since the run wrote them.
    force: bool = False


class DeleteBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # plain: refused while revertable effects are not reverted; revert: revert, then
    # delete; keep_effects: delete and leave the effects in place.
    mode: DeleteMode = "plain"
