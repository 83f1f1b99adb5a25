"""Engine-neutral payload filters: {"field": value}, {"field": [any, of, these]}, {"field": Range(...)}.

`conditions` checks a filter once for every engine and hands the adapters (kind, field, value) triples
to translate into their own vocabulary.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from csrv2_vdb.errors import InvalidArgumentError

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Range:
    """Numeric range condition for a payload field."""

    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


Filter = Mapping[str, Scalar | Sequence[Scalar] | Range]
Condition = tuple[Literal["eq", "any", "range"], str, Any]


_INT64 = (-(2**63), 2**63 - 1)
# A payload field name (dots separate the levels of a nested field); anything else, such as "owner or 1==1",
# is refused here before any engine sees it.
FIELD_PATTERN = re.compile(r"[^\W\d][\w-]{0,254}(\.[^\W\d][\w-]{0,254}){0,31}")
RESERVED_FIELD = "_csrv2_id"  # store.ID_FIELD (filters.py imports nothing from store)


def _scalar(key: str, value: Any) -> str | int | float | bool:
    """A filter value as a plain Python scalar: numpy scalars unwrapped, ints within int64, floats finite."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidArgumentError(f"filter on {key!r}: {value} does not fit the engines' 64-bit integers")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(
                f"filter on {key!r}: {value} is not a finite number; leave a Range bound as None to open it"
            )
        return value
    raise InvalidArgumentError(
        f"filter on {key!r}: expected a string, number or bool, got {type(value).__name__} {value!r}"
    )


def _bound(key: str, value: Any) -> float | None:
    if value is None:
        return None
    value = _scalar(key, value)
    if isinstance(value, bool | str):
        raise InvalidArgumentError(f"filter on {key!r}: a Range bound must be a number, got {value!r}")
    return value


def conditions(filter: Filter | None) -> list[Condition]:
    """A filter as (kind, field, value) triples that every adapter maps to its engine's vocabulary.

    Values are checked here once for every engine (see `_scalar`). An equality on a float becomes a closed
    range, since engines match only ints, strings and bools exactly.
    """
    out: list[Condition] = []
    for key, value in (filter or {}).items():
        if not isinstance(key, str) or not FIELD_PATTERN.fullmatch(key):
            raise InvalidArgumentError(
                f"filter field {key!r} is not a payload field name: use letters, digits, '_' or '-', with '.' "
                "between the levels of a nested field"
            )
        if key == RESERVED_FIELD:
            raise InvalidArgumentError(f"filter field {key!r} is the library's own id field; filter on your fields")
        if isinstance(value, Range):
            bounds = {op: _bound(key, getattr(value, op)) for op in ("gte", "gt", "lte", "lt")}
            out.append(("range", key, Range(**bounds)))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if not value:
                raise InvalidArgumentError(
                    f"filter on {key!r}: an empty list matches nothing; leave the field out instead"
                )
            out.append(("any", key, [_scalar(key, v) for v in value]))
        else:
            scalar = _scalar(key, value)
            if isinstance(scalar, float):
                out.append(("range", key, Range(gte=scalar, lte=scalar)))
            else:
                out.append(("eq", key, scalar))
    return out
