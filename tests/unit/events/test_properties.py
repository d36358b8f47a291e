"""Property-based tests of both parsers (issue 18): any JSON value in any position of a real payload shape,
or as the whole body, yields change events or a PayloadError, never another exception; what is yielded
travels (the wire form and back) and routes."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events.dataverse import parse_webhook
from core.events.errors import PayloadError
from core.events.fno import parse_fno
from core.events.model import ChangeEvent
from core.maps import MapSet
from core.sync.ingest import route_all

PAYLOADS = Path(__file__).parent / "payloads"
ROOT = Path(__file__).parents[3]
MAPS = MapSet.load([ROOT / "maps"])
DATAVERSE = ["ref_1_7_1_update", "ref_1_7_2_delete", "ref_1_7_3_trimmed", "dv_account_create",
             "dv_account_update", "dv_account_delete"]
FNO = ["fno_business_create", "fno_business_delete", "fno_data_create", "fno_data_update", "fno_data_delete",
       "fno_test_message"]
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Raw:
    """A JSON token written as is (numbers json.dumps would not write: huge, exponents, NaN)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: Any) -> str:
    """JSON text of generated values; strings escaped to ASCII, so a lone surrogate is a \\uXXXX escape."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


# Now and then with a lone surrogate (written as a \uXXXX escape): invalid Unicode.
TEXT = st.one_of(st.text(max_size=12), st.text(max_size=12),
                 st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=12))
DATES = st.one_of(st.integers(), st.integers(-(10**30), 10**30)).map(lambda n: f"/Date({n})/")
TYPES = st.sampled_from(["Money", "OptionSetValue", "EntityReference", "EntityCollection", "Entity",
                         "AliasedValue", "BooleanManagedProperty", "OptionSetValueCollection", "Weird", ""])
NUMBERS = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1E+2147483648", "-1e-999999", "9" * 5000, "1." + "0" * 100, "NaN", "-Infinity", "1E400",
                     "0.1234567890123456789012345678901234567890123", "1E+99999999999999999999"]).map(Raw),
    st.builds(lambda m, e: Raw(f"{m}E{e}"), st.integers(-99, 99), st.integers(-(10**25), 10**25)),
)
GUIDS = st.sampled_from(["acf5b83d-06a1-4ef3-b78f-c2eca283e6ad", "{ACF5B83D-06A1-4EF3-B78F-C2ECA283E6AD}", "x"])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, DATES, GUIDS,
                    st.sampled_from(["Create", "Update", "Delete", "Target", "PreImage", "usmf", "US-001"]))


def typed(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda kind, value, extra: {"__type": f"{kind}:http://schemas.microsoft.com/xrm/2011/Contracts",
                                                 "Value": value, "Id": extra, "LogicalName": "account",
                                                 "Attributes": [{"key": "a", "value": value}]},
                     TYPES, children, GUIDS)


JSON = st.recursive(SCALARS, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(TEXT, children, max_size=4),
    st.lists(st.fixed_dictionaries({"key": TEXT, "value": children}), max_size=3),
    typed(children),
), max_leaves=12)


def positions(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += positions(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += positions(item, (*path, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {**document, head: replaced(document[head], rest, value)}
    return [replaced(item, rest, value) if index == head else item for index, item in enumerate(document)]


def loaded(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text(), parse_float=Decimal)


DOCUMENTS = {name: loaded(name) for name in DATAVERSE + FNO}
POSITIONS = {name: positions(doc) for name, doc in DOCUMENTS.items()}


@st.composite
def mutated(draw: st.DrawFn, names: list[str]) -> bytes:
    name = draw(st.sampled_from(names))
    document = DOCUMENTS[name]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(positions(document)))
        if draw(st.booleans()) and path and isinstance(document, dict):
            document = {**document, draw(TEXT): draw(JSON)}  # a field added
        else:
            document = replaced(document, path, draw(JSON))
    return encode(document).encode()


def travels(events: list[ChangeEvent]) -> None:
    for event in events:
        assert ChangeEvent.from_json(event.to_json()).to_json() == event.to_json()
    route_all(events, MAPS)


def dataverse_outcome(body: bytes) -> None:
    try:
        event = parse_webhook(body, {})
    except PayloadError as error:
        assert error.field and error.message
        return
    travels([event])


def fno_outcome(body: bytes) -> None:
    try:
        parsed = parse_fno(body, MAPS)
    except PayloadError as error:
        assert error.field and error.message
        return
    with contextlib.suppress(PayloadError):  # routing names a missing key field: a 400 as well
        travels(parsed.events)


@SETTINGS
@given(mutated(DATAVERSE))
def test_dataverse_any_value_anywhere(body: bytes) -> None:
    dataverse_outcome(body)


@SETTINGS
@given(mutated(FNO))
def test_fno_any_value_anywhere(body: bytes) -> None:
    fno_outcome(body)


@SETTINGS
@given(JSON)
def test_any_json_document(value: Any) -> None:
    body = encode(value).encode()
    dataverse_outcome(body)
    fno_outcome(body)
    fno_outcome(b"[" + body + b"]")


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes(body: bytes) -> None:
    dataverse_outcome(body)
    fno_outcome(body)


@pytest.mark.parametrize("name", DATAVERSE)
def test_the_unmutated_dataverse_shapes_parse(name: str) -> None:
    parse_webhook((PAYLOADS / f"{name}.json").read_bytes(), {})
