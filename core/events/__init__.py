"""Change events and the parsers that make them from Dataverse and F&O payloads."""

from core.events.model import ChangeEvent, Operation, Source, as_lookup_ref, lookup_ref, wire_value

__all__ = ["ChangeEvent", "Operation", "Source", "as_lookup_ref", "lookup_ref", "wire_value"]
