"""The `dualwrite` CLI against the whole local stack, run as a user runs it (a process of its own, `python -m
core.cli.main`): health (with each map's figures) and deploy, the connection from flags, the environment and a
profile; error entries made by a change Dataverse refuses, listed, shown, resubmitted and discarded one by one and in
bulk (through the bulk routes, and one id at a time as against an engine without them); the activity log listed and
followed (`tail -f`, ended with Ctrl-C); the maps and sync commands.

Its own stack (Azurite and Service Bus emulator included): bulk actions take every open entry of a map, and must
neither meet nor take the entries of other modules.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from core.cli.api import Seams
from core.cli.main import main
from devstack.processes import ROOT
from tests.e2e.conftest import Stack, eventually, running_stack
from tests.fixtures.devhost import RunningHost
from tests.fixtures.servicebus import run_emulator, test_topology_document

pytestmark = pytest.mark.e2e
IEEE754 = {"Content-Type": "application/json; IEEE754Compatible=true"}
TOO_BIG = "500000000000000.5"  # Dataverse money stops at 100,000,000,000,000; F&O takes more


@pytest.fixture(scope="module")
def cli_stack(own_azurite: str, devhost: Callable[..., RunningHost]) -> Iterator[Stack]:
    with run_emulator(test_topology_document(), name="servicebus-cli") as emulator, \
            running_stack(own_azurite, emulator, devhost, dataverse_flags=()) as stack:
        yield stack


class Cli:
    """`dualwrite ...` in a process of its own, with a profile file of its own and no DUALWRITE_* variables."""

    def __init__(self, folder: Path) -> None:
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("DUALWRITE_") and k not in ("COLUMNS", "DEVHOST_MASTER_KEY")}
        self.env.update(DUALWRITE_CONFIG=str(folder / "profiles.toml"), PYTHONUNBUFFERED="1")

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "core.cli.main", *args]

    def __call__(self, *args: str, stdin: str = "", env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True, cwd=ROOT,
                              env={**self.env, **(env or {})}, timeout=timeout, check=False)

    def ok(self, *args: str, **kwargs: Any) -> str:
        done = self(*args, **kwargs)
        for _ in range(2):  # the engine's 503 on a storage hiccup (Azurite under load): a user runs it again
            if done.returncode == 0 or "Dependency unavailable" not in done.stderr:
                break
            time.sleep(1)
            done = self(*args, **kwargs)
        assert done.returncode == 0, (args, done.returncode, done.stdout[-3000:], done.stderr[-3000:])
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture(scope="module")
def cli(cli_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """The CLI with the stack as its default profile: no flags needed, as after `make run`."""
    runner = Cli(tmp_path_factory.mktemp("cli"))
    out = runner.ok("profile", "add", "e2e", "--url", cli_stack.host.url, "--default",
                    stdin=cli_stack.host.master_key + "\n")
    assert "added profile e2e" in out and cli_stack.host.master_key not in out
    return runner


def squeezed(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines()]


def refuse_a_change(stack: Stack, account: str) -> dict[str, Any]:
    """A credit limit Dataverse refuses, set on customer `account` in F&O: its error entry, once it is logged."""
    response = stack.fo.patch(f"CustomersV3(dataAreaId='usmf',CustomerAccount='{account}')",
                              params={"cross-company": "true"}, json={"CreditLimit": TOO_BIG}, headers=IEEE754)
    assert response.status_code == 204, response.text
    return eventually(lambda: next((e for e in stack.errors(map="customers") if e["key"] == f"USMF|{account}"), None),
                      timeout=60, what=f"the refused change of {account} in the error log")


def fix_quietly(stack: Stack, account: str, limit: str) -> None:
    """A credit limit Dataverse takes, set in F&O without an event (as a set-based update is)."""
    response = httpx.post(f"{stack.fno.admin_url}bulk-update", json={
        "entity": "CustomersV3", "company": "usmf", "filter": f"CustomerAccount eq '{account}'",
        "set": {"CreditLimit": limit}, "raiseEvents": False}, timeout=30)
    assert response.status_code < 300, response.text


def credit_limit_reaches_dataverse(stack: Stack, account: str, limit: str) -> None:
    eventually(lambda: (a := stack.account(account)) and Decimal(str(a["creditlimit"])) == Decimal(limit),
               timeout=60, what=f"credit limit {limit} of {account} reaching Dataverse")


def status_of(cli: Cli, id: str) -> str:
    return str(cli.json("errors", "show", id)["status"])


# --- health, deploy and where the CLI finds the engine ---------------------------------------------------


def test_health_and_deploy_with_flags_the_environment_and_the_profile(cli_stack: Stack, cli: Cli) -> None:
    stack = cli_stack
    flags = ["--url", stack.host.url, "--key", stack.host.master_key]
    out = squeezed(cli.ok("health", *flags))
    assert out[0].startswith("healthy, version ")
    assert any(line.startswith("table storage yes") for line in out)
    assert any(line.startswith("service bus yes") for line in out)

    # the environment
    environment = {"DUALWRITE_URL": stack.host.url, "DUALWRITE_KEY": stack.host.master_key}
    report = json.loads(cli.ok("deploy", "--json", env=environment))
    assert report["ok"] is True and report["items"]
    assert set(report["counts"]) == {"unchanged"}  # the host deployed at start: a second run changes nothing

    # the default profile: no flags at all
    out = squeezed(cli.ok("deploy"))
    assert any(line.startswith("Dataverse step dw-oss: ") and " unchanged" in line for line in out)
    assert any(line.startswith("F&O data event CustomersV3.") for line in out)
    assert out[-1].startswith("deployed: ") and out[-1].endswith(" unchanged")
    health = cli.json("health")
    assert health["status"] == "healthy"
    assert {"customers", "vendors"} <= {m["map"] for m in health["map_health"]["maps"]}
    out = squeezed(cli.ok("health"))
    assert "maps, over the last 10 min" in out
    assert any(line.split()[:2] == ["customers", "running"] for line in out)

    listed = cli.ok("profile", "list")
    assert "e2e" in listed and stack.host.url in listed and "default" in listed
    assert stack.host.master_key not in listed  # masked

    wrong = cli("errors", "list", "--key", "not-the-key")
    assert wrong.returncode == 1
    err = " ".join(wrong.stderr.split())
    assert "HTTP 401" in err and "the key sent came from --key" in err and "not-the-key" not in err

    unknown = cli("health", "--profile", "nope")
    assert unknown.returncode == 2 and "no profile 'nope' (--profile)" in unknown.stderr


# --- the error log ---------------------------------------------------------------------------------------


def test_refused_changes_are_listed_shown_resubmitted_and_discarded(cli_stack: Stack, cli: Cli) -> None:
    stack = cli_stack
    first, second = refuse_a_change(stack, "US-004"), refuse_a_change(stack, "US-005")

    listed = squeezed(cli.ok("errors", "list", "--map", "customers"))
    assert listed[0].split() == ["id", "map", "key", "category", "attempts", "first", "last", "message"]
    rows = {line.split()[0]: line for line in listed[1:]}
    assert set(rows) == {first["id"], second["id"]}
    assert rows[first["id"]].split()[1:5] == ["customers", "USMF|US-004", "application", "1"]
    assert "HTTP 400" in rows[first["id"]]
    assert [e["id"] for e in cli.json("errors", "list", "--category", "application")["errors"]] == [
        second["id"], first["id"]]  # newest failure first
    assert cli.json("errors", "list", "--category", "throttled")["errors"] == []

    shown = cli.ok("errors", "show", first["id"])
    assert "0x80044331" in shown and "creditlimit" in shown  # the target's full answer
    assert '"entity": "CustomersV3"' in shown  # the change
    assert "key USMF|US-004" in squeezed(shown) and "status open" in squeezed(shown)

    # one entry by id, once its data is fixed
    fix_quietly(stack, "US-004", "9000.5")
    out = cli.ok("errors", "resubmit", first["id"])
    assert out.startswith(f"resubmitted {first['id']} (sent as ")
    credit_limit_reaches_dataverse(stack, "US-004", "9000.5")
    assert status_of(cli, first["id"]) == "resubmitted"
    again = cli("errors", "resubmit", first["id"])
    assert again.returncode == 1 and "not open" in again.stderr.lower()

    # every open entry of the map and category, through the bulk route: asked first
    declined = cli("errors", "discard", "--all", "--map", "customers", "--category", "application", stdin="n\n")
    assert declined.returncode == 1 and "nothing was discarded" in declined.stderr
    assert "1 open entry match, map customers, category application: customers/application: 1" in squeezed(
        declined.stdout)
    assert status_of(cli, second["id"]) == "open"
    out = squeezed(cli.ok("errors", "discard", "--all", "--map", "customers", "--category", "application", "--yes"))
    assert out[-2:] == [f"discarded {second['id']}", "1 discarded, 0 not"]
    assert [e["id"] for e in cli.json("errors", "list", "--status", "discarded")["errors"]] == [second["id"]]
    assert "nothing to resubmit" in cli.ok("errors", "resubmit", "--all", "--yes")

    # bulk resubmit through the bulk route
    third = refuse_a_change(stack, "US-006")
    fix_quietly(stack, "US-006", "7000.25")
    answer = cli.json("errors", "resubmit", "--all", "--map", "customers", "--yes")
    assert answer == {"resubmitted": 1, "ids": [third["id"]], "failed": []}
    credit_limit_reaches_dataverse(stack, "US-006", "7000.25")

    # and as against an engine from before the bulk routes: one id at a time
    fourth = refuse_a_change(stack, "US-007")
    fix_quietly(stack, "US-007", "6000.75")
    transport = WithoutBulkRoutes()
    code = main(["errors", "resubmit", "--all", "--map", "customers", "--category", "application", "--yes",
                 "--url", stack.host.url, "--key", stack.host.master_key], obj=Seams(transport=transport))
    assert code == 0
    assert transport.posts == ["/api/manage/v1/errors/resubmit",
                               f"/api/manage/v1/errors/{quote(fourth['id'], safe='')}/resubmit"]
    credit_limit_reaches_dataverse(stack, "US-007", "6000.75")
    assert status_of(cli, fourth["id"]) == "resubmitted"
    assert cli.json("errors", "list")["errors"] == []


class WithoutBulkRoutes(httpx.BaseTransport):
    """The real host, but its bulk routes answer as an engine from before them: 404."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.posts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts.append(request.url.raw_path.decode())
            if request.url.path.endswith(("/errors/resubmit", "/errors/discard")):
                return httpx.Response(404)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


# --- the activity log ------------------------------------------------------------------------------------


def test_activity_is_listed_and_followed_until_ctrl_c(cli_stack: Stack, cli: Cli) -> None:
    stack = cli_stack
    tail = subprocess.Popen(cli.argv("activity", "tail", "-f", "-n", "0", "--map", "customers", "--key",
                                     "USMF|US-009", "--interval", "0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=cli.env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in tail.stdout or []], daemon=True).start()
    try:
        time.sleep(2)  # its first look is made: what it prints from here on is new
        name = f"Followed {time.time_ns() % 10**6}"
        response = stack.fo.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='US-009')",
                                  params={"cross-company": "true"}, json={"OrganizationName": name})
        assert response.status_code == 204, response.text
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while not any(" applied " in f" {line} " for line in seen) and time.monotonic() < deadline:
            try:
                seen.append(" ".join(lines.get(timeout=1).split()))
            except queue.Empty:
                continue
        assert any(line.split()[2:5] == ["customers", "USMF|US-009", "fno"] and line.split()[6] == "applied"
                   for line in seen), seen  # when, map, key, source and operation (F&O's: refetch), outcome
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=15) == 0  # Ctrl-C ends it cleanly
        assert tail.stderr is not None and "Traceback" not in tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()

    listed = squeezed(cli.ok("activity", "list", "--map", "customers", "--key", "USMF|US-009", "--since", "10m"))
    assert listed[0] == "at map key change outcome latency reason"
    assert any(line.split()[2:5] == ["customers", "USMF|US-009", "fno"] and line.split()[6] == "applied"
               for line in listed[1:])
    entries = cli.json("activity", "list", "--map", "customers", "--outcome", "failed", "--since", "1h")["entries"]
    assert all(e["outcome"] == "failed" and e["map"] == "customers" for e in entries)

    # without -f: the latest, oldest first, then it stops
    out = squeezed(cli.ok("activity", "tail", "-n", "1", "--map", "customers", "--key", "USMF|US-009",
                          "--outcome", "applied"))
    assert len(out) == 1 and out[0].split()[2:5] == ["customers", "USMF|US-009", "fno"]
    assert out[0].split()[6] == "applied"


# --- the other client commands ---------------------------------------------------------------------------


def test_the_maps_and_sync_commands_answer_against_the_stack(cli: Cli) -> None:
    status = squeezed(cli.ok("maps", "status"))
    assert status[0].split()[:3] == ["map", "mode", "since"]
    assert any(line.split()[:2] == ["customers", "running"] for line in status)

    assert cli.ok("maps", "pause", "vendors", "--reason", "cli e2e").startswith("vendors: paused")
    assert "vendors: paused" in cli.ok("maps", "status", "vendors")
    resumed = cli("maps", "resume", "vendors", "--wait", "--timeout", "60")
    assert resumed.returncode == 0, resumed.stderr
    assert cli.json("maps", "status", "vendors")["mode"] == "running"

    assert json.loads(cli.ok("maps", "show", "customers"))["name"] == "customers"
    assert cli.ok("maps", "versions", "customers").startswith("customers runs its file")

    started = cli("sync", "initial", "customers", "--dry-run")
    assert started.returncode == 0, (started.stdout, started.stderr)
    run_id = next(line.split()[1] for line in started.stdout.splitlines() + started.stderr.splitlines()
                  if line.startswith("run ") and " completed" in line)
    assert any(run["id"] == run_id for run in cli.json("sync", "runs")["runs"])
    assert cli.json("sync", "show", run_id)["status"] == "completed"


def test_the_remaining_maps_sync_and_profile_commands_answer_against_the_stack(cli: Cli, tmp_path: Path) -> None:
    assert cli.ok("maps", "stop", "vendor-groups", "--reason", "cli e2e").startswith("vendor-groups: stopped")
    assert cli.ok("maps", "start", "vendor-groups").startswith("vendor-groups: running")

    definition = json.loads(cli.ok("maps", "show", "vendors"))
    draft = tmp_path / "vendors.json"
    draft.write_text(json.dumps({**definition, "conflict": "whoever_shouts_loudest"}))
    refused = cli("maps", "check", str(draft))
    assert refused.returncode == 1 and "would be refused" in refused.stdout and "conflict" in refused.stdout
    draft.write_text(json.dumps({**definition, "version": "1.0.1", "title": "Vendors (cli e2e)"}))
    assert "would be accepted" in cli.ok("maps", "check", str(draft))

    record = tmp_path / "vendor.json"
    record.write_text(json.dumps({"dataAreaId": "usmf", "VendorAccountNumber": "V-9",
                                  "VendorOrganizationName": "Litware", "VendorGroupId": "10"}))
    values = json.loads(cli.ok("maps", "preview", "vendors", str(record), "--to", "dataverse", "--draft", str(draft)))
    assert values["msdyn_vendorname"] == "Litware" and values["msdyn_company"]["key"] == {"cdm_companycode": "USMF"}

    assert "stored as revision 1" in cli.ok("maps", "put", str(draft), "--reason", "cli e2e")
    assert cli.json("maps", "versions", "vendors")["running_revision"] == 1
    assert "stored as revision 2" in cli.ok("maps", "restore", "vendors", "1", "--reason", "again")
    assert [v["revision"] for v in cli.json("maps", "versions", "vendors")["versions"]] == [2, 1]

    compared = cli("sync", "reconcile", "vendors")
    assert compared.returncode in (0, 3), (compared.stdout, compared.stderr)  # 3: it found drift, which is fine
    run_id = next(line.split()[1] for line in compared.stdout.splitlines() + compared.stderr.splitlines()
                  if line.startswith("run ") and " completed" in line)
    assert cli("sync", "drift", run_id).returncode == 0
    cancelled = cli("sync", "cancel", run_id)  # a completed run cannot be cancelled: the engine says so
    assert cancelled.returncode == 1 and "cancel" in (cancelled.stdout + cancelled.stderr).lower()

    cli.ok("profile", "add", "scratch", "--url", "http://127.0.0.1:9", stdin="not-a-real-key\n")
    listed = cli.ok("profile", "list")
    assert "scratch" in listed and "e2e" in listed and "not-a-real-key" not in listed
    cli.ok("profile", "remove", "scratch")
    assert "scratch" not in cli.ok("profile", "list")
