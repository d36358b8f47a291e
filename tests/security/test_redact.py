"""core.ops.redact: secrets out of every log record, by value and by shape, whoever logs them."""

from __future__ import annotations

import logging

import pytest

from core.ops import redact
from core.settings import Settings

CONNECTION = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=QWNjb3VudEtleVZhbHVlMTIz==;"
              "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;")
BUS = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey=SasValue123456;UseDevelopmentEmulator=true"


def test_shapes_of_credentials_are_masked_whatever_their_value() -> None:
    assert redact.redact("POST http://h/api/dataverse/webhook?code=abc123&x=1") == (
        "POST http://h/api/dataverse/webhook?code=***&x=1")
    assert redact.redact("GET https://a.blob/c?sv=2020&sig=Zm9v%2Bbar") == "GET https://a.blob/c?sv=2020&sig=***"
    assert "QWNjb3VudEtleVZhbHVlMTIz" not in redact.redact(f"could not connect: {CONNECTION}")
    assert "SasValue123456" not in redact.redact(BUS)
    assert redact.redact("Authorization: Bearer eyJ0eXAi.eyJhdWQi.c2ln") == "Authorization: Bearer ***"
    # what only looks alike stays
    assert redact.redact("GET accounts?$skiptoken=abc&$filter=name eq 'x'") == (
        "GET accounts?$skiptoken=abc&$filter=name eq 'x'")
    assert redact.redact("key column accountnumber: code 3") == "key column accountnumber: code 3"


def test_the_settings_secrets_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(table_storage_connection=CONNECTION, servicebus_connection=BUS,  # type: ignore[arg-type]
                        dataverse_url="http://127.0.0.1:7101", fno_url="http://127.0.0.1:7102", auth_mode="local",
                        ingest_key="IngestKeyValue", client_secret="ClientSecretValue",
                        alert_smtp_password="SmtpPasswordValue",
                        alert_webhook_url="https://hooks.example.test/services/T0/B0/HookTokenValue",
                        virtual_tables_key="VirtualTablesKeyValue",
                        virtual_tables_sql_url="postgresql+psycopg://reader:DbPasswordValue@db.example.test/erp")
    found = redact.secrets_of(settings)
    for value in ("IngestKeyValue", "ClientSecretValue", "SmtpPasswordValue", "QWNjb3VudEtleVZhbHVlMTIz==",
                  "SasValue123456", "/services/T0/B0/HookTokenValue", "VirtualTablesKeyValue", "DbPasswordValue"):
        assert value in found


def test_installed_values_are_masked_in_every_record_at_every_level(caplog: pytest.LogCaptureFixture) -> None:
    redact.install(["ValueOfTheTestOnly42", ""])  # an empty value masks nothing
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.DEBUG):
        log.debug("connecting with %s", "ValueOfTheTestOnly42")
        log.error("url %s", "https://x/p%3FValueOfTheTestOnly42")
        try:
            raise RuntimeError("refused: ValueOfTheTestOnly42")
        except RuntimeError:
            log.exception("failed")
        log.info("nothing secret here: %d rows", 3)
    assert "ValueOfTheTestOnly42" not in caplog.text
    assert "connecting with ***" in caplog.text and "refused: ***" in caplog.text
    plain = caplog.records[-1]
    assert (plain.msg, plain.args) == ("nothing secret here: %d rows", (3,))  # untouched when nothing is masked
