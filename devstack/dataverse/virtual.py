"""Virtual tables through the OData v4 Data Provider: a table created through `EntityDefinitions` with the
provider's DataProviderId, an `msdyn_odatav4ds` data source row and external names holds no rows here; every
Web API read and write of its entity set becomes an OData v4 call to the data source's URI, as Dataverse's
provider makes it (README "Virtual tables" has what each part rests on)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from devstack.dataverse.batch import InnerResponse
from devstack.dataverse.errors import INVALID_ARGUMENT, PLUGIN_ERROR, DataverseError, bad_request
from devstack.dataverse.metadata import metadata_id
from devstack.dataverse.schema import METADATA_TYPES, PAYLOAD_ERROR, Schema, Table, VirtualSource, _column
from devstack.dataverse.store import Database
from devstack.dataverse.wire import dumps, loads

JSON = "application/json; odata.metadata=minimal"
# The "OData v4 Data Provider" row of entitydataprovider, seeded. [Unconfirmed] the real row's id: read it from
# `entitydataproviders?$filter=name eq 'OData v4 Data Provider'`, as devstack/virtualtables.py does.
ODATA_V4_PROVIDER_ID = "c1919979-0021-4f11-a587-a8f904bdfec9"
ODATA_V4_PROVIDER_NAME = "OData v4 Data Provider"
DEFAULTS_TABLE = "__virtualtable"  # the simulator's own store of virtual table definitions (survives a restart)
DEFAULT_TIMEOUT = 30  # seconds, when msdyn_timeout is 0 or empty [our choice: the docs give only the 120 s cap]
MAX_PAGE = 5000
ATTRIBUTE_KINDS = {v: k for k, v in METADATA_TYPES.items() if k not in ("lookup", "choice", "state", "status")}
# Words of a $filter/$orderby that are not column names.
KEYWORDS = {
    "eq",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "and",
    "or",
    "not",
    "null",
    "true",
    "false",
    "contains",
    "startswith",
    "endswith",
    "asc",
    "desc",
    "tolower",
    "toupper",
    "INF",
    "NaN",
}
TOKEN = re.compile(
    r"'(?:[^']|'')*'"  # string literal, '' escapes a quote
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # guid literal
    r"|\d[\w.:+-]*"  # numbers, dates, datetimes
    r"|[A-Za-z_][\w.]*"  # names
    r"|\s+|."
)


def _label(value: Any) -> str | None:
    if isinstance(value, dict):
        labels = value.get("LocalizedLabels") or []
        if labels and isinstance(labels[0], dict):
            return labels[0].get("Label")
        user = value.get("UserLocalizedLabel")
        return user.get("Label") if isinstance(user, dict) else None
    return None


def table_from_metadata(body: Any, db: Database) -> Table:
    """An EntityMetadata create body (POST EntityDefinitions) -> a virtual Table, or a 400 naming what is wrong."""
    if not isinstance(body, dict):
        raise bad_request("The EntityMetadata body must be a JSON object.")
    schema_name = body.get("SchemaName")
    if not isinstance(schema_name, str) or not re.fullmatch(r"[A-Za-z]\w*_\w+", schema_name):
        raise bad_request("SchemaName must be a prefixed name such as 'new_Customer'.", INVALID_ARGUMENT)
    logical = schema_name.lower()
    provider = str(body.get("DataProviderId") or "").lower()
    if provider != ODATA_V4_PROVIDER_ID:
        raise bad_request(
            f"DataProviderId '{provider}' is not a data provider of this environment: the simulator runs the "
            f"{ODATA_V4_PROVIDER_NAME} ({ODATA_V4_PROVIDER_ID}) only.",
            INVALID_ARGUMENT,
        )
    source_id = str(body.get("DataSourceId") or "").lower()
    if db.get("msdyn_odatav4ds", source_id) is None:
        raise bad_request(f"DataSourceId '{source_id}' is not an msdyn_odatav4ds row.", INVALID_ARGUMENT)
    external = body.get("ExternalName")
    if not isinstance(external, str) or not external:
        raise bad_request("ExternalName (the entity set of the OData v4 service) is required.", INVALID_ARGUMENT)
    collection = body.get("ExternalCollectionName") or external
    attributes = body.get("Attributes")
    if not isinstance(attributes, list) or not attributes:
        raise bad_request("Attributes must list the table's columns with their ExternalName.", INVALID_ARGUMENT)
    primary_id = f"{logical}id"
    primary_name = None
    specs: list[dict[str, Any]] = []
    for index, attr in enumerate(attributes):
        if not isinstance(attr, dict) or not isinstance(attr.get("SchemaName"), str):
            raise bad_request(f"Attributes[{index}] needs a SchemaName.", INVALID_ARGUMENT)
        kind_name = str(attr.get("@odata.type", "")).removeprefix("#").removeprefix("Microsoft.Dynamics.CRM.")
        if kind_name == "UniqueidentifierAttributeMetadata":
            kind_name = "UniqueIdentifierAttributeMetadata"
        kind = ATTRIBUTE_KINDS.get(kind_name)
        if kind is None:
            raise bad_request(
                f"Attributes[{index}]: '{kind_name}' columns cannot be mapped on a virtual table.", INVALID_ARGUMENT
            )
        ext = attr.get("ExternalName")
        if not isinstance(ext, str) or not ext:
            raise bad_request(f"Attributes[{index}] ({attr['SchemaName']}) needs an ExternalName.", INVALID_ARGUMENT)
        name = attr["SchemaName"].lower()
        if attr.get("IsPrimaryId"):
            if kind != "uniqueidentifier":
                raise bad_request("The primary id maps to an Edm.Guid property only.", INVALID_ARGUMENT)
            name = primary_id
        required = (
            (attr.get("RequiredLevel") or {}).get("Value", "None")
            if isinstance(attr.get("RequiredLevel"), dict)
            else "None"
        )
        spec: dict[str, Any] = {
            "name": name,
            "type": kind,
            "externalName": ext,
            "required": "SystemRequired" if name == primary_id else required,
        }
        for prop, key in (
            ("MaxLength", "maxLength"),
            ("Precision", "precision"),
            ("MinValue", "minValue"),
            ("MaxValue", "maxValue"),
        ):
            if attr.get(prop) is not None:
                spec[key] = attr[prop]
        if kind in ("string", "memo") and "maxLength" not in spec:
            spec["maxLength"] = 4000
        if attr.get("IsPrimaryName"):
            primary_name = name
        specs.append(spec)
    if not any(s["name"] == primary_id for s in specs):
        raise bad_request(
            f"Map the primary id: an UniqueIdentifierAttributeMetadata with IsPrimaryId true and the ExternalName of "
            f"the service's Edm.Guid key (the column is {primary_id}).",
            INVALID_ARGUMENT,
        )
    columns = {s["name"]: _column(logical, s) for s in specs}
    entity_set = body.get("EntitySetName") or body.get("LogicalCollectionName") or f"{logical}s"
    return Table(
        logical_name=logical,
        entity_set=entity_set,
        display_name=_label(body.get("DisplayName")) or schema_name,
        primary_id=primary_id,
        primary_name=primary_name or primary_id,
        change_tracking=False,
        columns=columns,
        keys=[],
        relationships=[],
        virtual=VirtualSource(ODATA_V4_PROVIDER_ID, source_id, external, collection, metadata_id(logical)),
    )


def encode_state(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def decode_state(text: str) -> dict[str, Any]:
    try:
        state = json.loads(base64.urlsafe_b64decode(text.encode()))
    except ValueError:
        raise bad_request("The $skiptoken is not one this service issued.") from None
    if not isinstance(state, dict):
        raise bad_request("The $skiptoken is not one this service issued.")
    return state


def translate_expression(table: Table, text: str, option: str) -> str:
    """A $filter or $orderby in the table's column names -> the same text in the service's property names."""
    out = []
    for match in TOKEN.finditer(text):
        token = match.group(0)
        if token[0].isalpha() or token[0] == "_":
            column = table.columns.get(token)
            if column is not None and column.external_name:
                token = column.external_name
            elif token not in KEYWORDS:
                raise bad_request(
                    f"Could not find a property named '{token}' on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}' ({option} of a virtual table)."
                )
        out.append(token)
    return "".join(out)


def provider_message(response: httpx.Response) -> str:
    """What the service said went wrong: an OData error's message, a problem's detail, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:1000] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for key in ("detail", "title", "message"):
            if body.get(key):
                return str(body[key])
    return response.text[:1000]


class VirtualTables:
    """Defines virtual tables and serves their entity sets by calling the data source."""

    def __init__(self, db: Database, schema: Schema) -> None:
        self.db = db
        self.schema = schema
        self.client = httpx.AsyncClient(follow_redirects=False)
        for _, _, stored in list(db.scan(DEFAULTS_TABLE)):  # definitions made before a restart (--db file)
            table = table_from_metadata(stored, db)
            schema.add(table)

    async def close(self) -> None:
        await self.client.aclose()

    # -- metadata ----------------------------------------------------------------------------------------

    def define(self, body: Any) -> Table:
        """POST EntityDefinitions: store and add the table (call inside a db unit)."""
        table = table_from_metadata(body, self.db)
        if table.logical_name in self.schema.tables:
            raise DataverseError(412, "0x80040237", f"A table with the name '{table.logical_name}' already exists.")
        if table.entity_set in self.schema.by_set:
            raise DataverseError(412, "0x80040237", f"The entity set name '{table.entity_set}' is already used.")
        version = self.db.next_version(DEFAULTS_TABLE, table.logical_name, "upsert")
        self.db.put(DEFAULTS_TABLE, table.logical_name, version, body, {}, new=True)
        self.schema.add(table)
        return table

    # -- the data source --------------------------------------------------------------------------------

    def _source(self, table: Table) -> dict[str, Any]:
        assert table.virtual is not None
        found = self.db.get("msdyn_odatav4ds", table.virtual.data_source_id)
        if found is None:
            raise DataverseError(
                400, PLUGIN_ERROR, f"The data source of the virtual table '{table.logical_name}' no longer exists."
            )
        return found[1]

    @staticmethod
    def _parameters(source: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """The data source's request parameters: (headers, query string), by msdyn_isparameterNheader."""
        headers: dict[str, str] = {}
        query: dict[str, str] = {}
        for n in range(1, 11):
            name = source.get(f"msdyn_parameter{n}name")
            if not name:
                continue
            value = source.get(f"msdyn_parameter{n}value") or ""
            (headers if source.get(f"msdyn_isparameter{n}header") else query)[name] = value
        return headers, query

    async def _call(
        self,
        table: Table,
        method: str,
        url: str,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        source = self._source(table)
        headers, params = self._parameters(source)
        headers = {
            "Accept": "application/json",
            "OData-Version": "4.0",
            "OData-MaxVersion": "4.0",
            **headers,
            **(extra_headers or {}),
        }
        already = set(dict(httpx.URL(url).params).keys())
        params = {k: v for k, v in params.items() if k not in already}
        full = {**params, **(query or {})}
        if full:
            url += ("&" if "?" in url else "?") + urlencode(full, quote_via=quote, safe="$,'()=:")
        content = None
        if body is not None:
            content = dumps(body).encode()
            headers["Content-Type"] = "application/json"
        timeout = source.get("msdyn_timeout") or DEFAULT_TIMEOUT
        name = source.get("msdyn_name") or source.get("msdyn_uri")
        try:
            response = await self.client.request(method, url, content=content, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise DataverseError(
                400,
                PLUGIN_ERROR,
                f"The OData v4 data source '{name}' did not answer "
                f"{method} {urlsplit(url).path} within {timeout} seconds "
                "(msdyn_timeout).",
            ) from None
        except httpx.HTTPError as exc:
            raise DataverseError(
                400, PLUGIN_ERROR, f"The OData v4 data source '{name}' could not be reached: {exc!r}"
            ) from None
        if response.status_code >= 400:
            message = provider_message(response)
            error = DataverseError(
                400,
                PLUGIN_ERROR,
                f"The OData v4 data source '{name}' answered {response.status_code} to {method} "
                f"{urlsplit(url).path}: {message}",
            )
            error.trace = f"{method} {url}\n{response.status_code}\n{response.text}"[:10240]
            error.provider_status = response.status_code  # type: ignore[attr-defined]
            raise error
        return response

    @staticmethod
    def _body(table: Table, response: httpx.Response) -> Any:
        """The service's JSON answer, decimals exact (Edm.Decimal columns carry up to 10 places)."""
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            raise DataverseError(
                400,
                PLUGIN_ERROR,
                f"The OData v4 data source of '{table.logical_name}' answered with a body that is "
                f"not JSON: {response.text[:200]}",
            ) from None
        if not isinstance(body, dict):
            raise DataverseError(
                400,
                PLUGIN_ERROR,
                f"The OData v4 data source of '{table.logical_name}' answered with JSON that is not an object.",
            )
        return body

    def _without_parameters(self, link: str, source: dict[str, Any]) -> str:
        """A next link without the data source's query-string parameters: it travels to the client inside the
        $skiptoken, and a service that echoes its key into next links must not hand the key out that way (each call
        adds the parameters again)."""
        _, query = self._parameters(source)
        url = httpx.URL(link)
        kept = [(k, v) for k, v in url.params.multi_items() if k not in query]
        return str(url.copy_with(query=urlencode(kept, quote_via=quote, safe="$,'()=:").encode() or None))

    @staticmethod
    def _urls(source: dict[str, Any], table: Table) -> str:
        assert table.virtual is not None
        return str(source["msdyn_uri"]).rstrip("/") + "/" + table.virtual.external_collection_name

    # -- rows -------------------------------------------------------------------------------------------

    def _select(self, table: Table, text: str | None) -> list[str]:
        if not text:
            return [c.name for c in table.columns.values()]
        names = [n.strip() for n in text.split(",") if n.strip()]
        for name in names:
            if name not in table.columns:
                raise bad_request(
                    f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table.logical_name}'."
                )
        return names if table.primary_id in names else [*names, table.primary_id]

    @staticmethod
    def _row(table: Table, external: dict[str, Any], select: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in select:
            column = table.columns[name]
            out[name] = external.get(column.external_name or name)
        return out

    def _external_body(self, table: Table, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@"):
                continue
            column = table.columns.get(name)
            if column is None:
                raise DataverseError(
                    400,
                    PAYLOAD_ERROR,
                    f"Error identified in Payload provided by the user for "
                    f"Entity :'{table.logical_name}': the property '{name}' "
                    f"does not exist on type "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'.",
                )
            column.coerce(value)  # the column's own type and range check, as for any table
            out[column.external_name or name] = value
        return out

    @staticmethod
    def _key(table: Table, key: dict[str | None, Any]) -> str:
        if set(key) not in ({None}, {table.primary_id}):
            raise bad_request(f"Virtual table '{table.logical_name}' has no alternate keys; use its id.")
        raw = next(iter(key.values()))
        try:
            return str(uuid.UUID(str(raw)))
        except ValueError:
            raise bad_request(f"'{raw}' is not a guid.") from None

    def _context(self, base: str, table: Table, select: list[str] | None, entity: bool) -> str:
        cols = f"({','.join(select)})" if select else ""
        return f"{base}$metadata#{table.entity_set}{cols}" + ("/$entity" if entity else "")

    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> InnerResponse:
        return InnerResponse(
            status, {"Content-Type": JSON, "OData-Version": "4.0", **(extra or {})}, dumps(payload).encode()
        )

    async def handle(
        self,
        table: Table,
        method: str,
        key: dict[str | None, Any] | None,
        rest: list[str],
        params: dict[str, str],
        prefer: dict[str, str],
        body: bytes,
        base: str,
        path: str,
    ) -> InnerResponse:
        if rest:
            raise DataverseError(405, "0x80060888", f"'{'/'.join(rest)}' is not supported on a virtual table.")
        if key is None and method == "GET":
            return await self._query(table, params, prefer, base, path)
        if key is None and method == "POST":
            return await self._create(table, body, params, prefer, base)
        if key is None:
            raise DataverseError(405, "0x80060888", f"{method} is not supported on '{path}'.")
        row_id = self._key(table, key)
        if method == "GET":
            return await self._retrieve(table, row_id, params, base)
        if method == "PATCH":
            source = self._source(table)
            url = f"{self._urls(source, table)}({row_id})"
            await self._by_key(table, "PATCH", url, row_id, self._external_body(table, loads(body or b"{}")))
            return InnerResponse(
                204, {"OData-Version": "4.0", "OData-EntityId": f"{base}{table.entity_set}({row_id})"}, b""
            )
        if method == "DELETE":
            source = self._source(table)
            await self._by_key(table, "DELETE", f"{self._urls(source, table)}({row_id})", row_id)
            return InnerResponse(204, {"OData-Version": "4.0"}, b"")
        raise DataverseError(405, "0x80060888", f"{method} is not supported on '{path}'.")

    async def _by_key(
        self,
        table: Table,
        method: str,
        url: str,
        row_id: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._call(table, method, url, query=query, body=body)
        except DataverseError as exc:
            if getattr(exc, "provider_status", None) == 404:
                missing = DataverseError(404, "0x80040217", f"{table.logical_name} With Id = {row_id} Does Not Exist")
                missing.trace = exc.trace
                raise missing from None
            raise

    async def _retrieve(self, table: Table, row_id: str, params: dict[str, str], base: str) -> InnerResponse:
        select = self._select(table, params.get("$select"))
        source = self._source(table)
        ext = ",".join(table.columns[n].external_name or n for n in select)
        response = await self._by_key(
            table, "GET", f"{self._urls(source, table)}({row_id})", row_id, query={"$select": ext}
        )
        row = self._row(table, self._body(table, response), select)
        return self._json(
            200, {"@odata.context": self._context(base, table, select if params.get("$select") else None, True), **row}
        )

    async def _create(
        self, table: Table, body: bytes, params: dict[str, str], prefer: dict[str, str], base: str
    ) -> InnerResponse:
        external = self._external_body(table, loads(body or b"{}"))
        source = self._source(table)
        response = await self._call(
            table, "POST", self._urls(source, table), body=external, extra_headers={"Prefer": "return=representation"}
        )
        answer: dict[str, Any] = {}
        if response.content:
            try:
                answer = json.loads(response.content, parse_float=Decimal)
            except ValueError:
                answer = {}
        id_column = table.columns[table.primary_id]
        row_id = answer.get(id_column.external_name or "") or external.get(id_column.external_name or "")
        if not row_id:
            entity_id = response.headers.get("OData-EntityId") or response.headers.get("Location") or ""
            found = re.search(r"\(([0-9a-fA-F-]{36})\)\s*$", entity_id)
            row_id = found.group(1) if found else None
        if not row_id:
            raise DataverseError(
                400,
                PLUGIN_ERROR,
                "The OData v4 data source created the row but answered no id "
                "(neither in its body nor in OData-EntityId).",
            )
        extra = {"OData-EntityId": f"{base}{table.entity_set}({row_id})"}
        if prefer.get("return") == "representation" and answer:
            select = self._select(table, params.get("$select"))
            extra["Preference-Applied"] = "return=representation"
            return self._json(
                201,
                {"@odata.context": self._context(base, table, None, True), **self._row(table, answer, select)},
                extra,
            )
        return InnerResponse(204, {"OData-Version": "4.0", **extra}, b"")

    async def _query(
        self, table: Table, params: dict[str, str], prefer: dict[str, str], base: str, path: str
    ) -> InnerResponse:
        if "$skip" in params:
            raise bad_request("The query parameter $skip is not supported")
        if "$expand" in params:
            raise bad_request("$expand is not supported on virtual tables (lookups are separate requests).")
        select = self._select(table, params.get("$select"))
        source = self._source(table)
        state = decode_state(params["$skiptoken"]) if params.get("$skiptoken") else {}
        top = int(params["$top"]) if params.get("$top", "").isdigit() else None
        page_size = MAX_PAGE
        if prefer.get("odata.maxpagesize", "").isdigit():
            page_size = min(int(prefer["odata.maxpagesize"]), MAX_PAGE)
            top = None  # Dataverse ignores $top when a page size is asked for
        want_count = params.get("$count", "").lower() == "true"
        query: dict[str, str] = {"$select": ",".join(table.columns[n].external_name or n for n in select)}
        if params.get("$filter"):
            query["$filter"] = translate_expression(table, params["$filter"], "$filter")
        if params.get("$orderby"):
            query["$orderby"] = translate_expression(table, params["$orderby"], "$orderby")
        if want_count or source.get("msdyn_returninlinecount"):
            query["$count"] = "true"
        url = self._urls(source, table)
        extra_headers: dict[str, str] = {}
        next_state: dict[str, Any] | None = None
        if source.get("msdyn_paginationtype") == 1:
            # Server-side paging: ask once, then follow the service's own next links (the page size goes with
            # every request, as an OData client's Prefer does).
            extra_headers["Prefer"] = f"odata.maxpagesize={page_size}"
            if "n" in state:
                url, query = str(state["n"]), {}
            elif top is not None:
                query["$top"] = str(top)
            answer = self._body(table, await self._call(table, "GET", url, query=query, extra_headers=extra_headers))
            rows = answer.get("value") or []
            if answer.get("@odata.nextLink") and (top is None or "odata.maxpagesize" in prefer):
                link = self._without_parameters(str(answer["@odata.nextLink"]), source)
                next_state = {"n": link, "c": state.get("c", answer.get("@odata.count"))}
        else:
            # Client-side paging: $top/$skip from the Dataverse side.
            offset = int(state.get("o", 0))
            size = page_size if top is None else min(page_size, top)
            query["$top"] = str(size)
            if offset:
                query["$skip"] = str(offset)
            answer = self._body(table, await self._call(table, "GET", url, query=query))
            rows = answer.get("value") or []
            count = answer.get("@odata.count")
            more = top is None and len(rows) >= size and (count is None or offset + len(rows) < int(count))
            if more:
                next_state = {"o": offset + len(rows)}
        payload: dict[str, Any] = {
            "@odata.context": self._context(base, table, select if params.get("$select") else None, False)
        }
        if want_count:
            count = answer.get("@odata.count", state.get("c"))
            payload["@odata.count"] = int(count) if count is not None else -1
        payload["value"] = [self._row(table, r, select) for r in rows if isinstance(r, dict)]
        if next_state is not None:
            keep = {k: v for k, v in params.items() if k != "$skiptoken"}
            link = urlencode({**keep, "$skiptoken": encode_state(next_state)}, quote_via=quote, safe="$,'()=:")
            payload["@odata.nextLink"] = f"{base}{path}?{link}"
        applied = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if "odata.maxpagesize" in prefer else {}
        return self._json(200, payload, applied)
