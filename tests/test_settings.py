"""The configuration contract: defaults, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.settings import DEFAULT_PG_PORT, SettingsError, load


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


@pytest.mark.parametrize(("env", "message"), [
    ({"WAREHOUSE_PG_PORT": "abc"}, "WAREHOUSE_PG_PORT must be a whole number"),
    ({"WAREHOUSE_PG_PORT": "80"}, "between 1024 and 65535"),
    ({"CHEEKO_DATABASE_URL": "mysql://x"}, "CHEEKO_DATABASE_URL must be a libpq URL"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        load(env)


def test_unknown_database_name():
    with pytest.raises(SettingsError, match="unknown database"):
        load({}).database_url("payments")


def test_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in ("WAREHOUSE_HOME", "CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL", "WAREHOUSE_DUCKDB_PATH", "WAREHOUSE_PG_PORT",
                 "WAREHOUSE_PSEUDONYM_KEY", "WAREHOUSE_PARTITIONS_START"):
        assert name in readme, name


def test_the_development_pseudonym_key_only_serves_the_embedded_databases():
    assert load({}).require_pseudonym_key()
    with pytest.raises(SettingsError, match="WAREHOUSE_PSEUDONYM_KEY must be set"):
        load({"CHEEKO_DATABASE_URL": "postgresql://u@db/cheeko"}).require_pseudonym_key()
    assert load({"CHEEKO_DATABASE_URL": "postgresql://u@db/cheeko", "WAREHOUSE_PSEUDONYM_KEY": "s3cret"}).require_pseudonym_key() == "s3cret"
