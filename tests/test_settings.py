"""The configuration contract: defaults, overrides and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.settings import DEFAULT_PG_PORT, DEVELOPMENT_PSEUDONYM_KEY, SettingsError, load, masked, shown, variables

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_live_under_the_warehouse_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load({})
    assert settings.home == tmp_path / ".local"
    assert settings.duckdb_path == tmp_path / ".local" / "warehouse.duckdb"
    assert settings.pgdata == tmp_path / ".local" / "pgdata"
    assert settings.outbox == tmp_path / ".local" / "outbox"
    assert settings.extracts == tmp_path / ".local" / "extracts"
    assert settings.pg_port == DEFAULT_PG_PORT
    assert settings.cheeko_url is None and settings.cognova_url is None
    assert settings.uses_embedded


def test_environment_overrides(tmp_path):
    settings = load({
        "WAREHOUSE_HOME": str(tmp_path / "home"),
        "WAREHOUSE_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
        "WAREHOUSE_PG_PORT": "6000",
        "CHEEKO_DATABASE_URL": "postgresql://u:p@db:5432/cheeko",
        "COGNOVA_DATABASE_URL": "postgres://u@db/cognova",
    })
    assert settings.home == tmp_path / "home"
    assert settings.duckdb_path == tmp_path / "w.duckdb"
    assert settings.pg_port == 6000
    assert settings.database_url("cheeko") == "postgresql://u:p@db:5432/cheeko"
    assert settings.database_url("cognova") == "postgres://u@db/cognova"
    assert not settings.uses_embedded
    assert load({"WAREHOUSE_DAGSTER_URL": " https://dagster.example:3000/ "}).dagster_url == "https://dagster.example:3000"


@pytest.mark.parametrize(("env", "message"), [
    ({"WAREHOUSE_PG_PORT": "abc"}, "WAREHOUSE_PG_PORT must be a whole number"),
    ({"WAREHOUSE_PG_PORT": "80"}, "between 1024 and 65535"),
    ({"CHEEKO_DATABASE_URL": "mysql://x"}, "CHEEKO_DATABASE_URL must be a libpq URL"),
    ({"WAREHOUSE_DAGSTER_URL": "localhost:3000"}, "WAREHOUSE_DAGSTER_URL must look like http://host:3000"),
    ({"WAREHOUSE_DAGSTER_URL": "http://ui:port"}, "WAREHOUSE_DAGSTER_URL is not a URL"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load(env)


def test_unknown_database_name():
    with pytest.raises(SettingsError, match="unknown database"):
        load({}).database_url("payments")


CONTRACT = [f.metadata["variable"] for f in variables()]


class Recording(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def get(self, name, default=None):
        self.asked.append(name)
        return super().get(name, default)


def test_the_contract_is_the_settings_fields_and_nothing_else_is_read():
    assert len(CONTRACT) == len(set(CONTRACT)) == len(variables())  # every field names a variable of its own
    env = Recording()
    load(env)
    assert sorted(set(env.asked)) == sorted(CONTRACT)  # load() reads no variable the contract lacks


def test_the_code_names_no_variable_outside_the_contract():
    """A variable read anywhere in the pipeline or the graph is one of the contract's (and so printed by config)."""
    root = Path(__file__).resolve().parents[1]
    named = {name for folder in ("pipelines", "assets") for path in (root / folder).rglob("*.py")
             for name in re.findall(r"\b(WAREHOUSE_[A-Z_]+|[A-Z]+_DATABASE_URL|SMTP_URL)\b", path.read_text())}
    assert named <= set(CONTRACT), named - set(CONTRACT)


def test_the_readme_configuration_table_is_the_contract():
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE)
    assert documented == CONTRACT


def test_every_setting_is_shown_with_its_origin_and_no_secret():
    env = {"CHEEKO_DATABASE_URL": "postgresql://etl:hunter2@db.example/cheeko?sslmode=require",
           "COGNOVA_DATABASE_URL": "postgresql://etl@db.example/cognova?password=letmein",
           "SMTP_URL": "smtps://reports:mailpass@mail.example:465", "WAREHOUSE_PSEUDONYM_KEY": "key-of-my-own",
           "WAREHOUSE_PG_PORT": "6000"}
    rows = shown(load(env), env)
    assert [r.variable for r in rows] == CONTRACT
    by_name = {r.variable: r for r in rows}
    assert all(secret not in r.value for r in rows for secret in ("hunter2", "letmein", "mailpass", "key-of-my-own"))
    assert by_name["CHEEKO_DATABASE_URL"].value == "postgresql://etl:***@db.example/cheeko?sslmode=require"
    assert by_name["COGNOVA_DATABASE_URL"].value == "postgresql://etl@db.example/cognova?password=***"
    assert by_name["SMTP_URL"].value == "smtps://reports:***@mail.example:465"
    assert by_name["WAREHOUSE_PSEUDONYM_KEY"].value == "a key of your own (not shown)"
    assert (by_name["WAREHOUSE_PG_PORT"].origin, by_name["WAREHOUSE_PG_PORT"].value) == ("set", "6000")
    assert by_name["WAREHOUSE_EXTRACTS_KEEP"].origin == "default"
    embedded = shown(load({}), {}, embedded_urls={"cheeko": "postgresql://postgres@127.0.0.1:54329/cheeko"})
    assert {r.variable: (r.origin, r.value) for r in embedded}["CHEEKO_DATABASE_URL"] == (
        "embedded", "postgresql://postgres@127.0.0.1:54329/cheeko")
    assert {r.variable: r.value for r in embedded}["WAREHOUSE_PSEUDONYM_KEY"] == "the development key"
    assert DEVELOPMENT_PSEUDONYM_KEY not in repr(load({}))


def test_masked_urls_keep_everything_but_the_password():
    assert masked("postgresql://u:p%40ss@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"
    assert masked("postgresql://h/db") == "postgresql://h/db"


def test_the_development_pseudonym_key_only_serves_the_embedded_databases():
    assert load({}).require_pseudonym_key()
    with pytest.raises(SettingsError, match="WAREHOUSE_PSEUDONYM_KEY must be set") as refused:
        load({"CHEEKO_DATABASE_URL": "postgresql://u@db/cheeko"}).require_pseudonym_key()
    # The message names the configured database and how to make a key.
    assert "CHEEKO_DATABASE_URL" in str(refused.value) and "secrets.token_hex" in str(refused.value)
    assert load({"CHEEKO_DATABASE_URL": "postgresql://u@db/cheeko", "WAREHOUSE_PSEUDONYM_KEY": "s3cret"}).require_pseudonym_key() == "s3cret"
    configured = shown(load({"CHEEKO_DATABASE_URL": "postgresql://u@db/cheeko"}), {"CHEEKO_DATABASE_URL": "x"})
    assert "refused" in {r.variable: r.value for r in configured}["WAREHOUSE_PSEUDONYM_KEY"]


def test_the_readme_says_the_development_key_is_refused_for_configured_databases():
    section = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert "development pseudonym key is refused for configured databases" in section
    assert "secrets.token_hex" in section
