"""The service over an in-memory source (a fake of core's own port): what is finished in Python pages and counts
like what a source runs, the bound is kept, keys, routes and refusals answer as the contract says."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from azure.core.exceptions import ServiceRequestError

from core.virtual.catalog import load_file
from core.virtual.filter import Call, Node, matches, walk
from core.virtual.keys import Key, KeyIndex, MemoryKeyIndex
from core.virtual.model import VirtualTable
from core.virtual.service import KeyCheck, Reply, Request, VirtualService
from core.virtual.source import Order, Row, VirtualSource

FOLDER = Path(__file__).resolve().parents[3] / "virtualtables"
LINES = load_file(FOLDER / "order-lines.json").model_copy(update={"python_filter_limit": 50, "page_size": 10})
ROOT = "http://h/api/odata/"


class ListSource(VirtualSource):
    """Rows in a list; runs comparisons itself but no text functions, orders only by its key."""

    def __init__(self, rows: list[Row]) -> None:
        self.data = rows
        self.reads: list[tuple[Node | None, int, int | None]] = []

    def pushable(self, node: Node) -> bool:
        return not any(isinstance(n, Call) for n in walk(node))

    def orders(self, orderby: Order) -> bool:
        return [n for n, _ in orderby] == ["OrderNumber", "LineNumber"] and not any(d for _, d in orderby)

    async def rows(self, where: Node | None, orderby: Order, offset: int, limit: int | None) -> list[Row]:
        self.reads.append((where, offset, limit))
        found = sorted(
            (r for r in self.data if where is None or matches(where, r)),
            key=lambda r: (r["OrderNumber"], r["LineNumber"]),
        )
        return found[offset : None if limit is None else offset + limit]

    async def count(self, where: Node | None) -> int:
        return sum(1 for r in self.data if where is None or matches(where, r))

    async def get(self, key: Mapping[str, Any]) -> Row | None:
        return next((r for r in self.data if all(r[k] == v for k, v in key.items())), None)

    async def create(self, values: Mapping[str, Any]) -> Row:
        self.data.append(dict(values))
        return dict(values)

    async def update(self, key: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
        row = await self.get(key)
        if row is not None:
            row.update(values)
        return row is not None

    async def delete(self, key: Mapping[str, Any]) -> bool:
        row = await self.get(key)
        if row is not None:
            self.data.remove(row)
        return row is not None


def lines(count: int = 60) -> list[Row]:
    return [
        {
            "OrderNumber": f"SO-{i // 4:03d}",
            "LineNumber": i % 4 + 1,
            "ItemNumber": "gadget" if i % 3 else "cable",
            "Quantity": None,
            "Amount": None,
            "ShippedOn": None,
        }
        for i in range(count)
    ]


def service(source: VirtualSource, index: KeyIndex | None = None, key: str | None = "k") -> VirtualService:
    return VirtualService([LINES], lambda table: source, index or MemoryKeyIndex(), KeyCheck(key))


def get(svc: VirtualService, path: str, **params: str) -> Reply:
    return asyncio.run(svc.serve(Request("GET", path, ROOT, {"vtkey": "k", **params})))


def body(reply: Reply) -> Any:
    return json.loads(reply.body)


def test_a_filter_finished_here_pages_and_counts_like_a_pushed_one() -> None:
    source = ListSource(lines())
    svc = service(source)
    expected = [
        (r["OrderNumber"], r["LineNumber"])
        for r in sorted(source.data, key=lambda r: (r["OrderNumber"], r["LineNumber"]))
        if "cab" in r["ItemNumber"] and r["LineNumber"] > 1
    ]
    seen: list[tuple[str, int]] = []
    reply = get(svc, "OrderLines", **{"$filter": "contains(ItemNumber,'CAB') and LineNumber gt 1", "$count": "true"})
    pages = 0
    while True:
        page = body(reply)
        assert page["@odata.count"] == len(expected)
        seen += [(r["OrderNumber"], r["LineNumber"]) for r in page["value"]]
        pages += 1
        if "@odata.nextLink" not in page:
            break
        link = urlsplit(page["@odata.nextLink"])
        assert link.path == "/api/odata/OrderLines"
        reply = get(svc, "OrderLines", **dict(parse_qsl(link.query)))
    assert seen == expected and pages == 2  # 15 rows, 10 a page
    # the source ran the comparison (LineNumber gt 1), read everything it selects, and nothing else
    assert all(
        where is not None and not any(isinstance(n, Call) for n in walk(where)) and limit is None
        for where, _, limit in source.reads
    )


def test_beyond_the_bound_a_filter_finished_here_is_refused() -> None:
    svc = service(ListSource(lines(60)))
    reply = get(svc, "OrderLines", **{"$filter": "contains(ItemNumber,'cab')"})
    assert reply.status == 400
    problem = body(reply)
    assert problem["invalid_params"][0]["name"] == "$filter"
    assert "at most 50 rows" in problem["detail"] and "60 match" in problem["detail"]
    narrowed = get(svc, "OrderLines", **{"$filter": "contains(ItemNumber,'cab') and LineNumber eq 1"})
    assert narrowed.status == 200 and len(body(narrowed)["value"]) == 5


def test_an_order_the_source_cannot_give_is_done_here_within_the_bound() -> None:
    svc = service(ListSource(lines(40)))
    reply = get(svc, "OrderLines", **{"$orderby": "LineNumber desc", "$top": "5"})
    assert [r["LineNumber"] for r in body(reply)["value"]] == [4] * 5
    assert [r["OrderNumber"] for r in body(reply)["value"]] == ["SO-000", "SO-001", "SO-002", "SO-003", "SO-004"]
    refused = get(service(ListSource(lines(60))), "OrderLines", **{"$orderby": "LineNumber desc"})
    assert refused.status == 400 and body(refused)["invalid_params"][0]["name"] == "$orderby"


def test_the_key() -> None:
    svc = service(ListSource(lines(3)))
    for params in ({}, {"vtkey": ""}, {"vtkey": "K"}, {"vtkey": "k "}):
        assert asyncio.run(svc.serve(Request("GET", "OrderLines", ROOT, params))).status == 401
    assert asyncio.run(svc.serve(Request("GET", "OrderLines", ROOT, {}, {"x-vt-key": "k"}))).status == 200
    unset = service(ListSource(lines(3)), key=None)
    assert asyncio.run(unset.serve(Request("GET", "OrderLines", ROOT, {}, {"x-vt-key": ""}))).status == 401


def test_a_caller_app_service_authentication_signed_in_with_the_app_role_needs_no_key() -> None:
    def principal(*roles: str) -> str:
        claims = [{"typ": "roles", "val": role} for role in roles]
        return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()

    svc = VirtualService([LINES], lambda table: ListSource(lines(3)), MemoryKeyIndex(),
                         KeyCheck("k", app_role="VirtualTables.ReadWrite"))
    signed_in = Request("GET", "OrderLines", ROOT, {}, {"x-ms-client-principal": principal("VirtualTables.ReadWrite")})
    assert asyncio.run(svc.serve(signed_in)).status == 200
    for header in (principal("DualWrite.Reader"), principal(), "not base64 json"):
        other = Request("GET", "OrderLines", ROOT, {}, {"x-ms-client-principal": header})
        assert asyncio.run(svc.serve(other)).status == 401
    # without the app role set the header counts for nothing (no App Service authentication in front to trust)
    keyed_only = service(ListSource(lines(3)))
    assert asyncio.run(keyed_only.serve(signed_in)).status == 401


def test_ids_by_key_forms_and_unknown_ones() -> None:
    svc = service(ListSource(lines(8)))
    first = body(get(svc, "OrderLines", **{"$top": "1"}))["value"][0]
    for path in (
        f"OrderLines({first['OrderLineId']})",
        f"OrderLines(OrderLineId={first['OrderLineId']})",
        f"OrderLines(guid'{first['OrderLineId']}')",
    ):
        assert body(get(svc, path))["OrderNumber"] == first["OrderNumber"], path
    assert get(svc, f"OrderLines({uuid.uuid4()})").status == 404
    assert get(svc, "OrderLines('SO-000')").status == 400


class DownIndex(KeyIndex):
    async def remember(self, table: VirtualTable, pairs: Sequence[tuple[uuid.UUID, Key]]) -> None:
        raise ServiceRequestError("Table Storage is down")

    async def find(self, table: VirtualTable, row_id: uuid.UUID) -> Key | None:
        raise ServiceRequestError("Table Storage is down")


def test_an_unreachable_id_index_is_a_503_worth_retrying() -> None:
    reply = get(service(ListSource(lines(3)), DownIndex()), "OrderLines")
    assert reply.status == 503 and "send it again" in body(reply)["detail"]


def test_writes_refused_with_the_field_or_the_method() -> None:
    svc = service(ListSource(lines(3)))

    def send(method: str, path: str, payload: Any) -> Reply:
        return asyncio.run(svc.serve(Request(method, path, ROOT, {"vtkey": "k"}, {}, json.dumps(payload).encode())))

    missing = send("POST", "OrderLines", {"OrderNumber": "SO-9"})
    assert missing.status == 400 and body(missing)["invalid_params"][0]["name"] == "LineNumber"
    unknown = send("POST", "OrderLines", {"OrderNumber": "SO-9", "LineNumber": 1, "Colour": "red"})
    assert unknown.status == 400 and body(unknown)["invalid_params"][0]["name"] == "Colour"
    not_json = asyncio.run(svc.serve(Request("POST", "OrderLines", ROOT, {"vtkey": "k"}, {}, b"{nope")))
    assert not_json.status == 400 and body(not_json)["invalid_params"][0]["name"] == "body"
    assert send("PUT", "OrderLines", {}).status == 405
    assert send("POST", "OrderLines/$count", {}).status == 405
    created = send("POST", "OrderLines", {"OrderNumber": "SO-9", "LineNumber": 1, "@odata.type": "#x"})
    assert created.status == 201 and created.headers["Location"].startswith(f"{ROOT}OrderLines(")
