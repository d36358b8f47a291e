"""A canonical, stable hash of projected values, for echo and no-op detection.

The same values give the same hash whatever their order, the scale a decimal was written
with (25000 == 25000.0000000000), or the time zone a datetime was expressed in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from core.maps.keys import KeyRef, decimal_text


def _canonical(value: Any) -> Any:
    # Tagged lists keep types apart (the text "1" and the decimal 1 must not collide).
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, Decimal):
        return ["decimal", decimal_text(value)]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"datetime {value.isoformat()} has no time zone")
        return ["datetime", value.astimezone(UTC).isoformat().replace("+00:00", "Z")]
    if isinstance(value, date):
        return ["date", value.isoformat()]
    if isinstance(value, KeyRef):
        return ["ref", value.map, value.side, [[part, _canonical(v)] for part, v in value.values]]
    if isinstance(value, float):
        raise ValueError(f"float {value!r} cannot be hashed exactly: use Decimal")
    raise ValueError(f"cannot hash a {type(value).__name__}")


def stable_hash(values: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of `values`."""
    canonical = {name: _canonical(value) for name, value in values.items()}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
