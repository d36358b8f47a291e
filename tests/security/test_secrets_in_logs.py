"""No secret value in any log line at any level, and no request body logged whole, over the whole local stack.

A stack of this module's own runs with LOG_LEVEL=DEBUG (the host then logs the SDKs' DEBUG lines too) and the F&O
simulator at DEBUG, with distinctive secret values in every setting that holds one: the master and function keys,
the ingest key, the Service Bus shared access key, the alert SMTP password, a client secret and the alert webhook's
URL (such URLs carry a token). Then what a working day does: deployment (which hands the ingest key to both sides),
a Dataverse webhook (the key in its `code` parameter; F&O down meanwhile, so its write fails and is retried) and an
F&O event (the key in a header) through live sync,
refused calls (wrong key, the function key on an admin route, invalid bodies), an alert fired with an e-mail sent
with the SMTP login and a webhook call. Every log file of the host, the simulators and the Service Bus emulator
is then read for those values and for a marker that was only ever inside request bodies. The Table Storage account
key is Azurite's well-known one, not distinctive: core.ops.redact masks it by its shape (AccountKey=), tested alone.

Stopping the host at the end is a graceful stop: its log must not show an unclosed client or a traceback either.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack.processes import free_port
from tests.fixtures.dataverse import DataverseSim, start_dataverse
from tests.fixtures.devhost import RunningHost
from tests.fixtures.fno import FnoSimulator, start_fno
from tests.fixtures.http_receiver import HttpReceiver, serve
from tests.fixtures.smtp import Mailbox, smtp_server
from tests.security.logscan import secret_lines

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

_RUN = uuid.uuid4().hex[:12]
SECRETS = {
    "master key": f"MasterKey{_RUN}x1",
    "function key (the ingest key)": f"FunctionKey{_RUN}x2",
    "Service Bus shared access key": f"SasKey{_RUN}x3",
    "SMTP password": f"SmtpPassword{_RUN}x4",
    "client secret": f"ClientSecret{_RUN}x5",
    "alert webhook token": f"HookToken{_RUN}x6",
}
BODY_MARKER = f"BodyOnly{_RUN}x7"  # only ever inside request bodies
SMTP_USER = "dualwrite"


@dataclass
class SecretStack:
    host: RunningHost
    dataverse: DataverseSim
    fno: FnoSimulator
    mailbox: Mailbox
    hook: HttpReceiver
    hook_path: str
    servicebus_log: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.host.url}/api/",
                            headers={"x-functions-key": SECRETS["master key"]}, timeout=60)


def _eventually(probe: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def _login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(), SECRETS["SMTP password"].encode())
    return AuthResult(success=ok, handled=False)


def _deployed(dataverse: DataverseSim, fno: FnoSimulator) -> bool:
    with dataverse.client() as client:
        endpoints = client.get("serviceendpoints", params={"$filter": "name eq 'dw-oss ingest'"}).json()["value"]
    activations = httpx.get(f"{fno.admin_url}activations", timeout=10).json()
    active = activations.get("value", activations) if isinstance(activations, dict) else activations
    return bool(endpoints) and bool(active)


@pytest.fixture(scope="module")
def secret_stack(own_azurite: str, servicebus_emulator: Any,
                 devhost: Callable[..., RunningHost]) -> Iterator[SecretStack]:
    # Its own Azurite: an activity log shared with other tests' stacks would show their changes of the same records.
    connection = servicebus_emulator.connection_string.replace(
        "SharedAccessKey=SAS_KEY_VALUE", f"SharedAccessKey={SECRETS['Service Bus shared access key']}")
    assert SECRETS["Service Bus shared access key"] in connection
    hook_path = f"/hooks/{SECRETS['alert webhook token']}"
    dataverse = start_dataverse()
    fno = start_fno("fno-secrets", log_level="debug")
    try:
        with smtp_server(authenticator=_login, auth_require_tls=False) as (controller, mailbox), \
                serve(HttpReceiver()) as hook:
            port = free_port()
            host = devhost(
                "function_app:app", port=port, LOG_LEVEL="DEBUG",
                DEVHOST_MASTER_KEY=SECRETS["master key"], DEVHOST_FUNCTION_KEY=SECRETS["function key (the ingest key)"],
                INGEST_KEY=SECRETS["function key (the ingest key)"], APP_URL=f"http://127.0.0.1:{port}",
                DEPLOY_ON_START="true", DATAVERSE_URL=dataverse.url, FNO_URL=fno.url, AUTH_MODE="local",
                CLIENT_SECRET=SECRETS["client secret"], SERVICEBUS_CONNECTION=connection,
                TABLE_STORAGE_CONNECTION=own_azurite, CHANGES_QUEUE=servicebus_emulator.take("changes"),
                FNO_EVENTS_QUEUE=servicebus_emulator.take("plain"), SYNC_PAGES_QUEUE=servicebus_emulator.take("pages"),
                ALERT_SMTP_HOST="127.0.0.1", ALERT_SMTP_PORT=str(controller.port), ALERT_SMTP_TLS="none",
                ALERT_SMTP_USER=SMTP_USER, ALERT_SMTP_PASSWORD=SECRETS["SMTP password"],
                ALERT_EMAIL_FROM="dualwrite@example.test", ALERT_EMAIL_TO="ops@example.test",
                ALERT_WEBHOOK_URL=hook.url(hook_path), METRICS_FLUSH_SECONDS="1",
            )
            host.function_key, host.master_key = SECRETS["function key (the ingest key)"], SECRETS["master key"]
            try:
                _eventually(lambda: _deployed(dataverse, fno), "deployment of webhooks and events")
                yield SecretStack(host, dataverse, fno, mailbox, hook, hook_path,
                                  servicebus_emulator.process.log_path)
            finally:
                host.process.stop()
    finally:
        dataverse.stop()
        fno.process.stop()


def _logs(stack: SecretStack) -> dict[str, str]:
    return {"host": stack.host.log(),
            "dataverse simulator": stack.dataverse.process.log_path.read_text(errors="replace"),
            "F&O simulator": stack.fno.process.log_path.read_text(errors="replace"),
            "Service Bus emulator": stack.servicebus_log.read_text(errors="replace")}


def _exercise(stack: SecretStack) -> None:
    host = stack.host.url
    with stack.admin() as admin, stack.dataverse.client() as dv, \
            httpx.Client(base_url=stack.fno.data_url.rstrip("/") + "/", headers=stack.fno.headers(), timeout=30) as fo:
        # deployment again on request: the ingest key goes to both sides once more
        assert admin.post("manage/v1/deploy").status_code == 200

        # a change in Dataverse: a webhook with the key as `code`, a body holding an unmapped column's marker; F&O
        # answers 503 for two seconds meanwhile, so the write fails and is retried (the failure paths log too)
        accounts = dv.get("accounts", params={"$filter": "accountnumber eq 'US-001'", "$select": "accountid"}).json()
        account_id = accounts["value"][0]["accountid"]
        httpx.post(f"{stack.fno.admin_url}outage", json={"seconds": 2}, timeout=30).raise_for_status()
        changed = dv.patch(f"accounts({account_id})", json={"telephone1": "+1 555 0142", "fax": BODY_MARKER})
        assert changed.status_code == 204, changed.text
        _eventually(lambda: any(e["source"] == "dataverse" and e["outcome"] == "applied" for e in admin.get(
            "manage/v1/activity", params={"map": "customers", "key": "USMF|US-001", "limit": 100}).json()["entries"]),
            "the Dataverse change applied in F&O after the outage")

        # a change in F&O (up again): a data event with the key in a header
        _eventually(lambda: not httpx.get(f"{stack.fno.admin_url}outage", timeout=30).json()["active"],
                    "the end of the F&O outage")
        patched = fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-002')", params={"cross-company": "true"},
                           json={"PrimaryContactPhone": "+1 555 0143"})
        assert patched.status_code == 204, patched.text
        _eventually(lambda: any(e["source"] == "fno" for e in admin.get(
            "manage/v1/activity", params={"map": "customers", "key": "USMF|US-002", "limit": 100}).json()["entries"]),
            "the F&O change in the activity log")

        # refused calls: invalid bodies (with the key), a wrong key, the function key on an admin route
        function_key = {"x-functions-key": SECRETS["function key (the ingest key)"]}
        invalid = {"MessageName": "Update", "PrimaryEntityName": 7, "marker": BODY_MARKER}
        for route in ("dataverse/webhook", "fno/events"):
            answer = httpx.post(f"{host}/api/{route}", json=invalid, headers=function_key, timeout=30)
            assert answer.status_code == 400, answer.text
        answer = httpx.post(f"{host}/api/dataverse/webhook", params={"code": SECRETS["master key"] + "0"},
                            json={"marker": BODY_MARKER}, timeout=30)
        assert answer.status_code == 401
        assert httpx.get(f"{host}/api/manage/v1/errors", params={"code": SECRETS["function key (the ingest key)"]},
                         timeout=30).status_code == 401
        assert httpx.get(f"{host}/api/maps", params={"code": SECRETS["master key"]}, timeout=30).status_code == 200

        # an alert that fires at once: e-mail with the SMTP login, and the webhook with its token in the URL
        rule = {"metric": "errors", "op": ">=", "threshold": 0, "window_minutes": 15, "scope": {"map": "customers"},
                "cooldown_minutes": 60, "description": "fires at once"}
        assert admin.put("manage/v1/alerts/rules/always", json=rule).status_code in (200, 201)
        evaluated = admin.post("manage/v1/alerts/evaluate")
        assert evaluated.status_code == 200, evaluated.text
        assert "always" in {fired["rule"] for fired in evaluated.json()["fired"]}, evaluated.text
        stack.mailbox.wait_for(1)
        stack.hook.wait_for(stack.hook_path, 1)
        assert len(stack.mailbox.envelopes) >= 1, "the alert e-mail (sent after the SMTP login) did not arrive"


def test_no_secret_and_no_whole_body_in_any_log_and_a_clean_stop(secret_stack: SecretStack) -> None:
    _exercise(secret_stack)
    assert secret_stack.host.process.stop() == 0, secret_stack.host.log()[-3000:]
    logs = _logs(secret_stack)
    assert "DEBUG" in logs["host"] and "DEBUG" in logs["F&O simulator"], "the stack did not log at DEBUG"
    found = secret_lines(logs, {**SECRETS, "a request body's marker": BODY_MARKER})
    assert found == [], "\n".join(found)
    host_log = logs["host"]
    assert "host stopped" in host_log
    stopping = host_log[host_log.rindex("host stopping"):]
    assert "Unclosed" not in host_log, host_log[host_log.index("Unclosed") - 2000:][:4000]
    assert "Traceback" not in stopping, stopping[:6000]
