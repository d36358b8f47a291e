"""Secrets out of every log line, whoever logs it.

Libraries log what they see: httpx writes every request's URL at INFO (a function key in a `code` parameter, a
webhook URL whose path is its token), an SDK at DEBUG may write a connection string. So the redaction is not left
to each call site: `install()` puts a log record factory in place that, for every record a logger emits (whatever
its level and logger), replaces

- the values it was given (the settings that hold secrets: `secrets_of(settings)`), and
- what has the shape of a credential whatever its value: `code=`, `sig=`, `key=`, `token=`, `password=`,
  `client_secret=` query parameters, `SharedAccessKey=`, `AccountKey=`, `SharedAccessSignature=` and
  `Password=` parts of connection strings, and bearer tokens,

with `***`, in the message and in an exception's text. Records are made only once a logger's level lets them
through, so a quiet logger costs nothing. Installing twice adds values and keeps one factory.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from core.settings import Settings

MASK = "***"
_MIN_LENGTH = 4  # shorter values would mask ordinary words; no real key is this short
_SHAPES = (
    re.compile(r"(?i)([?&](?:code|sig|signature|key|apikey|api_key|token|access_token|client_secret|password)=)"
               r"[^&\s\"'#<>]+"),
    re.compile(r"(?i)((?:SharedAccessKey|AccountKey|SharedAccessSignature|Password|Pwd)=)[^;\s\"']+"),
    re.compile(r"(?i)(\bBearer\s+)[A-Za-z0-9\-._~+/]+=*"),
)
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """`text` with the installed values and anything shaped like a credential masked."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape in _SHAPES:
        text = shape.sub(lambda found: found.group(1) + MASK, text)
    return text


def secrets_of(settings: Settings) -> list[str]:
    """The secret values the settings hold: keys, passwords, the keys inside connection strings, and the alert
    webhook URL's path and query (such URLs are their own credential)."""
    values = [secret.get_secret_value() for secret in (settings.ingest_key, settings.client_secret,
                                                        settings.alert_smtp_password, settings.virtual_tables_key)
              if secret is not None]
    if settings.virtual_tables_sql_url is not None:  # a database URL's password (postgresql://user:pw@host/db)
        password = urlsplit(settings.virtual_tables_sql_url.get_secret_value()).password
        if password:
            values.append(password)
    for connection in (settings.table_storage_connection, settings.servicebus_connection):
        for part in connection.get_secret_value().split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in {"accountkey", "sharedaccesskey", "sharedaccesssignature"}:
                values.append(value.strip())
    if settings.alert_webhook_url is not None:
        url = urlsplit(str(settings.alert_webhook_url))
        values.append(url.path + (f"?{url.query}" if url.query else ""))
    return values


def install(values: Iterable[str] = ()) -> None:
    """Mask `values` (and credential shapes) in every log record of this process from now on."""
    global _pattern, _installed
    with _lock:
        for value in values:
            if value and len(value.strip("/?")) >= _MIN_LENGTH:
                _values.update({value, quote(value, safe=""), quote(value, safe="/")})
        if _values:
            # longest first, so a value that contains another is masked whole
            _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))
        if not _installed:
            _installed = True
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                _redact_record(record)
                return record

            logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a call with bad arguments: logging reports it when it formats the record
        return
    masked = redact(message)
    if masked != message:  # else the record stays as it was made (handlers may group by its template)
        record.msg, record.args = masked, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        masked = redact(text)
        if masked != text:
            record.exc_text = masked
