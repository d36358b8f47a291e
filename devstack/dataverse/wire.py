"""JSON on the wire without losing decimals: requests parse numbers to Decimal, responses write
Decimal as a bare JSON number with every digit (Money and Decimal columns carry up to 10 places)."""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Any

from devstack.dataverse.errors import DataverseError


def loads(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataverseError(400, "0x80048d19", f"Error identified in Payload provided by the user: {exc}") from None


def dumps(value: Any, *, escape_slash: bool = False) -> str:
    """JSON text; Decimals become exact numbers. `escape_slash` writes `/` as `\\/` the way the WCF
    DataContract serializer does in webhook bodies."""
    marker = secrets.token_hex(4)
    decimals: list[Decimal] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            decimals.append(obj)
            return f"\x00{marker}:{len(decimals) - 1}"
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")

    text = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))
    if decimals:
        pattern = re.compile(r'"\\u0000' + marker + r':(\d+)"')
        text = pattern.sub(lambda m: format(decimals[int(m.group(1))], "f"), text)
    if escape_slash:
        text = text.replace("/", "\\/")
    return text

