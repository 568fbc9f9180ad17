"""The one way this project sends mail: SMTP from ``SMTP_URL``, else ``.eml`` files in an outbox.

Only this module imports :mod:`smtplib`. A transport sends one message at a
time and raises :class:`TransientMailError` for what may work on a later try
(4xx replies, dropped connections, timeouts) and :class:`PermanentMailError`
for what will not (5xx replies, a refused recipient, failed authentication).

``SMTP_URL`` forms::

    smtp://host:25                    plain (loopback relays)
    smtp+starttls://user:pass@host:587 STARTTLS, then AUTH
    smtps://user:pass@host:465        TLS from the first byte, then AUTH

Query options: ``timeout`` (seconds, default 30) and ``cafile`` (a CA bundle
to trust besides the system's, for private relays).
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailError(Exception):
    """A message was not accepted; ``code`` is the SMTP reply code when there was one."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


class TransientMailError(MailError):
    """Worth trying again later: a 4xx reply, a dropped connection, a timeout."""


class PermanentMailError(MailError):
    """Will fail again: a 5xx reply, a refused recipient, bad credentials."""


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server (parsed from ``SMTP_URL``)."""

    host: str
    port: int
    security: str  # "plain", "starttls" or "ssl"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    cafile: str | None = None

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{self.security} {user}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpConfig:
    """Parse ``SMTP_URL``; a :class:`ValueError` naming the setting when it is not usable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, got {scheme or url!r}")
    if not parts.hostname:
        raise ValueError("SMTP_URL names no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("SMTP_URL has a port that is not a number from 1 to 65535") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        timeout = float(query.get("timeout", 30))
    except ValueError:
        raise ValueError(f"SMTP_URL timeout must be a number of seconds, got {query['timeout']!r}") from None
    security = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "ssl"}[scheme]
    return SmtpConfig(host=parts.hostname, port=port, security=security,
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None,
                      timeout=timeout, cafile=query.get("cafile"))


class SmtpTransport:
    """Sends through one SMTP server, keeping the connection open between messages."""

    def __init__(self, config: SmtpConfig):
        self.config = config
        self._client: smtplib.SMTP | None = None

    @property
    def description(self) -> str:
        return f"SMTP {self.config.redacted()}"

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.cafile:
            context.load_verify_locations(cafile=self.config.cafile)
        return context

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "ssl":
            client = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._tls_context())
        else:
            client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            if c.security == "starttls":
                client.starttls(context=self._tls_context())
                client.ehlo()
        if c.username:
            client.login(c.username, c.password or "")
        return client

    def send(self, message: EmailMessage) -> str:
        """Send ``message`` to its ``To`` address; returns the server's reply to the data."""
        try:
            if self._client is None:
                self._client = self._connect()
            refused = self._client.send_message(message)
            if refused:  # only when some of several recipients were refused; we send one at a time
                address, (code, reply) = next(iter(refused.items()))
                raise _classify(code, f"{address} refused: {code} {_text(reply)}")
            return "accepted"
        except MailError:
            raise
        except smtplib.SMTPRecipientsRefused as error:
            address, (code, reply) = next(iter(error.recipients.items()))
            self._reset()
            raise _classify(code, f"{address} refused: {code} {_text(reply)}") from None
        except smtplib.SMTPAuthenticationError as error:
            self.close()
            raise PermanentMailError(f"SMTP authentication failed: {error.smtp_code} {_text(error.smtp_error)}",
                                     error.smtp_code) from None
        except smtplib.SMTPNotSupportedError as error:  # e.g. AUTH or STARTTLS not offered: a settings problem
            self.close()
            raise PermanentMailError(f"SMTP server {self.config.host}:{self.config.port}: {error}") from None
        except smtplib.SMTPResponseException as error:
            self._reset()
            raise _classify(error.smtp_code, f"SMTP {error.smtp_code} {_text(error.smtp_error)}") from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError, socket.timeout,
                ssl.SSLError, OSError, smtplib.SMTPException) as error:
            self.close()
            if isinstance(error, ssl.SSLCertVerificationError):
                raise PermanentMailError(f"TLS certificate of {self.config.host} not trusted: {error}") from None
            raise TransientMailError(f"SMTP connection to {self.config.host}:{self.config.port} failed: "
                                     f"{type(error).__name__}: {error}") from None

    def _reset(self) -> None:
        """After a refused message the session may be mid-transaction: RSET, or reconnect next time."""
        try:
            if self._client is not None:
                self._client.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.quit()
            except (smtplib.SMTPException, OSError):
                self._client.close()
            self._client = None


class OutboxTransport:
    """Writes each message as an ``.eml`` file (no SMTP server configured, or a dry run)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def description(self) -> str:
        return f"outbox {self.folder}"

    def send(self, message: EmailMessage) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.@-]+", "_", str(message["Message-ID"] or "message").strip("<>"))[:150]
        path = self.folder / f"{name}.eml"
        partial = path.with_suffix(".eml.partial")
        partial.write_bytes(bytes(message))
        os.replace(partial, path)  # a reader never sees half a file
        return str(path)

    def close(self) -> None:
        pass


def transport(smtp_url: str | None, outbox: Path) -> SmtpTransport | OutboxTransport:
    """SMTP when ``smtp_url`` is set, else the outbox folder."""
    return SmtpTransport(parse_smtp_url(smtp_url)) if smtp_url else OutboxTransport(outbox)


def _classify(code: int, text: str) -> MailError:
    return (TransientMailError if 400 <= code < 500 else PermanentMailError)(text, code)


def _text(reply) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
