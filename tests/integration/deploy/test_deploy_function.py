"""functions/deploy.py in the local Functions host: the run-on-startup timer deploys, and
POST /api/manage/v1/deploy (master key) answers the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from core.maps import MapSet
from core.ops.deploy import ENDPOINT_NAME, FNO_ENDPOINT_NAME, fno_plan
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.devhost import RunningHost
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.http_receiver import HttpReceiver

KEY = "host-ingest-key"


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[DataverseSim, FnoSimulator]]:
    dataverse, fno = start_dataverse(), start_fno("fno-deploy-host")
    try:
        yield dataverse, fno
    finally:
        dataverse.stop()
        fno.process.stop()


@pytest.fixture(scope="module")
def host(devhost: Callable[..., RunningHost], sims: tuple[DataverseSim, FnoSimulator],
         app_stand_in: HttpReceiver, azurite: str) -> RunningHost:
    dataverse, fno = sims
    # Table Storage too: the app reads the stored map revisions before it deploys anything (functions/runtime.py)
    return devhost(DATAVERSE_URL=dataverse.url, FNO_URL=fno.url, APP_URL=app_stand_in.url(), INGEST_KEY=KEY,
                   DEPLOY_ON_START="true", TABLE_STORAGE_CONNECTION=azurite)


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_the_startup_timer_registers_both_sides(host: RunningHost, sims: tuple[DataverseSim, FnoSimulator]) -> None:
    dataverse, fno = sims

    def registered() -> bool:
        with dataverse.client() as client:
            endpoints = client.get("serviceendpoints", params={"$filter": f"name eq '{ENDPOINT_NAME}'"}).json()["value"]
        activations = httpx.get(f"{fno.admin_url}activations").json()
        return bool(endpoints) and any(a["eventId"] == "CustomersV3.Delete" for a in activations)

    assert wait_until(registered), host.log()[-3000:]
    with dataverse.client() as client:
        steps = client.get("sdkmessageprocessingsteps",
                           params={"$filter": "name eq 'dw-oss: Update of account'"}).json()["value"]
    assert len(steps) == 1


def test_admin_deploy_answers_the_report(host: RunningHost, sims: tuple[DataverseSim, FnoSimulator]) -> None:
    fno = sims[1]
    last = fno_plan(MapSet.load(["maps"]))[-1]  # the startup run activates in this order: wait for its end
    assert wait_until(lambda: any(a["endpoint"] == FNO_ENDPOINT_NAME and a["eventId"] == last
                                  for a in httpx.get(f"{fno.admin_url}activations").json()))
    refused = httpx.post(f"{host.url}/api/manage/v1/deploy", headers={"x-functions-key": host.function_key})
    assert refused.status_code == 401  # admin level: the function key is not enough
    answer = httpx.post(f"{host.url}/api/manage/v1/deploy", headers={"x-functions-key": host.master_key}, timeout=120)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["ok"] is True
    assert report["counts"] == {"unchanged": len(report["items"])}
    assert {"dataverse_endpoint", "dataverse_step", "dataverse_image", "fno_endpoint", "fno_activation"} == {
        item["kind"] for item in report["items"]}


def test_switched_off_or_unconfigured_deployment_says_why(
        devhost: Callable[..., RunningHost], sims: tuple[DataverseSim, FnoSimulator],
        app_stand_in: HttpReceiver, azurite: str) -> None:
    dataverse, fno = sims
    host = devhost(DATAVERSE_URL=dataverse.url, FNO_URL=fno.url, APP_URL=app_stand_in.url(), INGEST_KEY="",
                   DEPLOY_ON_START="false", TABLE_STORAGE_CONNECTION=azurite)
    assert wait_until(lambda: "deploy: not run, DEPLOY_ON_START is false" in host.log()), host.log()[-3000:]
    answer = httpx.post(f"{host.url}/api/manage/v1/deploy", headers={"x-functions-key": host.master_key})
    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["missing_settings"] == ["INGEST_KEY"]
