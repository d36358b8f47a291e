"""The e-mail channel: stdlib smtplib in a worker thread, plain text, STARTTLS, implicit TLS or none."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Literal

from core.ops.notify.notice import AlertNotice, NotifyRefused, NotifyTransient, one_line

log = logging.getLogger("core.ops.notify")


@dataclass
class EmailChannel:
    host: str
    port: int
    tls: Literal["starttls", "tls", "none"]
    user: str | None
    password: str | None = field(repr=False)
    sender: str
    recipients: list[str]
    timeout: float = 15.0  # seconds per SMTP connection and command
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "email"

    def message(self, notice: AlertNotice, recipients: list[str] | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = notice.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(recipients or self.recipients)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=parseaddr(self.sender)[1].rpartition("@")[2] or "dual-write.local")
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to an alert
        msg.set_content(notice.text())
        return msg

    async def send(self, notice: AlertNotice, *, recipients: list[str] | None = None) -> None:
        to = list(recipients or self.recipients)
        if not to:
            raise NotifyRefused("no recipients (set ALERT_EMAIL_TO or name them in the rule)")
        await asyncio.to_thread(self._send, self.message(notice, to), to)

    def _send(self, msg: EmailMessage, to: list[str]) -> None:
        where = f"SMTP {self.host}:{self.port}"
        context = self.ssl_context or ssl.create_default_context()
        try:
            if self.tls == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.tls == "starttls":
                    smtp.starttls(context=context)
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(msg, from_addr=self.sender, to_addrs=to)
            if refused:
                log.warning("alert e-mail: %s refused %d of %d recipients", where, len(refused), len(to))
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            kind = NotifyTransient if codes and all(400 <= c < 500 for c in codes) else NotifyRefused
            raise kind(f"{where}: every recipient refused ({', '.join(map(str, sorted(set(codes))))})") from None
        except smtplib.SMTPResponseException as exc:  # includes authentication and connect errors
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            reason = f"{where}: {exc.smtp_code} {one_line(said)[:120]}"
            raise (NotifyTransient if 400 <= exc.smtp_code < 500 else NotifyRefused)(reason) from None
        except smtplib.SMTPServerDisconnected:
            raise NotifyTransient(f"{where}: the server closed the connection") from None
        except ssl.SSLError as exc:  # certificate not trusted, wrong host name, TLS on a plain port
            raise NotifyRefused(f"{where}: TLS {type(exc).__name__} {exc.reason or ''}".rstrip()) from None
        except smtplib.SMTPException as exc:  # STARTTLS or AUTH not offered and the like
            raise NotifyRefused(f"{where}: {one_line(str(exc))[:120]}") from None
        except OSError as exc:  # refused, unreachable, timed out, name not resolved
            raise NotifyTransient(f"{where}: {type(exc).__name__} {exc.strerror or exc}".rstrip()) from None
