"""Turning a chunk's buffered network changes into effect records (with their befores)."""

from __future__ import annotations

from runstream.contracts.events import EffectRecord, stamp_of
from runstream.store.network import NetworkStore


async def record_effects(
    network: NetworkStore,
    run_id: str,
    first_effect: int,
    changes: list[tuple[str, str]],
    reads: dict[str, tuple[str, str]] | None = None,
) -> list[EffectRecord]:
    """Each change with the element's state just before it: as the chunk's steps read it,
    else as stored now, or an earlier change of the same chunk. Effect n's stamp is
    ``<run_id>/<n>``, so chained changes of one element expect each other's stamps; and
    the apply script checks the first ones against the store, so a change based on a read
    that someone else's write has made stale is refused, not applied over that write."""
    reads = reads or {}
    elements = list(dict.fromkeys(element for element, _ in changes))
    unread = [element for element in elements if element not in reads]
    values, stamps = await network.read(unread)
    value_of = {element: reads[element][0] for element in elements if element in reads}
    stamp_of_element = {element: reads[element][1] for element in elements if element in reads}
    value_of.update(zip(unread, values, strict=True))
    stamp_of_element.update(zip(unread, stamps, strict=True))
    records: list[EffectRecord] = []
    for offset, (element, after) in enumerate(changes):
        records.append(EffectRecord(element, value_of[element], after, stamp_of_element[element]))
        value_of[element] = after
        stamp_of_element[element] = stamp_of(run_id, first_effect + offset)
    return records
