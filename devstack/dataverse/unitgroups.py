"""Dual-write's unit group plugin: a unit (`uom`) created with its F&O unit class and no unit group is placed in the
group of that class, which is made on first use with its base unit. Microsoft's "Unified product experience": for
each unit class in finance and operations apps a unit group is created that contains the class's units, with a
default base unit. Dataverse itself requires every unit to name its group (uomscheduleid) and base unit (baseuom)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from devstack.dataverse.schema import Ref, Table

GROUPS_NS = uuid.UUID("0d1e6a52-7c3b-4e8f-9a21-5b6c7d8e9f01")
CLASS_COLUMN = "msdyn_externalunitclassname"

# (table logical name, row id) -> the stored row or None; store(table, row id, row) stores a new row.
Find = Callable[[str, str], dict[str, Any] | None]
Store = Callable[[str, str, dict[str, Any]], None]


def group_ids(unit_class: str) -> tuple[str, str]:
    """The unit group and base unit ids of an F&O unit class (stable, so a class has one group)."""
    key = unit_class.strip().lower()
    return str(uuid.uuid5(GROUPS_NS, f"uomschedule/{key}")), str(uuid.uuid5(GROUPS_NS, f"uom/{key}"))


def place_unit(table: Table, row: dict[str, Any], find: Find, store: Store) -> None:
    """Fill a new unit's group, base unit and quantity from its unit class (nothing when it names its group or has no
    class: Dataverse then refuses the missing group)."""
    unit_class = str(row.get(CLASS_COLUMN) or "").strip()
    if table.logical_name != "uom" or row.get("uomscheduleid") is not None or not unit_class:
        return
    group_id, base_id = group_ids(unit_class)
    if find("uomschedule", group_id) is None:
        base_name = f"{unit_class} base unit"
        group = {"uomscheduleid": group_id, "name": unit_class, "baseuomname": base_name,
                 "description": f"Units of the finance and operations unit class {unit_class}"}
        base = {"uomid": base_id, "name": base_name, "uomscheduleid": Ref("uomschedule", group_id),
                "baseuom": Ref("uom", base_id), "quantity": Decimal(1), "isschedulebaseuom": True,
                CLASS_COLUMN: unit_class}
        for name, made in (("uomschedule", group), ("uom", base)):
            store(name, made[f"{name}id"], made)
    row["uomscheduleid"] = Ref("uomschedule", group_id)
    row.setdefault("baseuom", Ref("uom", base_id))
    if row.get("quantity") is None:
        row["quantity"] = Decimal(1)
    row.setdefault("isschedulebaseuom", False)
