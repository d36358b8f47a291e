"""The one error a payload parser raises: what is wrong with the payload and where."""

from __future__ import annotations


class PayloadError(ValueError):
    """A payload that cannot become change events. Terminal: sending it again cannot help.

    `field` is a JSON path into the payload (`InputParameters[0].value.Attributes[2].value`) or a
    header name, so the sender can see what to fix.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
