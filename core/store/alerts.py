"""Alert rules, the state of each alert, and the alert history, in Table Storage.

Table `alertrules`: PartitionKey "rule", RowKey = the rule's name, the rule as JSON; a row ("seed",
"defaults") says the shipped rules were put in once (deleting one then keeps it deleted).
Table `alertstate`: PartitionKey = rule, RowKey = subject (map, side or `*`); written only with the etag it
was read with (or created only if absent), so of several instances evaluating at once exactly one records a
change of state and acts on it.
Table `alerthistory`: PartitionKey "history", RowKey newest first: each firing and resolving with the
figure that caused it, what was done and what each notification channel answered.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from pydantic import BaseModel, Field

from core.ops.alerts.evaluate import AlertState, Change
from core.ops.alerts.rules import AlertRule
from core.store.tables import Tables, newest_first_key


class RuleNotFound(LookupError):
    pass


class RuleChanged(Exception):
    """The rule is not at the version the writer read (If-Match)."""


class HistoryEntry(BaseModel):
    at: datetime
    rule: str
    subject: str
    kind: Change
    value: float | None
    threshold: float
    condition: str
    actions: list[str] = Field(default_factory=list)
    notifications: dict[str, str] = Field(default_factory=dict)


def _utc(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value.timestamp(), UTC)


class AlertStore:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    # -- rules --------------------------------------------------------------------------------------------
    async def rules(self, defaults: Iterable[AlertRule] = ()) -> list[tuple[AlertRule, str]]:
        """Every rule with its etag, by name; the shipped `defaults` go in the first time anyone asks."""
        table = await self.tables.table("alertrules")
        rows = [row async for row in table.query_entities("PartitionKey eq 'rule' or PartitionKey eq 'seed'")]
        if not any(row["PartitionKey"] == "seed" for row in rows):
            for rule in defaults:
                with contextlib.suppress(ResourceExistsError):  # put in by another instance meanwhile
                    await table.create_entity(self._rule_row(rule))
            with contextlib.suppress(ResourceExistsError):
                await table.create_entity({"PartitionKey": "seed", "RowKey": "defaults"})
            rows = [row async for row in table.query_entities("PartitionKey eq 'rule'")]
        return sorted(((AlertRule.model_validate_json(row["Rule"]), str(row.metadata["etag"]))
                       for row in rows if row["PartitionKey"] == "rule"), key=lambda pair: pair[0].name)

    @staticmethod
    def _rule_row(rule: AlertRule) -> dict[str, Any]:
        return {"PartitionKey": "rule", "RowKey": rule.name, "Rule": rule.model_dump_json()}

    async def rule(self, name: str) -> tuple[AlertRule, str]:
        table = await self.tables.table("alertrules")
        try:
            row = await table.get_entity("rule", name)
        except ResourceNotFoundError:
            raise RuleNotFound(name) from None
        return AlertRule.model_validate_json(row["Rule"]), str(row.metadata["etag"])

    async def put_rule(self, rule: AlertRule, *, if_match: str | None = None) -> tuple[str, bool]:
        """Store `rule` (replacing its name's); its new etag, and whether it is new. `if_match`: only over the
        version with that etag ("*": over any existing one)."""
        table = await self.tables.table("alertrules")
        row = self._rule_row(rule)
        try:
            if if_match is None:
                try:
                    meta = await table.create_entity(row)
                    return str(meta["etag"]), True
                except ResourceExistsError:
                    meta = await table.upsert_entity(row, mode=UpdateMode.REPLACE)
                    return str(meta["etag"]), False
            if if_match == "*":
                meta = await table.update_entity(row, mode=UpdateMode.REPLACE)
            else:
                meta = await table.update_entity(row, mode=UpdateMode.REPLACE, etag=if_match,
                                                 match_condition=MatchConditions.IfNotModified)
            return str(meta["etag"]), False
        except ResourceNotFoundError:
            raise RuleNotFound(rule.name) from None
        except ResourceModifiedError:
            raise RuleChanged(rule.name) from None

    async def delete_rule(self, name: str) -> None:
        table = await self.tables.table("alertrules")
        try:
            await table.get_entity("rule", name, select=["RowKey"])
        except ResourceNotFoundError:
            raise RuleNotFound(name) from None
        await table.delete_entity("rule", name)

    # -- alert states ---------------------------------------------------------------------------------------
    async def states(self) -> list[AlertState]:
        table = await self.tables.table("alertstate")
        return [self._state(row) async for row in table.list_entities()]

    @staticmethod
    def _state(row: Any) -> AlertState:
        return AlertState(rule=row["PartitionKey"], subject=row["RowKey"], state=row["State"],
                          since=_utc(row["Since"]) or datetime.now(UTC), value=row.get("Value"),
                          threshold=float(row.get("Threshold") or 0), condition=row.get("Condition") or "",
                          last_notified_at=_utc(row.get("LastNotified")),
                          notifications=json.loads(row.get("Notifications") or "{}"),
                          paused_map=bool(row.get("PausedMap")), etag=row.metadata["etag"])

    async def save_state(self, state: AlertState) -> AlertState | None:
        """Write `state` over the version it was read at (etag; none: only if there is none yet). The saved
        state, or None when another writer got there first."""
        table = await self.tables.table("alertstate")
        row: dict[str, Any] = {"PartitionKey": state.rule, "RowKey": state.subject, "State": state.state,
                               "Since": state.since, "Threshold": state.threshold, "Condition": state.condition,
                               "Notifications": json.dumps(state.notifications), "PausedMap": state.paused_map}
        if state.value is not None:
            row["Value"] = float(state.value)
        if state.last_notified_at is not None:
            row["LastNotified"] = state.last_notified_at
        try:
            if state.etag is None:
                meta = await table.create_entity(row)
            else:
                meta = await table.update_entity(row, mode=UpdateMode.REPLACE, etag=state.etag,
                                                 match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        return state.model_copy(update={"etag": meta["etag"]})

    async def delete_state(self, state: AlertState) -> None:
        table = await self.tables.table("alertstate")
        with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
            await table.delete_entity(state.rule, state.subject, etag=state.etag,
                                      match_condition=MatchConditions.IfNotModified)

    # -- history ---------------------------------------------------------------------------------------------
    async def add_history(self, entry: HistoryEntry) -> None:
        table = await self.tables.table("alerthistory")
        await table.create_entity({"PartitionKey": "history", "RowKey": newest_first_key(entry.at),
                                   "Rule": entry.rule, "Entry": entry.model_dump_json()})

    async def history(self, *, limit: int = 100, rule: str | None = None) -> list[HistoryEntry]:
        table = await self.tables.table("alerthistory")
        query, params = "PartitionKey eq 'history'", {}
        if rule is not None:
            query, params = query + " and Rule eq @rule", {"rule": rule}
        out: list[HistoryEntry] = []
        async for row in table.query_entities(query, parameters=params, results_per_page=min(limit, 1000)):
            out.append(HistoryEntry.model_validate_json(row["Entry"]))
            if len(out) >= limit:
                break
        return out
