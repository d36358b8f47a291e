"""The sync engine: routing ingested change events to maps, applying them to the other side."""
