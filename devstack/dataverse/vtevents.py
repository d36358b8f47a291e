"""Virtual table events: the OnExternalCreated / OnExternalUpdated / OnExternalDeleted actions an external
system calls to tell Dataverse that a row of a virtual table changed at the source. Each is available only
when the table's `virtualentitymetadata` row enables it, and it runs the asynchronous webhook steps
registered on that message and table (the only pipeline a virtual table's events take part in)."""

from __future__ import annotations

from typing import Any, get_args

from devstack.dataverse.errors import INVALID_ARGUMENT, DataverseError, bad_request
from devstack.dataverse.records import Event, Message, OperationContext, Pipeline, Records
from devstack.dataverse.schema import Schema, Table
from devstack.dataverse.seed import EXTERNAL_MESSAGES, seed_id
from devstack.dataverse.store import Database

FLAGS = {
    "OnExternalCreated": "isonexternalcreatedenabled",
    "OnExternalUpdated": "isonexternalupdatedenabled",
    "OnExternalDeleted": "isonexternaldeletedenabled",
}
assert set(FLAGS) <= set(get_args(Message))


def action_of(path: str) -> str | None:
    """`OnExternalCreated` (as the action reference lists it) or `<set>/Microsoft.Dynamics.CRM.OnExternalCreated`."""
    last = path.rsplit("/", 1)[-1].removeprefix("Microsoft.Dynamics.CRM.")
    return last if last in FLAGS else None


async def register_filters(records: Records, table: Table, ctx: OperationContext) -> None:
    """The sdkmessagefilter rows a webhook step on a virtual table's OnExternal* messages is registered with."""
    filters = records.schema.table("sdkmessagefilter")
    for message in EXTERNAL_MESSAGES:
        row_id = seed_id("sdkmessagefilter", message, table.logical_name)
        if records.get(filters, row_id) is not None:
            continue
        values = records.parse_body(
            filters,
            {
                "name": f"{message} of {table.logical_name}",
                "primaryobjecttypecode": table.logical_name,
                "secondaryobjecttypecode": "none",
                "sdkmessageid@odata.bind": f"/sdkmessages({seed_id('sdkmessage', message)})",
            },
        )
        await records.create(filters, values, ctx, row_id=row_id)


def _entity(schema: Schema, raw: Any, name: str, table: Table | None) -> tuple[Table, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise bad_request(f"The parameter '{name}' must be an entity object with '@odata.type'.")
    odata_type = str(raw.get("@odata.type", "")).removeprefix("#").removeprefix("Microsoft.Dynamics.CRM.")
    if table is None:
        found = schema.tables.get(odata_type)
        if found is None:
            raise bad_request(f"{name}: '@odata.type' must name a table, e.g. 'Microsoft.Dynamics.CRM.new_customer'.")
        table = found
    elif odata_type and odata_type != table.logical_name:
        raise bad_request(f"{name}: '@odata.type' '{odata_type}' does not match the table '{table.logical_name}'.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("@"):
            continue
        column = table.columns.get(key)
        if column is None:
            raise bad_request(f"{name}: the property '{key}' does not exist on '{table.logical_name}'.")
        values[key] = column.coerce(value)
    return table, values


async def on_external(
    records: Records,
    pipeline: Pipeline,
    db: Database,
    action: str,
    body: Any,
    bound: Table | None,
    ctx: OperationContext,
) -> None:
    """Runs the action; `pipeline` is the webhook pipeline itself (no row is written, so nothing is counted)."""
    if not isinstance(body, dict):
        raise bad_request(f"{action} needs a JSON body with 'Target'.")
    table, target = _entity(records.schema, body.get("Target"), "Target", bound)
    if table.virtual is None:
        raise DataverseError(
            400, INVALID_ARGUMENT, f"{action} is only for virtual tables; '{table.logical_name}' is a standard table."
        )
    settings = [
        d
        for _, _, d in db.scan("virtualentitymetadata")
        if str(d.get("extensionofrecordid") or "").lower() == table.virtual.metadata_id
    ]
    if not any(d.get(FLAGS[action]) for d in settings):
        raise DataverseError(
            400,
            INVALID_ARGUMENT,
            f"{action} is not enabled for the virtual table "
            f"'{table.logical_name}': set {FLAGS[action]} on its "
            "virtualentitymetadata row (extensionofrecordid = the table's "
            "MetadataId).",
        )
    row_id = target.get(table.primary_id)
    if not row_id:
        raise bad_request(f"{action}: Target must carry the row's id '{table.primary_id}'.")
    pre = None
    if body.get("PreImage") is not None:
        pre = _entity(records.schema, body["PreImage"], "PreImage", table)[1]
    changed = body.get("ChangedFields")
    sent = set(changed) if isinstance(changed, list) and changed else set(target)
    message: Message = action  # type: ignore[assignment]
    event = Event(
        message,
        table,
        str(row_id),
        target,
        sent,
        pre,
        None if action == "OnExternalDeleted" else target,
        None,
        None,
        ctx,
    )
    async with db.unit():  # the steps start once the (empty) unit commits, as after any write
        pipeline.queue_async(event)
