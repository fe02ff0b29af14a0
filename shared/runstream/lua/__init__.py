"""runstream's Lua scripts, one ``.lua`` file each, loaded by name.

Each script names its KEYS and ARGV as locals first; callers register the text once with
``register_script`` and pass keys and arguments in the order the script's header gives.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def source(name: str) -> str:
    """The text of ``<name>.lua`` in this package."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
