"""``record``: a frozen value class that is cheap to build, for the types a request's
hot path creates and reads (issue 16).

``@dataclass(frozen=True, slots=True)`` makes every field assignment in ``__init__`` a
call of ``object.__setattr__`` (the class's own ``__setattr__`` refuses writes): on the
development box a 20-field frozen class took 3.5 µs to build against 0.47 µs for the
same class unfrozen, and an Accounting-Request builds several (the event, the session's
fields, the write, its result). ``record`` is ``dataclass(slots=True, unsafe_hash=True)``
at run time (``__eq__``, ``__hash__`` over the fields, ``dataclasses.replace``, no
``__dict__``: the same as frozen) and, by PEP 681's ``dataclass_transform(frozen_default=
True)``, frozen to the type checker: ``mypy --strict`` rejects an assignment to a field
as it would on a frozen dataclass, so the code stays as immutable as before, checked
before it runs instead of while it runs (``tests/test_record.py`` holds both halves).
Use plain ``dataclass(frozen=True)`` where a value is built rarely (configuration).
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

__all__ = ["record"]

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """The class as a slotted, hashable dataclass, frozen to the type checker."""
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)
