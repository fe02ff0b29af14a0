"""graph-import: loads a small, real, public graph into the network.

The data sets are the classic social networks that networkx ships (BSD licence):
Zachary's karate club (Zachary 1977), the Florentine families (Padgett 1994), Davis'
Southern women (Davis et al. 1941) and Les Misérables co-appearances (Knuth 1993).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any, Literal

import msgspec
import networkx as nx

from runstream.domain.scenarios import Context, Scenario

Dataset = Literal["karate", "florentine", "davis", "les-miserables"]
_LOADERS = {
    "karate": nx.karate_club_graph,
    "florentine": nx.florentine_families_graph,
    "davis": nx.davis_southern_women_graph,
    "les-miserables": nx.les_miserables_graph,
}


class GraphImportParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dataset: Dataset = "karate"
    # Node ids are "<namespace>:<node>"; empty means the data set's name.
    namespace: str = ""


@cache
def _items(dataset: str) -> tuple[tuple[str, Any, Any, dict[str, Any]], ...]:
    """Nodes first, then edges, in a stable order: the checkpoint is an index into this."""
    graph = _LOADERS[dataset]()
    nodes = [("node", str(n), None, _plain(a)) for n, a in sorted(graph.nodes(data=True), key=str)]
    edges = [
        ("edge", str(u), str(v), _plain(a))
        for u, v, a in sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1])))
    ]
    return tuple(nodes + edges)


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in attrs.items()}


def _inputs(p: GraphImportParams, start: int) -> Iterator[tuple[str, Any, Any, dict[str, Any]]]:
    return iter(_items(p.dataset)[start:])


def _step(ctx: Context, p: GraphImportParams, item: tuple[str, Any, Any, dict[str, Any]]) -> None:
    kind, a, b, attrs = item
    ns = p.namespace or p.dataset
    if kind == "node":
        ctx.network.add_node(f"{ns}:{a}", **attrs)
    else:
        ctx.network.add_edge(f"{ns}:{a}", f"{ns}:{b}", **attrs)


SCENARIO = Scenario(
    name="graph-import",
    version="1",
    description="Imports a small public graph (karate club, Florentine families, ...).",
    params=GraphImportParams,
    inputs=_inputs,
    step=_step,
    count=lambda p: len(_items(p.dataset)),
)
