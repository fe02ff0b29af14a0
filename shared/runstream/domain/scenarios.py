"""Scenarios: registered, versioned definitions of what a run does, and the context a step gets.

A scenario names a parameter schema (a msgspec Struct: arguments are validated before a
run is accepted), an input source (``inputs(params, start)`` yields items from index
``start``, so a run resumes from its checkpoint), and a step function that handles one
item through a ``Context``. Scenarios come from the ``runstream.scenarios`` entry point
group and from module paths in ``RUNSTREAM_SCENARIO_MODULES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

import msgspec

P = TypeVar("P", bound=msgspec.Struct)


class BadArguments(ValueError):
    pass


@dataclass(frozen=True)
class Scenario(Generic[P]):
    name: str
    version: str
    description: str
    params: type[P]
    inputs: Callable[[P, int], Iterable[Any]]
    step: Callable[[Context, P, Any], None]
    # Number of items, when it is known up front (shown as progress).
    count: Callable[[P], int | None] = field(default=lambda _p: None)
    # The project its runs belong to: API tokens give roles per project (or for all).
    project: str = "default"

    def validate(self, args: dict[str, Any]) -> P:
        """Arguments as the scenario's typed parameters, or BadArguments naming what is wrong.

        Strings are accepted for numbers and booleans (the CLI sends ``--arg items=10``).
        """
        try:
            return msgspec.convert(args, self.params, strict=False)
        except msgspec.ValidationError as exc:
            raise BadArguments(f"bad arguments for scenario {self.name!r}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "parameters": msgspec.json.schema(self.params),
        }


# --------------------------------------------------------------------------- context
class NetworkView:
    """What a step sees of the network: its own changes so far over the stored graph.

    Changes are buffered and become effects when the chunk is recorded; nothing here
    writes to Redis. ``reader`` fetches an element's stored attributes (JSON) and stamp,
    or None when it has neither. What a step read is remembered (``reads``): the chunk's
    changes are applied only if those elements are still as read.
    """

    def __init__(self, reader: Callable[[str], tuple[str, str] | None]) -> None:
        self._reader = reader
        self._overlay: dict[str, str] = {}
        self.changes: list[tuple[str, str]] = []
        self.reads: dict[str, tuple[str, str]] = {}

    def rollback(self, keep: int) -> None:
        """Forget every change after the first ``keep`` (a failed item's writes)."""
        del self.changes[keep:]
        self._overlay = dict(self.changes)

    @staticmethod
    def _check_id(node_id: str) -> str:
        if not isinstance(node_id, str) or not node_id or "|" in node_id:
            raise ValueError(f"bad node id {node_id!r}: a non-empty string without '|'")
        return node_id

    def _put(self, element: str, attrs: dict[str, Any] | None) -> None:
        after = "" if attrs is None else msgspec.json.encode(attrs).decode()
        self._overlay[element] = after
        self.changes.append((element, after))

    def _get(self, element: str) -> dict[str, Any] | None:
        if element in self._overlay:
            raw = self._overlay[element]
        else:
            if element not in self.reads:
                self.reads[element] = self._reader(element) or ("", "")
            raw = self.reads[element][0]
        return msgspec.json.decode(raw) if raw else None

    def add_node(self, node_id: str, **attrs: Any) -> None:
        """Create the node, or replace its attributes."""
        self._put(f"n:{self._check_id(node_id)}", attrs)

    def update_node(self, node_id: str, **attrs: Any) -> None:
        element = f"n:{self._check_id(node_id)}"
        current = self._get(element)
        if current is None:
            raise KeyError(f"node {node_id!r} does not exist")
        self._put(element, {**current, **attrs})

    def remove_node(self, node_id: str) -> None:
        self._put(f"n:{self._check_id(node_id)}", None)

    def add_edge(self, src: str, dst: str, **attrs: Any) -> None:
        self._put(f"e:{self._check_id(src)}|{self._check_id(dst)}", attrs)

    def remove_edge(self, src: str, dst: str) -> None:
        self._put(f"e:{self._check_id(src)}|{self._check_id(dst)}", None)

    def get_node(self, node_id: str) -> dict[str, Any] | None:
        return self._get(f"n:{self._check_id(node_id)}")

    def get_edge(self, src: str, dst: str) -> dict[str, Any] | None:
        return self._get(f"e:{self._check_id(src)}|{self._check_id(dst)}")


class ResultTooLarge(Exception):
    """A result file over the per-file or per-run limit: the item, and so the run, fails."""


@dataclass(frozen=True)
class ResultLimits:
    file_bytes: int
    run_bytes: int
    # Files the run already has (name -> bytes): a new file of the same name replaces one.
    kept: dict[str, int] = field(default_factory=dict)


NO_LIMITS = ResultLimits(file_bytes=2**62, run_bytes=2**62)


class Context:
    """Handed to a scenario's step for each item."""

    def __init__(
        self,
        run_id: str,
        reader: Callable[[str], tuple[str, str] | None],
        limits: ResultLimits = NO_LIMITS,
    ) -> None:
        self.run_id = run_id
        self.index = 0
        self.network = NetworkView(reader)
        self.notifications: list[str] = []
        self.log_lines: list[str] = []
        self.result_files: dict[str, str] = {}
        self.result_types: dict[str, str] = {}
        self.limits = limits

    def notify(self, message: str) -> None:
        """An irreversible side effect: sent once the chunk is recorded; never reverted."""
        self.notifications.append(str(message))

    def log(self, line: str) -> None:
        self.log_lines.append(str(line))

    @property
    def results(self) -> Context:
        return self

    def put(self, name: str, content: str, media_type: str = "") -> None:
        """A named result file of the run (``ctx.results.put``); a later put of the same
        name replaces it. Over a size limit: ResultTooLarge (the run fails with it)."""
        name, content = str(name), str(content)
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad result name {name!r}: a non-empty file name without '/'")
        size = len(content.encode())
        if size > self.limits.file_bytes:
            raise ResultTooLarge(
                f"result {name!r} is {size} bytes, over the limit of {self.limits.file_bytes} "
                "bytes per file (RUNSTREAM_MAX_RESULT_BYTES)"
            )
        sizes = {**self.limits.kept, **{n: len(c.encode()) for n, c in self.result_files.items()}}
        sizes[name] = size
        total = sum(sizes.values())
        if total > self.limits.run_bytes:
            raise ResultTooLarge(
                f"result {name!r} brings the run's results to {total} bytes, over the limit of "
                f"{self.limits.run_bytes} bytes per run (RUNSTREAM_MAX_RUN_RESULT_BYTES)"
            )
        self.result_files[name] = content
        if media_type:
            self.result_types[name] = str(media_type)


# --------------------------------------------------------------------------- registry
class Registry:
    def __init__(self) -> None:
        self._scenarios: dict[str, Scenario[Any]] = {}

    def add(self, scenario: Scenario[Any], origin: str = "") -> None:
        if scenario.name in self._scenarios:
            raise ValueError(f"scenario {scenario.name!r} registered twice ({origin})")
        self._scenarios[scenario.name] = scenario

    def find(self, name: str) -> Scenario[Any] | None:
        return self._scenarios.get(name)

    def get(self, name: str) -> Scenario[Any]:
        try:
            return self._scenarios[name]
        except KeyError:
            known = ", ".join(sorted(self._scenarios)) or "none"
            raise BadArguments(f"unknown scenario {name!r} (known: {known})") from None

    def __iter__(self) -> Iterator[Scenario[Any]]:
        return iter(sorted(self._scenarios.values(), key=lambda s: s.name))


def load_registry(modules: Iterable[str] = ()) -> Registry:
    """Scenarios from entry points, then from module paths ("pkg.mod" or "pkg.mod:ATTR")."""
    registry = Registry()
    for ep in entry_points(group="runstream.scenarios"):
        registry.add(ep.load(), origin=f"entry point {ep.value}")
    for path in modules:
        module_name, _, attr = path.partition(":")
        module = importlib.import_module(module_name)
        found = getattr(module, attr) if attr else getattr(module, "SCENARIOS", None)
        if found is None:
            found = module.SCENARIO
        for scenario in found if isinstance(found, list | tuple) else [found]:
            registry.add(scenario, origin=path)
    return registry
