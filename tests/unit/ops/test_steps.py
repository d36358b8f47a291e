"""The cache of our own webhook step ids (core.ops.steps.OwnSteps) and the DataverseClient writes that carry
them as `MSCRM.BypassBusinessLogicExecutionStepIds`, over a fake step query and httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from core.connectors import DataverseClient, LocalTokens
from core.connectors.batch import BatchOp
from core.connectors.errors import AuthFailed, TransientError
from core.ops.steps import HEADER, OwnSteps, parse_step_name

URL = "https://contoso.crm.dynamics.com"
SETS = {"accounts": "account", "contacts": "contact"}


def step(name: str, step_id: str, statecode: int = 0) -> dict[str, Any]:
    return {"name": name, "sdkmessageprocessingstepid": step_id, "statecode": statecode}


OURS = [step("dw-oss: Create of account", "c-acc"), step("dw-oss: Update of account", "u-acc"),
        step("dw-oss: Delete of account", "d-acc"), step("dw-oss: Update of contact", "u-con")]


class FakeDataverse:
    """Answers the step query from `steps` (a list, or an exception to raise) and EntityDefinitions."""

    def __init__(self, steps: list[dict[str, Any]] | Exception) -> None:
        self.steps = steps
        self.queries: list[tuple[str, str | None]] = []
        self.delay = 0.0

    async def query(self, entity_set: str, *, filter: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        self.queries.append((entity_set, filter))
        await asyncio.sleep(self.delay)
        if entity_set == "EntityDefinitions":
            return [{"LogicalName": "msdyn_vendor", "EntitySetName": "msdyn_vendors"}]
        assert entity_set == "sdkmessageprocessingsteps" and filter == "startswith(name,'dw-oss:')"
        if isinstance(self.steps, Exception):
            raise self.steps
        return list(self.steps)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def own(fake: FakeDataverse, clock: Clock, **kwargs: Any) -> OwnSteps:
    return OwnSteps(fake, entity_sets=SETS, max_age=300, retry_after=30, clock=clock, **kwargs)


def test_step_names_are_parsed_and_others_refused() -> None:
    assert parse_step_name("dw-oss: Update of account") == ("Update", "account")
    assert parse_step_name("dw-oss: Delete of msdyn_vendor") == ("Delete", "msdyn_vendor")
    assert parse_step_name("Contoso: Update of account") is None
    assert parse_step_name("dw-oss ingest") is None


async def test_first_write_looks_up_and_each_operation_gets_only_the_steps_it_can_fire() -> None:
    fake, clock = FakeDataverse(OURS), Clock()
    steps = own(fake, clock)
    assert steps.lookups == 0  # nothing is asked before the first write
    assert await steps.for_write("accounts", "create") == {HEADER: "c-acc"}
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}
    assert await steps.for_write("accounts", "upsert") == {HEADER: "c-acc,u-acc"}
    assert await steps.for_write("accounts", "delete") == {HEADER: "d-acc"}
    assert await steps.for_write("Contacts", "upsert") == {HEADER: "u-con"}
    assert await steps.for_write("contacts", "delete") == {}  # we have no Delete step on contact
    assert await steps.for_write("msdyn_customergroups", "upsert") == {}  # no step of ours at all
    assert steps.lookups == 1 and len(fake.queries) == 1


async def test_ids_are_looked_up_again_when_old_and_at_once_on_refresh() -> None:
    fake, clock = FakeDataverse(OURS), Clock()
    steps = own(fake, clock)
    await steps.for_write("accounts", "update")
    fake.steps = [step("dw-oss: Update of account", "u-acc-2")]  # a redeployment re-created the step
    clock.now += 299
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}  # still fresh: cached
    assert steps.lookups == 1
    clock.now += 1
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc-2"}
    assert await steps.for_write("accounts", "create") == {}
    assert steps.lookups == 2
    fake.steps = OURS
    assert await steps.refresh() is True  # what deploy() does after a run
    assert steps.lookups == 3
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}
    assert steps.lookups == 3


async def test_a_failed_lookup_writes_without_the_header_and_tries_again_later() -> None:
    fake, clock = FakeDataverse(TransientError("503 from Dataverse", status=503)), Clock()
    steps = own(fake, clock)
    assert await steps.for_write("accounts", "update") == {}
    clock.now += 29
    assert await steps.for_write("accounts", "update") == {}
    assert steps.lookups == 1  # not once per write while Dataverse is down
    fake.steps = OURS
    clock.now += 1
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}
    assert steps.lookups == 2


async def test_a_failed_refresh_keeps_the_ids_found_before() -> None:
    fake, clock = FakeDataverse(OURS), Clock()
    steps = own(fake, clock)
    await steps.for_write("accounts", "update")
    fake.steps = TransientError("timeout")
    clock.now += 301
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}
    assert await steps.refresh() is False
    assert steps.ids()[("account", "Update")] == ("u-acc",)


async def test_disabled_and_foreign_steps_are_left_out_and_the_limit_holds() -> None:
    many = [step("dw-oss: Update of account", f"u-{n}") for n in range(5)]
    foreign = [step("Contoso audit: Update of account", "theirs"), step("dw-oss: Update of account", "off", 1)]
    fake, clock = FakeDataverse(many + foreign), Clock()
    steps = own(fake, clock)
    header = (await steps.for_write("accounts", "update"))[HEADER].split(",")
    assert header == ["u-0", "u-1", "u-2"]  # Dataverse's default BypassBusinessLogicExecutionStepIdsLimit
    steps = own(fake, clock, limit=10)
    assert (await steps.for_write("accounts", "update"))[HEADER].split(",") == [f"u-{n}" for n in range(5)]
    with pytest.raises(ValueError):
        own(fake, clock, limit=0)


async def test_tables_missing_from_the_maps_get_their_entity_set_from_metadata() -> None:
    fake, clock = FakeDataverse([step("dw-oss: Update of msdyn_vendor", "u-ven")]), Clock()
    steps = own(fake, clock)
    assert await steps.for_write("msdyn_vendors", "update") == {HEADER: "u-ven"}
    assert fake.queries[-1] == ("EntityDefinitions", "LogicalName eq 'msdyn_vendor'")


async def test_concurrent_first_writes_share_one_lookup() -> None:
    fake, clock = FakeDataverse(OURS), Clock()
    fake.delay = 0.05
    steps = own(fake, clock)
    headers = await asyncio.gather(*(steps.for_write("accounts", "update") for _ in range(20)))
    assert headers == [{HEADER: "u-acc"}] * 20
    assert steps.lookups == 1


async def test_a_refused_header_is_left_off_until_the_next_refresh() -> None:
    fake, clock = FakeDataverse(OURS), Clock()
    steps = own(fake, clock)
    assert await steps.for_write("accounts", "update")
    assert not steps.refused(AuthFailed("Principal user is missing prvReadAccount privilege", status=403))
    assert steps.refused(AuthFailed("Principal user is missing prvBypassCustomBusinessLogic privilege", status=403))
    assert await steps.for_write("accounts", "update") == {}
    clock.now += 300
    assert await steps.for_write("accounts", "update") == {HEADER: "u-acc"}


# ---- the client side ---------------------------------------------------------------------------------


class Recorder:
    def __init__(self, refuse_bypass: bool = False) -> None:
        self.requests: list[httpx.Request] = []
        self.refuse_bypass = refuse_bypass

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse_bypass and HEADER.lower() in {k.lower() for k in request.headers}:
            body = {"error": {"code": "0x80040220",
                              "message": "Principal user is missing prvBypassCustomBusinessLogic privilege."}}
            return httpx.Response(403, json=body)
        if request.method == "POST" and request.url.path.endswith("$batch"):
            return httpx.Response(200, content=b"--b--\r\n", headers={"Content-Type": "multipart/mixed; boundary=b"})
        if request.method == "POST":
            return httpx.Response(204, headers={"OData-EntityId": f"{URL}/api/data/v9.2/accounts"
                                                "(00000000-0000-0000-0000-000000000001)"})
        if request.method == "GET" or (request.method == "PATCH" and "If-Match" not in request.headers):
            return httpx.Response(200, json={"accountid": "00000000-0000-0000-0000-000000000001"})
        return httpx.Response(204)


def client_with(recorder: Recorder, write_headers: Any) -> DataverseClient:
    return DataverseClient(URL, LocalTokens("oid"), transport=httpx.MockTransport(recorder),
                           write_headers=write_headers, max_retries=0)


ROW = "00000000-0000-0000-0000-000000000001"


async def test_client_writes_carry_the_header_and_reads_do_not() -> None:
    recorder = Recorder()
    steps = own(FakeDataverse(OURS), Clock())
    async with client_with(recorder, steps) as client:
        await client.create("accounts", {"name": "a"})
        await client.update("accounts", ROW, {"name": "b"})
        await client.upsert("accounts", {"accountnumber": "A-1"}, {"name": "c"})
        await client.delete("accounts", ROW)
        await client.get("accounts", ROW)
        await client.update("contacts", ROW, {"lastname": "x"}, headers={HEADER: "caller-set"})
    sent = [(r.method, r.headers.get(HEADER)) for r in recorder.requests]
    assert sent == [("POST", "c-acc"), ("PATCH", "u-acc"), ("PATCH", "c-acc,u-acc"), ("DELETE", "d-acc"),
                    ("GET", None), ("PATCH", "caller-set")]


async def test_batch_parts_carry_the_header_each() -> None:
    recorder = Recorder()
    steps = own(FakeDataverse(OURS), Clock())
    async with client_with(recorder, steps) as client:
        await client.batch([
            BatchOp("PATCH", "accounts(accountnumber='A-1')", {"name": "x"}),
            BatchOp("PATCH", f"accounts({ROW})", {"name": "y"}, headers={"If-Match": "*"}),
            BatchOp("DELETE", f"accounts({ROW})"),
            BatchOp("POST", "accounts/Microsoft.Dynamics.CRM.UpsertMultiple", {"Targets": []}),
            BatchOp("GET", "accounts?$top=1"),
            BatchOp("PATCH", f"msdyn_customergroups({ROW})", {"msdyn_description": "z"}),
        ])
    (request,) = recorder.requests
    assert HEADER not in request.headers  # per part, not on the batch
    parts = request.content.decode().split("--batch_")[1:-1]
    found = [next((line.split(": ", 1)[1] for line in p.split("\r\n") if line.startswith(HEADER)), None)
             for p in parts]
    assert found == ["c-acc,u-acc", "u-acc", "d-acc", "c-acc,u-acc", None, None]


async def test_a_failing_lookup_or_a_refused_header_never_fails_the_write() -> None:
    class Broken:
        async def for_write(self, entity_set: str, operation: str) -> dict[str, str]:
            raise RuntimeError("bug")

        def refused(self, error: Exception) -> bool:
            return False

    recorder = Recorder()
    async with client_with(recorder, Broken()) as client:
        await client.update("accounts", ROW, {"name": "b"})
    assert HEADER not in recorder.requests[-1].headers

    recorder = Recorder(refuse_bypass=True)
    steps = own(FakeDataverse(OURS), Clock())
    async with client_with(recorder, steps) as client:
        await client.update("accounts", ROW, {"name": "b"})  # refused with the header, sent again without
        await client.update("accounts", ROW, {"name": "c"})  # the header stays off
    assert [r.headers.get(HEADER) for r in recorder.requests] == ["u-acc", None, None]
    # Another 403 is not the header's fault: it is raised as before.
    recorder = Recorder()
    steps = own(FakeDataverse(OURS), Clock())

    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, content=json.dumps({"error": {"message": "missing prvWriteAccount"}}))

    async with DataverseClient(URL, LocalTokens("oid"), transport=httpx.MockTransport(forbidden),
                               write_headers=steps, max_retries=0) as client:
        with pytest.raises(AuthFailed):
            await client.update("accounts", ROW, {"name": "b"})
