"""Upcasters: how readers that fold events see an old event in the current shape.

An event is stored once, as written, with the `schema_version` of its `data`; its hash covers
exactly that, so it is never rewritten. When the shape of an event type's data changes, the
change gets an upcaster here, keyed by `(type, schema_version)`: a pure function from the old
data to the data of the next version. Readers that fold (evolve: the handlers, the projections,
the rebuild, `as_of`, the verify of the read model) see every event upcast to the current
version; the event endpoints and exports serve it as written, so it still re-hashes.

Register upcasters in this module, when it is imported: the rebuild folds in worker processes
too (projections/fill.py), and they know only what importing tasktrail registers. No event type
has changed shape yet, so the registry starts empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tasktrail.domain.events import JsonObject

Upcaster = Callable[[JsonObject], JsonObject]

# (type, schema_version) -> the function that turns that data into schema_version + 1.
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register(event_type: str, schema_version: int, upcaster: Upcaster) -> None:
    """Declare how `event_type` data of `schema_version` becomes `schema_version + 1`."""
    key = (event_type, schema_version)
    if key in _UPCASTERS:
        raise ValueError(f"{event_type} v{schema_version} already has an upcaster")
    _UPCASTERS[key] = upcaster


@contextmanager
def registered(event_type: str, schema_version: int, upcaster: Upcaster) -> Iterator[None]:
    """An upcaster for the length of a block (for tests of the mechanism)."""
    register(event_type, schema_version, upcaster)
    try:
        yield
    finally:
        del _UPCASTERS[(event_type, schema_version)]


def upcast_data(event_type: str, schema_version: int, data: JsonObject) -> tuple[JsonObject, int]:
    """An event's data in the newest shape known, and that shape's version."""
    while (step := _UPCASTERS.get((event_type, schema_version))) is not None:
        data, schema_version = step(data), schema_version + 1
    return data, schema_version
