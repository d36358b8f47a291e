"""Register webhook steps through the Web API, the documented way (reference §1.3): a serviceendpoint
(contract 8), one sdkmessageprocessingstep per table and message, and images. Works against the
simulator and a real environment alike; tests and the local stack use it.

    python -m devstack.dataverse.registration --url "http://127.0.0.1:7071/api/dataverse-webhook" \\
        --key local-function-key --tables account,contact --messages Create,Update,Delete
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from devstack.dataverse.auth import make_token

# Images a sync engine wants by default: the whole row after Create/Update, and before Update/Delete (a
# Delete carries only an EntityReference, so the integration key must come from the pre image).
DEFAULT_IMAGES: dict[str, list[dict[str, Any]]] = {
    "Create": [],
    "Update": [{"entityalias": "PreImage", "imagetype": 0}, {"entityalias": "PostImage", "imagetype": 1}],
    "Delete": [{"entityalias": "PreImage", "imagetype": 0}],
}


class RegistrationError(RuntimeError):
    """The Web API refused a registration request; the message carries its answer."""


def _check(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise RegistrationError(f"{what}: HTTP {response.status_code} {response.text}")
    return response


def _created_id(response: httpx.Response, what: str) -> str:
    _check(response, what)
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


def message_id(client: httpx.Client, name: str) -> str:
    r = _check(client.get("sdkmessages", params={"$select": "sdkmessageid,name", "$filter": f"name eq '{name}'"}),
               f"sdkmessage {name}")
    found = r.json()["value"]
    if not found:
        raise RegistrationError(f"no sdkmessage named {name}")
    return found[0]["sdkmessageid"]


def filter_id(client: httpx.Client, message: str, entity: str) -> str:
    mid = message_id(client, message)
    r = _check(client.get("sdkmessagefilters", params={
        "$select": "sdkmessagefilterid",
        "$filter": f"primaryobjecttypecode eq '{entity}' and _sdkmessageid_value eq {mid}",
    }), f"sdkmessagefilter {message} {entity}")
    found = r.json()["value"]
    if not found:
        raise RegistrationError(f"{message} of {entity} cannot have steps (no sdkmessagefilter)")
    return found[0]["sdkmessagefilterid"]


@dataclass
class Registration:
    endpoint_id: str
    step_ids: list[str] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)

    @property
    def step_id(self) -> str:
        return self.step_ids[0]

    def remove(self, client: httpx.Client) -> None:
        for image in self.image_ids:
            client.delete(f"sdkmessageprocessingstepimages({image})")
        for step in self.step_ids:
            client.delete(f"sdkmessageprocessingsteps({step})")
        client.delete(f"serviceendpoints({self.endpoint_id})")


def create_endpoint(client: httpx.Client, url: str, *, name: str, authtype: int = 4, authvalue: str = "") -> str:
    return _created_id(client.post("serviceendpoints", json={
        "name": name, "url": url, "contract": 8, "authtype": authtype, "authvalue": authvalue, "messageformat": 2,
    }), f"serviceendpoint {name}")


def add_step(
    client: httpx.Client, registration: Registration, *, entity: str, message: str, mode: int = 1, stage: int = 40,
    filtering: str | None = None, images: list[dict[str, Any]] | None = None, asyncautodelete: bool = False,
) -> str:
    body: dict[str, Any] = {
        "name": f"dw-oss: {message} of {entity}",
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({registration.endpoint_id})",
        "sdkmessageid@odata.bind": f"/sdkmessages({message_id(client, message)})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id(client, message, entity)})",
        "stage": stage, "mode": mode, "rank": 1, "supporteddeployment": 0, "asyncautodelete": asyncautodelete,
    }
    if filtering:
        body["filteringattributes"] = filtering
    step = _created_id(client.post("sdkmessageprocessingsteps", json=body), f"step {message} of {entity}")
    registration.step_ids.append(step)
    for image in DEFAULT_IMAGES.get(message, []) if images is None else images:
        registration.image_ids.append(_created_id(client.post("sdkmessageprocessingstepimages", json={
            "messagepropertyname": "Target", "name": image["entityalias"],
            "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step})", **image,
        }), f"image {image['entityalias']} of {message} of {entity}"))
    return step


def register_webhook(
    client: httpx.Client, url: str, *, entity: str, message: str, mode: int = 1, stage: int = 40,
    filtering: str | None = None, images: list[dict[str, Any]] | None = None, authtype: int = 4,
    authvalue: str = "test-key",
) -> Registration:
    """One endpoint with one step (and its images; none unless given)."""
    registration = Registration(create_endpoint(client, url, name=f"{entity} {message} webhook", authtype=authtype,
                                                authvalue=authvalue))
    add_step(client, registration, entity=entity, message=message, mode=mode, stage=stage, filtering=filtering,
             images=images or [])
    return registration


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devstack.dataverse.registration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataverse", default="http://127.0.0.1:7101", help="environment URL")
    p.add_argument("--token", help="bearer token (default: an unsigned local token)")
    p.add_argument("--url", required=True, help="the webhook receiver")
    p.add_argument("--key", default="", help="function key, sent as ?code= (authtype 4)")
    p.add_argument("--tables", required=True, help="comma-separated logical names")
    p.add_argument("--messages", default="Create,Update,Delete")
    args = p.parse_args(argv)
    token = args.token or make_token(str(uuid.uuid5(uuid.NAMESPACE_URL, "dw-oss registration")), name="registration")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "OData-Version": "4.0"}
    api = args.dataverse.rstrip("/") + ("" if "/api/data/" in args.dataverse else "/api/data/v9.2") + "/"
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        registration = Registration(create_endpoint(client, args.url, name="dw-oss webhook", authvalue=args.key))
        for table in (t.strip() for t in args.tables.split(",") if t.strip()):
            for message in (m.strip() for m in args.messages.split(",") if m.strip()):
                add_step(client, registration, entity=table, message=message)
    print(f"serviceendpoint {registration.endpoint_id}: {len(registration.step_ids)} steps, "  # noqa: T201
          f"{len(registration.image_ids)} images")


if __name__ == "__main__":
    main()
