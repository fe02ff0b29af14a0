"""runstream's Lua scripts, one ``.lua`` file each, loaded by name.

Each script names its KEYS and ARGV as locals first; callers register the text once with
``register_script`` and pass keys and arguments in the order the script's header gives.
A line ``--! include <name>`` is replaced by the text of ``<name>.lua`` (a shared fragment).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

_INCLUDE = "--! include "


@functools.cache
def source(name: str) -> str:
    """The text of ``<name>.lua`` in this package, its includes expanded."""
    text = resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return "".join(
        source(line.removeprefix(_INCLUDE).strip()) if line.startswith(_INCLUDE) else line
        for line in text.splitlines(keepends=True)
    )


def queue_evalsha(pipe: Any, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue an EVALSHA on a pipeline, a single server's or a cluster's. redis-py's cluster
    pipeline refuses its ``evalsha`` method, but routes the raw command by its keys (one
    slot per script call: runstream.keys)."""
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
