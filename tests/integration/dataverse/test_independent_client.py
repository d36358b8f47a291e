"""Microsoft's own Python client (PowerPlatform-Dataverse-Client) against the simulator: create, read,
upsert by alternate key, page. The client refuses http://, so this simulator instance serves HTTPS with a
throwaway self-signed certificate that requests trusts through REQUESTS_CA_BUNDLE."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

dataverse_client = pytest.importorskip("PowerPlatform.Dataverse.client")
from azure.core.credentials import AccessToken  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from PowerPlatform.Dataverse.models.upsert import UpsertItem  # noqa: E402

from devstack.dataverse.auth import make_token  # noqa: E402
from tests.fixtures.dataverse import DataverseSim, start_dataverse  # noqa: E402

pytestmark = pytest.mark.integration


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class StaticCredential:
    """A TokenCredential that hands out one unsigned JWT (the simulator reads only its `oid`)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def tls_dataverse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataverseSim, Path]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    sim = start_dataverse("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        yield sim, cert
    finally:
        sim.stop()


@pytest.fixture
def client(tls_dataverse, monkeypatch):
    sim, cert = tls_dataverse
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    url = f"https://127.0.0.1:{sim.port}"
    with dataverse_client.DataverseClient(url, StaticCredential(make_token(str(uuid.uuid4())))) as c:
        yield c


def test_create_and_read(client):
    number = "PP-" + uuid.uuid4().hex[:8]
    record_id = client.records.create("account", {"name": "Made by the Microsoft client", "accountnumber": number,
                                                  "creditlimit": 1234.5})
    got = client.records.retrieve("account", record_id, select=["name", "accountnumber", "creditlimit"])
    assert got["name"] == "Made by the Microsoft client" and got["accountnumber"] == number
    assert got["creditlimit"] == 1234.5


def test_upsert_by_alternate_key(client):
    code = "Q" + uuid.uuid4().hex[:3].upper()
    item = {"currencyname": "Quux", "currencysymbol": "q", "exchangerate": 2.5, "currencyprecision": 2}
    client.records.upsert("transactioncurrency", [UpsertItem(alternate_key={"isocurrencycode": code}, record=item)])
    client.records.upsert("transactioncurrency", [UpsertItem(alternate_key={"isocurrencycode": code},
                                                             record={**item, "currencyname": "Quux 2"})])
    rows = list(client.records.list("transactioncurrency", filter=f"isocurrencycode eq '{code}'",
                                    select=["currencyname"]))
    assert [r["currencyname"] for r in rows] == ["Quux 2"]
    prefix = "PM-" + uuid.uuid4().hex[:6]
    many = [UpsertItem(alternate_key={"productnumber": f"{prefix}-{i}"}, record={"name": f"Bulk {i}"})
            for i in range(3)]
    client.records.upsert("product", many)
    client.records.upsert("product", many)  # the second run updates the same three rows
    made = list(client.records.list("product", filter=f"startswith(productnumber,'{prefix}')"))
    assert sorted(r["name"] for r in made) == ["Bulk 0", "Bulk 1", "Bulk 2"]


def test_paging(client):
    pages = list(client.records.list_pages("contact", select=["lastname"], filter="msdyn_contactpersonid ne null",
                                           page_size=40))
    assert len(pages) == 5
    ids = [r["contactid"] for page in pages for r in page]
    assert len(ids) == len(set(ids)) == 200
