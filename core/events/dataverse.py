"""Dataverse webhook bodies (a serialized RemoteExecutionContext) into change events.

Reference: shared/reference/protocols.md §1.4-1.7. Pure: no I/O. The WCF DataContract value
decoding here (key/value lists, `__type`-tagged values, `/Date(ms)/`) is also how F&O data events
are written, so core.events.fno reuses it.

Hostile input (issue 18): `load_json` bounds the body before and while parsing (size, nesting depth, the
digits and exponent of every number, lone UTF-16 surrogates), so whatever follows works on bounded values
and cannot block the event loop; anything it refuses, and anything the parsers refuse after it, is a
PayloadError naming the field. Column values: strings, numbers, booleans, null, dates, Money,
OptionSetValue (and lists of them: multi-select choices), EntityReference, BooleanManagedProperty and
AliasedValue (their `Value`) are decoded; any other value (EntityCollection of a party list, an
EntityReferenceCollection, a type not known yet) is accepted and carried as a marker,
`{"@unsupported": {"type": <its __type>}}`, without its content. A column no map uses is thereby
ignored as before; a mapped one fails projection on apply (an application error naming the column),
so the rest of the change is never lost to one odd column.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from core.events.errors import PayloadError
from core.events.model import ChangeEvent, Operation, lookup_ref
from core.maps.values import MapValueError, wcf_moment

SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
REQUEST_ID_HEADER = "x-request-id"
MESSAGES: dict[str, Operation] = {"Create": "create", "Update": "update", "Delete": "delete"}
# The async service adds this post image when the step registers none; it holds only the
# primary name and id, so it must not make a body look complete.
ASYNC_PRIMARY_NAME_IMAGE = "AsynchronousStepPrimaryName"
SYNCHRONOUS_MODE = 0  # sdkmessageprocessingstep.mode: 0 synchronous, 1 asynchronous

MAX_BODY = 1024 * 1024  # bytes; Dataverse trims its bodies at 256 KB, F&O batches stay well below
MAX_DEPTH = 64  # nesting levels of objects and lists; a RemoteExecutionContext with ParentContexts needs ~20
MAX_DIGITS = 40  # significant digits of a number: Dataverse decimals have at most 22, int64 19, doubles 17
MAX_EXPONENT = 400  # |exponent| of a number: doubles reach 1.8E+308 and 4.9E-324
INT32 = (-(2**31), 2**31 - 1)  # an OptionSetValue is an int
_SURROGATE = re.compile("[\ud800-\udfff]")
UNSUPPORTED = "@unsupported"


# -- generic decoding of the WCF DataContract JSON ----------------------------------------------------------


def load_json(body: bytes) -> Any:
    """The body as JSON with every number that has a fraction as Decimal (never float), bounded: at most
    MAX_BODY bytes, MAX_DEPTH levels, MAX_DIGITS digits and MAX_EXPONENT exponent per number, and no lone
    UTF-16 surrogate in any string or name. PayloadError names the body or the field."""
    if len(body) > MAX_BODY:
        raise PayloadError("body", f"the body has {len(body)} bytes; at most {MAX_BODY} are accepted")
    if not body or not body.strip():
        raise PayloadError("body", "empty body")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PayloadError("body", f"not UTF-8 text: {error}") from None
    try:
        data = json.loads(text, parse_float=_decimal, parse_int=_integer, parse_constant=_not_json)
    except RecursionError:  # the C scanner stops at the interpreter's recursion limit, long before the stack
        raise PayloadError("body", f"nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise PayloadError("body", f"malformed JSON: {error}") from None
    _check_bounds(data)
    return data


def _integer(text: str) -> int | Decimal:
    # A long integer stays Decimal (linear to make; int() of it is quadratic and limited to 4300 digits)
    # for _check_bounds to refuse with its path.
    return int(text) if len(text) <= MAX_DIGITS else Decimal(text)


def _decimal(text: str) -> Decimal:
    # Decimal refuses an exponent past 10**18 (decimal.InvalidOperation, and here no path to name): such a
    # number becomes Infinity, which JSON cannot hold otherwise (parse_constant refuses it), for _check_bounds
    # to refuse with its path.
    exponent = text.lower().partition("e")[2]
    return Decimal("Infinity") if len(exponent.lstrip("+-")) > 9 else Decimal(text)


def _not_json(name: str) -> Any:
    raise PayloadError("body", f"malformed JSON: {name} is not a JSON number")


def _check_bounds(data: Any) -> None:
    """Walk the parsed document once, without recursion: depth, numbers and strings (and names). Scalars are
    checked where they sit; only containers go on the stack, with their parent, so a path is built only for
    what is refused."""
    if not isinstance(data, dict | list):
        _check_scalar(data, (None, 0, None, ""))
        return
    # (container, depth, parent entry, step from the parent)
    stack: list[tuple[Any, int, Any, str]] = [(data, 0, None, "")]
    while stack:
        entry = stack.pop()
        container, depth = entry[0], entry[1]
        if depth >= MAX_DEPTH:
            raise PayloadError(_path_of(entry), f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(container, dict):
            for name, item in container.items():
                if not name.isascii() and _SURROGATE.search(name):
                    raise PayloadError(_path_of((None, 0, entry, "." + printable(name))),
                                       "a name holds a lone UTF-16 surrogate (invalid Unicode)")
                if isinstance(item, dict | list):
                    stack.append((item, depth + 1, entry, "." + name))
                elif isinstance(item, str | Decimal):
                    _check_scalar(item, (None, 0, entry, "." + name))
        else:
            for index, item in enumerate(container):
                if isinstance(item, dict | list):
                    stack.append((item, depth + 1, entry, f"[{index}]"))
                elif isinstance(item, str | Decimal):
                    _check_scalar(item, (None, 0, entry, f"[{index}]"))


def _check_scalar(value: Any, entry: tuple[Any, int, Any, str]) -> None:
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise PayloadError(_path_of(entry), "the text holds a lone UTF-16 surrogate (invalid Unicode)")
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise PayloadError(_path_of(entry), f"a number beyond 1E+/-{MAX_EXPONENT}")
        digits = len(value.as_tuple().digits)
        if digits > MAX_DIGITS:
            raise PayloadError(_path_of(entry), f"a number of {digits} digits; at most {MAX_DIGITS} are accepted")
        if abs(value.adjusted()) > MAX_EXPONENT:
            raise PayloadError(_path_of(entry), f"a number beyond 1E+/-{MAX_EXPONENT}")


def _path_of(entry: Any) -> str:
    steps = []
    while entry is not None and entry[3]:
        steps.append(entry[3])
        entry = entry[2]
    return "".join(reversed(steps)).lstrip(".") or "$"


def printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:80]


def unsupported(kind: str) -> dict[str, Any]:
    """The marker a value the parser does not decode travels as (its type, never its content)."""
    return {UNSUPPORTED: {"type": kind}}


def is_unsupported(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(UNSUPPORTED), dict)


def wcf_date(text: str, path: str = "date") -> datetime | None:
    """`/Date(ms)/` or `/Date(ms+hhmm)/` as an aware UTC datetime (the ms are UTC either way);
    None when `text` is not in that form; PayloadError at `path` when it is out of range."""
    try:
        moment = wcf_moment(text)
    except MapValueError:
        raise PayloadError(path, f"{printable(text[:40])} is out of range (years 1 to 9999)") from None
    return None if moment is None else moment.astimezone(UTC)


def key_values(value: Any, path: str) -> list[tuple[str, Any, str]]:
    """A `[{"key", "value"}, ...]` list as (key, raw value, JSON path of the value); null is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(path, f"expected a list of {{key, value}} objects, found {kind_of(value)}")
    pairs = []
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict) or "key" not in item:
            raise PayloadError(item_path, f"expected a {{key, value}} object, found {kind_of(item)}")
        if not isinstance(item["key"], str):
            raise PayloadError(f"{item_path}.key", f"expected a string, found {kind_of(item['key'])}")
        pairs.append((item["key"], item.get("value"), f"{item_path}.value"))
    return pairs


def type_name(value: Mapping[str, Any]) -> str | None:
    """The part of `__type` before the first ':' (Money, OptionSetValue, Entity, ...), or None."""
    tag = value.get("__type")
    return tag.split(":", 1)[0] if isinstance(tag, str) else None


def typed_value(value: Any, path: str) -> Any:
    """One attribute value in the change event's typed form (a marker for a value not decoded)."""
    if value is None or isinstance(value, bool | int | Decimal):
        return value
    if isinstance(value, str):
        date = wcf_date(value, path)
        return value if date is None else date
    if isinstance(value, list):
        if all(isinstance(item, dict) and type_name(item) == "OptionSetValue" for item in value):
            return [_choice(item, f"{path}[{index}]") for index, item in enumerate(value)]
        if all(isinstance(item, dict) and type_name(item) == "EntityReference" for item in value):
            return unsupported("EntityReferenceCollection")
        return unsupported("list")
    if not isinstance(value, dict):
        return unsupported(type(value).__name__)  # not from JSON; kept total
    kind = type_name(value)
    if kind == "Money":
        return _number(value, kind, path)
    if kind == "OptionSetValue":
        return _choice(value, path)
    if kind == "EntityReference":
        return lookup_ref(required_string(value, "LogicalName", path), guid(value.get("Id"), f"{path}.Id"))
    if kind == "BooleanManagedProperty" and isinstance(value.get("Value"), bool):
        return value["Value"]
    if kind == "AliasedValue" and "Value" in value:
        return typed_value(value["Value"], f"{path}.Value")
    return unsupported(kind or "object")


def _number(value: Mapping[str, Any], kind: str, path: str) -> Decimal | int:
    number = value.get("Value")
    if isinstance(number, bool) or not isinstance(number, int | Decimal):
        raise PayloadError(f"{path}.Value", f"{kind} needs a number, found {kind_of(number)}")
    return Decimal(number) if kind == "Money" else number


def _choice(value: Mapping[str, Any], path: str) -> int:
    number = _number(value, "OptionSetValue", path)
    # Bounded by load_json (40 digits, exponent 400), so these comparisons are cheap.
    if isinstance(number, Decimal):
        if number != number.to_integral_value():
            raise PayloadError(f"{path}.Value", f"OptionSetValue {number} is not an integer")
        if not INT32[0] <= number <= INT32[1]:
            raise PayloadError(f"{path}.Value", f"OptionSetValue {number} is not a 32-bit integer")
        return int(number)
    if not INT32[0] <= number <= INT32[1]:
        raise PayloadError(f"{path}.Value", f"OptionSetValue {number} is not a 32-bit integer")
    return number


def entity_attributes(entity: Any, path: str) -> dict[str, Any]:
    """The typed attributes of an Entity object (`Attributes` key/value list)."""
    if not isinstance(entity, dict):
        raise PayloadError(path, f"expected an Entity object, found {kind_of(entity)}")
    return {key: typed_value(raw, value_path)
            for key, raw, value_path in key_values(entity.get("Attributes"), f"{path}.Attributes")}


def images(context: Mapping[str, Any], name: str) -> list[tuple[str, dict[str, Any], str]]:
    """(alias, Entity, path) of each image in PreEntityImages / PostEntityImages (null = none)."""
    found = []
    for alias, entity, path in key_values(context.get(name), name):
        if entity is None:
            continue
        if not isinstance(entity, dict):
            raise PayloadError(path, f"expected an Entity object, found {kind_of(entity)}")
        found.append((alias, entity, path))
    return found


def guid(value: Any, path: str) -> str:
    """A GUID in canonical lower-case form (braces and upper case accepted)."""
    if not isinstance(value, str):
        raise PayloadError(path, f"expected a GUID string, found {kind_of(value)}")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise PayloadError(path, f"{value[:60]!r} is not a GUID") from None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (HTTP header names are case-insensitive)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def context_time(context: Mapping[str, Any], name: str) -> datetime:
    value = context.get(name)
    date = wcf_date(value, name) if isinstance(value, str) else None
    if date is None:
        raise PayloadError(name, f"expected a /Date(ms)/ text, found {kind_of(value)}")
    return date


def optional_string(context: Mapping[str, Any], name: str, path: str = "") -> str | None:
    value = context.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(path + name, f"expected a string, found {kind_of(value)}")
    return value


def required_string(obj: Mapping[str, Any], name: str, path: str = "") -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{path}.{name}" if path else name, f"expected a non-empty string, found {kind_of(value)}")
    return value


# The payload field behind each field of the change event, for a ValidationError of the model.
WEBHOOK_FIELDS = {"event_id": "OperationId", "entity": "PrimaryEntityName", "record_id": "PrimaryEntityId",
                  "occurred_at": "OperationCreatedOn", "initiated_by": "InitiatingUserId",
                  "correlation_id": "CorrelationId", "values": "InputParameters", "pre": "PreEntityImages",
                  "version": "RowVersion"}


def change_event(names: Mapping[str, str], **fields: Any) -> ChangeEvent:
    """The change event of `fields`; a ValidationError of the model (a value no parser check caught) is a
    PayloadError naming the payload field (`names`: model field -> payload field) instead of a crash."""
    try:
        return ChangeEvent(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        loc = [str(part) for part in first["loc"]]
        name = names.get(loc[0], loc[0]) if loc else "$"
        raise PayloadError(".".join([name, *loc[1:]]), f"{first['msg']}") from None


def kind_of(value: Any) -> str:
    """How a JSON value is named in error messages ("a string", "a list", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | Decimal | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# -- the webhook ----------------------------------------------------------------------------------------------


def parse_webhook(body: bytes, headers: Mapping[str, str]) -> ChangeEvent:
    """One Dataverse webhook request as a change event; PayloadError names what is wrong."""
    return read_webhook(body, headers)[0]


def read_webhook(body: bytes, headers: Mapping[str, str]) -> tuple[ChangeEvent, bool]:
    """The change event and whether a synchronous step sent it (`Mode` 0: the user's save waits for the
    answer and fails with it; online maps are written from there)."""
    context = load_json(body)
    if not isinstance(context, dict):
        raise PayloadError("$", f"expected a RemoteExecutionContext object, found {kind_of(context)}")
    return _change(context, body, headers), context.get("Mode") == SYNCHRONOUS_MODE


def _change(context: dict[str, Any], body: bytes, headers: Mapping[str, str]) -> ChangeEvent:
    message = context.get("MessageName")
    if not isinstance(message, str) or message not in MESSAGES:
        shown = printable(message) if isinstance(message, str) else kind_of(message)
        raise PayloadError("MessageName", f"{shown!r} is not one of Create, Update, Delete")
    operation = MESSAGES[message]
    entity = required_string(context, "PrimaryEntityName", "")
    record_id = guid(context.get("PrimaryEntityId"), "PrimaryEntityId")
    common: dict[str, Any] = {
        "event_id": _event_id(context, body, headers),
        "source": "dataverse",
        "entity": entity,
        "record_id": record_id,
        "occurred_at": context_time(context, "OperationCreatedOn"),
        "initiated_by": optional_string(context, "InitiatingUserAzureActiveDirectoryObjectId")
        or optional_string(context, "InitiatingUserId"),
        "correlation_id": optional_string(context, "CorrelationId"),
    }
    inputs = context.get("InputParameters")
    trimmed = header(headers, SIZE_EXCEEDED_HEADER) is not None or inputs is None
    if trimmed:
        # Over 256 KB Dataverse drops InputParameters and the images: apply re-reads the row
        # (a deleted row cannot be re-read; the id is all there is).
        return change_event(WEBHOOK_FIELDS, **common, operation="delete" if operation == "delete" else "refetch",
                            partial=True)

    target, target_path = _target(inputs)
    pre_images = images(context, "PreEntityImages")
    pre = _merged(pre_images) if pre_images else None
    if operation == "delete":
        if not (isinstance(target, dict) and type_name(target) == "EntityReference"):
            raise PayloadError(target_path, "a Delete Target must be an EntityReference")
        guid(target.get("Id"), f"{target_path}.Id")
        return change_event(WEBHOOK_FIELDS, **common, operation="delete", pre=pre, partial=True,
                           version=_row_version(pre_images))

    if not isinstance(target, dict) or type_name(target) not in (None, "Entity"):
        raise PayloadError(target_path, f"a {message} Target must be an Entity")
    post_images = images(context, "PostEntityImages")
    full_images = [image for image in post_images if image[0] != ASYNC_PRIMARY_NAME_IMAGE]
    values = {**_merged(post_images), **entity_attributes(target, target_path)}
    version = _row_version(full_images) or _version_text(target.get("RowVersion"), f"{target_path}.RowVersion")
    return change_event(WEBHOOK_FIELDS, **common, operation=operation, values=values, pre=pre,
                        partial=not full_images,
                       version=version)


def _target(inputs: Any) -> tuple[Any, str]:
    for key, value, path in key_values(inputs, "InputParameters"):
        if key == "Target":
            if value is None:
                raise PayloadError(path, "Target is null")
            return value, path
    raise PayloadError("InputParameters", "no Target")


def _merged(found: list[tuple[str, dict[str, Any], str]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for _, entity, path in found:
        merged.update(entity_attributes(entity, path))
    return merged


def _row_version(found: list[tuple[str, dict[str, Any], str]]) -> str | None:
    for _, entity, path in found:
        version = _version_text(entity.get("RowVersion"), f"{path}.RowVersion")
        if version is not None:
            return version
    return None


def _version_text(value: Any, path: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(path, f"expected a version string, found {kind_of(value)}")
    return str(value)


def _event_id(context: Mapping[str, Any], body: bytes, headers: Mapping[str, str]) -> str:
    operation_id = context.get("OperationId")
    if operation_id is not None:
        return "dv:" + guid(operation_id, "OperationId")
    request_id = header(headers, REQUEST_ID_HEADER)
    if request_id:
        return "dv:" + request_id.strip()
    return "dv:sha256:" + hashlib.sha256(body).hexdigest()
