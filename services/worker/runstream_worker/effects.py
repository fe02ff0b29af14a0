"""Turning a chunk's buffered network changes into effect records (with their befores)."""

from __future__ import annotations

from runstream.contracts.events import EffectRecord, stamp_of
from runstream.store.network import NetworkStore


async def record_effects(
    network: NetworkStore, run_id: str, first_effect: int, changes: list[tuple[str, str]]
) -> list[EffectRecord]:
    """Each change with the element's state just before it: stored, or an earlier change
    of the same chunk. Effect n's stamp is ``<run_id>/<n>``, so chained changes of one
    element expect each other's stamps."""
    elements = list(dict.fromkeys(element for element, _ in changes))
    values, stamps = await network.read(elements)
    value_of = dict(zip(elements, values, strict=True))
    stamp_of_element = dict(zip(elements, stamps, strict=True))
    records: list[EffectRecord] = []
    for offset, (element, after) in enumerate(changes):
        records.append(EffectRecord(element, value_of[element], after, stamp_of_element[element]))
        value_of[element] = after
        stamp_of_element[element] = stamp_of(run_id, first_effect + offset)
    return records
