"""Input a caller got wrong, as the core says it: one type the entry points answer with a 400 naming the field."""

from __future__ import annotations


class BadInput(ValueError):
    """A request parameter, body field or header that is wrong; `field` names it (`limit`, `ids.3`, `If-Match`)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
