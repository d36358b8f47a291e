"""The OData endpoint under /data/: one handler for plain HTTP requests and for `$batch` parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from devstack.fno import wire
from devstack.fno.auth import Caller
from devstack.fno.csdl import metadata_xml
from devstack.fno.errors import ODataError, bad_request, not_found
from devstack.fno.schema import Entity, Schema
from devstack.fno.service import Row, Service

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"


@dataclass
class Call:
    method: str
    target: str  # raw (still percent-encoded) path after /data/, e.g. CustomersV3(dataAreaId='usmf',...)
    query: str  # raw query string
    headers: dict[str, str]  # lower-case names
    body: bytes
    base_url: str  # http://host:port/data/


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(err: ODataError) -> Reply:
    return Reply(
        err.status,
        wire.dumps(err.body()).encode(),
        {"Content-Type": "application/json; odata.metadata=minimal; charset=utf-8", **err.headers},
    )


class ODataHandler:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._metadata: bytes | None = None

    def handle(self, call: Call, caller: Caller) -> Reply:
        try:
            return self._dispatch(call, caller)
        except ODataError as err:
            return error_reply(err)

    def _dispatch(self, call: Call, caller: Caller) -> Reply:
        target = call.target.strip("/")
        if target == "":
            return self._service_document(call)
        if target == "$metadata":
            if call.method != "GET":
                raise ODataError(405, "The $metadata document is read-only.")
            if self._metadata is None:
                self._metadata = metadata_xml(self.service.schema).encode()
            return Reply(200, self._metadata, {"Content-Type": "application/xml; charset=utf-8"})
        params = dict(parse_qsl(call.query, keep_blank_values=True))
        cross_company = params.get("cross-company", "").lower() == "true"
        collection, key_text, rest = _split_target(target)
        entity = self.service.entity(collection)
        if rest == "$count" and key_text is None and call.method == "GET":
            page = self.service.query(entity, filter_text=params.get("$filter"), orderby=None, top=None, skip=0,
                                      count=True, cross_company=cross_company, page_size=None)
            return Reply(200, str(page.count).encode(), {"Content-Type": "text/plain"})
        if rest:
            raise not_found(rest)
        if key_text is None:
            if call.method == "GET":
                return self._get_collection(call, entity, params, cross_company)
            if call.method == "POST":
                row = self.service.create(entity, _json_body(call), caller)
                return self._entity_reply(call, entity, row, 201)
            raise ODataError(405, f"The HTTP method '{call.method}' is not allowed on the entity set '{collection}'.")
        if call.method == "GET":
            row = self.service.get(entity, key_text, cross_company)
            return self._entity_reply(call, entity, row, 200, params.get("$select"))
        if call.method in ("PATCH", "MERGE", "PUT"):
            row = self.service.update(entity, key_text, _json_body(call), caller, cross_company=cross_company,
                                      if_match=call.headers.get("if-match"), replace=call.method == "PUT")
            return self._no_content(call, entity, row)
        if call.method == "DELETE":
            self.service.delete(entity, key_text, caller, cross_company=cross_company,
                                if_match=call.headers.get("if-match"))
            return Reply(204, b"", {"OData-Version": "4.0"})
        raise ODataError(405, f"The HTTP method '{call.method}' is not allowed on an entity.")

    # ---- replies -----------------------------------------------------------------------------------
    def _service_document(self, call: Call) -> Reply:
        sets = [{"name": e.collection, "kind": "EntitySet", "url": e.collection}
                for e in self.service.schema.entities.values()]
        body = {"@odata.context": f"{call.base_url}$metadata", "value": sets}
        return Reply(200, wire.dumps(body).encode(), {"Content-Type": JSON_TYPE, "OData-Version": "4.0"})

    def _get_collection(self, call: Call, entity: Entity, params: dict[str, str], cross_company: bool) -> Reply:
        if "$expand" in params:
            raise bad_request("$expand is not supported by this simulator.")
        if "$apply" in params or "$search" in params:
            raise bad_request("The query option is not supported by Finance and Operations OData.")
        top = _non_negative(params, "$top")
        skip = _non_negative(params, "$skip") or 0
        count = params.get("$count", "false").lower() == "true"
        select = self.service.select(entity, params.get("$select"))
        page = self.service.query(
            entity,
            filter_text=params.get("$filter"),
            orderby=params.get("$orderby"),
            top=top,
            skip=skip,
            count=count,
            cross_company=cross_company,
            page_size=_max_page_preference(call.headers.get("prefer", "")),
        )
        context = f"{call.base_url}$metadata#{entity.collection}"
        if select:
            context += "(" + ",".join(select) + ")"
        body: dict[str, Any] = {"@odata.context": context}
        if page.count is not None:
            body["@odata.count"] = page.count
        body["value"] = [self.service.wire(entity, r, select) for r in page.rows]
        if page.next_skip is not None:
            next_params = {k: v for k, v in params.items() if k not in ("$skip", "$top")}
            next_params["$skip"] = str(page.next_skip)
            if page.top_left is not None:
                next_params["$top"] = str(page.top_left)
            body["@odata.nextLink"] = f"{call.base_url}{entity.collection}?" + urlencode(next_params, quote_via=quote)
        headers = {"Content-Type": JSON_TYPE, "OData-Version": "4.0"}
        if page.next_skip is not None and "odata.maxpagesize" in call.headers.get("prefer", ""):
            headers["Preference-Applied"] = call.headers["prefer"]
        return Reply(200, self._dumps(call, body), headers)

    def _entity_reply(self, call: Call, entity: Entity, row: Row, status: int, select_text: str | None = None) -> Reply:
        select = self.service.select(entity, select_text)
        url = self.entity_url(call.base_url, entity, row)
        tag = self.service.wire(entity, row)["@odata.etag"]
        headers = {"Content-Type": JSON_TYPE, "OData-Version": "4.0", "ETag": tag}
        if status == 201:
            headers["Location"] = url
            headers["OData-EntityId"] = url
            if "return=minimal" in call.headers.get("prefer", ""):
                return Reply(204, b"", {**headers, "Preference-Applied": "return=minimal"})
        body = {"@odata.context": f"{call.base_url}$metadata#{entity.collection}/$entity",
                **self.service.wire(entity, row, select)}
        return Reply(status, self._dumps(call, body), headers)

    def _no_content(self, call: Call, entity: Entity, row: Row) -> Reply:
        if "return=representation" in call.headers.get("prefer", ""):
            return self._entity_reply(call, entity, row, 200)
        return Reply(204, b"", {"OData-Version": "4.0", "ETag": self.service.wire(entity, row)["@odata.etag"]})

    @staticmethod
    def _dumps(call: Call, body: Any) -> bytes:
        asked = call.headers.get("accept", "") + call.headers.get("content-type", "")
        ieee = "ieee754compatible=true" in asked.lower()
        return wire.dumps(body, decimals_as_strings=ieee).encode()

    def entity_url(self, base_url: str, entity: Entity, row: Row) -> str:
        return f"{base_url}{entity.collection}({key_text(entity, row)})"


def key_text(entity: Entity, row: Row) -> str:
    parts = []
    for k in entity.keys:
        value = row[k]
        if isinstance(value, int):
            lit = str(value)
        elif entity.fields[k].type in ("date", "utcdatetime"):
            lit = Schema.to_wire(entity.fields[k], value)  # bare Edm.DateTimeOffset, dates at 12:00 UTC
        else:
            lit = "'" + quote(str(value).replace("'", "''"), safe="") + "'"
        parts.append(f"{k}={lit}")
    return ",".join(parts)


def _split_target(target: str) -> tuple[str, str | None, str]:
    """`Set(key)/rest` -> (Set, key text still percent-encoded, rest)."""
    head, _, rest = target.partition("/")
    if "(" in head:
        if not head.endswith(")"):
            raise bad_request(f"Bad key segment in '{unquote(head)}'.")
        name, _, key = head[:-1].partition("(")
        # Decode the whole key segment (some clients encode the quotes too); values stay intact because
        # the key parser splits on commas and '=' outside quoted literals only.
        return unquote(name), unquote(key), rest
    return unquote(head), None, rest


def _json_body(call: Call) -> Any:
    if not call.body:
        raise bad_request("The request body is empty; a JSON object is required.")
    try:
        return wire.loads(call.body)
    except ValueError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}.") from None


def _non_negative(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        value = int(params[name])
    except ValueError:
        raise bad_request(f"Invalid value '{params[name]}' for {name}: a non-negative integer is required.") from None
    if value < 0:
        raise bad_request(f"Invalid value '{value}' for {name}: a non-negative integer is required.")
    return value


def _max_page_preference(prefer: str) -> int | None:
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, int(value.strip()))
    return None
