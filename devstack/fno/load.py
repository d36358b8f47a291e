"""The admin load and delete (not part of F&O): records written or removed straight in the database, as a
data migration or a direct SQL fix would, raising no business or data events (and counted in no stats).

A load upserts each row by its entity key with the parsing, defaults and validation of an OData POST (new
record) or PATCH (existing record), versions and stamps like those writes, then stores all rows in one
transaction with executemany, so 100,000 rows take seconds. One bad row refuses the whole load: the
LoadError names its index and field, and nothing is stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from devstack.fno.auth import Caller
from devstack.fno.errors import ODataError
from devstack.fno.schema import Entity
from devstack.fno.service import Row, Service


class LoadError(Exception):
    def __init__(self, index: int, field: str | None, message: str) -> None:
        super().__init__(f"rows[{index}]" + (f" field '{field}'" if field else "") + f": {message}")
        self.index = index
        self.field = field


@dataclass
class Loaded:
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # matched a record and changed no value: not written, as an OData PATCH would not


def load(service: Service, entity: Entity, rows: list[Any], caller: Caller) -> Loaded:
    # Relation targets (groups, currencies, the company) repeat from row to row: look each up once.
    exists = functools.cache(service.exists)
    keyed = [(keyid_of(service, entity, values), values) for values in _each(rows, service.parse_new, entity)]
    stored = service.storage.get_many(entity.collection, list(dict.fromkeys(k for k, _ in keyed)))
    current: dict[str, Row] = {k: service.decode(entity, s) for k, s in stored.items()}
    dirty: dict[str, None] = {}  # keyids to write, in load order
    result = Loaded()
    for index, (keyid, values) in enumerate(keyed):
        before = current.get(keyid)
        try:
            if before is None:
                row = service.new_row(entity, values, caller, exists)
                row["@version"] = 1
                result.created += 1
            else:
                # A later row of the same load updates what an earlier one made, as two requests would.
                changes = {k: v for k, v in values.items() if k not in entity.keys}
                row, changed = service.revised(entity, before, changes, caller, exists)
                if not changed:
                    result.unchanged += 1
                    continue
                row["@version"] = before["@version"] + 1
                result.updated += 1
        except ODataError as err:
            raise _refused(index, err) from None
        current[keyid] = row
        dirty[keyid] = None
    new = [k for k in dirty if k not in stored]
    with service.storage.transaction():
        first = service.storage.next_number("recid", step=len(new)) - len(new) + 1 if new else 0
        service.storage.insert_many(entity.collection, [
            (k, service.company_of(entity, current[k]), first + i, current[k]["@version"],
             service.encode(entity, current[k])) for i, k in enumerate(new)])
        service.storage.update_many(entity.collection, [
            (k, current[k]["@version"], service.encode(entity, current[k])) for k in dirty if k in stored])
    return result


def delete(service: Service, entity: Entity, keys: list[Any]) -> int:
    """Delete the records of `keys` (each every key field of the entity); how many there were. No
    validateDelete either: a direct delete can leave references dangling, which is what drift looks like."""
    keyids = []
    for index, values in enumerate(_each(keys, service.parse_body, entity, allow_keys=True)):
        wrong = sorted(set(entity.keys) ^ set(values))
        if wrong:
            raise LoadError(index, wrong[0], f"a key names exactly the key fields of {entity.collection}: "
                                             f"{', '.join(entity.keys)}")
        keyids.append(service.keyid(entity, values))
    with service.storage.transaction():
        return service.storage.delete_many(entity.collection, keyids)


def keyid_of(service: Service, entity: Entity, values: Row) -> str:
    """The key of the record a row's values name (a missing key field counts as its empty value)."""
    empty = service.schema.empty_row(entity)
    return service.keyid(entity, {k: values.get(k, empty[k]) for k in entity.keys})


def _each(items: list[Any], parse: Any, entity: Entity, **options: Any) -> list[Row]:
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse(entity, item, **options))
        except ODataError as err:
            raise _refused(index, err) from None
    return parsed


def _refused(index: int, err: ODataError) -> LoadError:
    return LoadError(index, err.field, err.inner or err.message)
