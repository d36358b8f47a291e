"""jsonwire (exact decimals) and $batch building/parsing."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from core.connectors import jsonwire
from core.connectors.batch import BatchOp, build_batch, parse_batch


def test_decimals_keep_every_digit_both_ways() -> None:
    value = Decimal("123456789012345678.1234567891")
    data = jsonwire.dumps({"amount": value, "n": 3, "list": [Decimal("-0.0000000001")], "s": "dec:1"})
    assert data == b'{"amount":123456789012345678.1234567891,"n":3,"list":[-0.0000000001],"s":"dec:1"}'
    back = jsonwire.loads(data)
    assert back["amount"] == value and isinstance(back["n"], int) and back["s"] == "dec:1"
    assert jsonwire.loads(jsonwire.dumps({"e": Decimal("1E+3")}))["e"] == Decimal(1000)


def test_datetimes_are_utc_z_and_naive_ones_are_refused() -> None:
    moment = dt.datetime(2024, 1, 31, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert json.loads(jsonwire.dumps({"t": moment, "d": dt.date(2024, 1, 31)})) == {
        "t": "2024-01-31T12:00:00Z", "d": "2024-01-31"}
    with pytest.raises(ValueError, match="naive"):
        jsonwire.dumps({"t": dt.datetime(2024, 1, 31)})
    with pytest.raises(ValueError):
        jsonwire.dumps({"x": Decimal("NaN")})
    with pytest.raises(ValueError):
        jsonwire.dumps({"x": "\x00dec:1"})


def test_batch_body_is_crlf_with_one_changeset() -> None:
    content_type, body = build_batch([BatchOp("POST", "accounts", {"creditlimit": Decimal("1.0000000001")}),
                                      BatchOp("PATCH", "accounts(1)", {"name": "x"}, {"If-Match": "*"})],
                                     atomic=True, boundary="batch_T")
    text = body.decode()
    assert content_type == 'multipart/mixed; boundary="batch_T"'
    assert "\n" not in text.replace("\r\n", "")
    assert text.count("Content-ID:") == 2 and "Content-ID: 2" in text and "If-Match: *" in text
    assert '{"creditlimit":1.0000000001}' in text and text.endswith("--batch_T--\r\n")
    with pytest.raises(ValueError, match="GET"):
        build_batch([BatchOp("GET", "accounts")], atomic=True)


def test_parse_batch_flattens_changesets_and_keeps_order() -> None:
    body = (
        "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: https://x/accounts(1)\r\n\r\n\r\n"
        "--changesetresponse_2--\r\n"
        "--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n"
        '{"error":{"code":"0x80044331","message":"too long","amount":1.25}}\r\n'
        "--batchresponse_1--\r\n"
    )
    results = parse_batch("multipart/mixed; boundary=batchresponse_1", body.encode())
    assert [r.status for r in results] == [204, 400]
    assert results[0].content_id == "1" and results[0].headers["odata-entityid"] == "https://x/accounts(1)"
    assert results[0].body_text == "" and results[0].json is None and results[0].ok
    assert results[1].json["error"]["amount"] == Decimal("1.25") and not results[1].ok
