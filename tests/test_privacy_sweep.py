"""Children's words and names stay where the app put them (issue 14, item 4).

One end-to-end sweep on a real PostgreSQL: a small generated fleet gets a distinctive marker
planted at the front of every value of every column that holds a child's words or name, a
parent's name or prompt, or the Cognova owner's own words; then everything a user runs is run
(``warehouse run`` over the whole graph, the hourly report tick that sends the admin report and
the weekly parent emails to the outbox, ``warehouse report preview``, ``warehouse extract`` cuts
as CSV, Parquet and DuckDB).
Afterwards every file under the test's folder (warehouse, analyst snapshots, Parquet, CSV, the
Dagster instance's SQLite storage, the outbox) and every table the project writes in the
operational databases is searched for each marker.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from pipelines import cli, generator, postgres, warehouse
from pipelines.settings import CHEEKO, COGNOVA

END = dt.date(2026, 3, 29)  # a Sunday: the fleet's last week, 23 to 29 March, is whole
DAYS = 8
# Monday 30 March, 18:00 UTC: the admin report of the 29th (Asia/Kolkata) and the weekly parent emails of the
# week before are due, as the hourly schedule would find them.
TICK = dt.datetime(2026, 3, 30, 18, 0, tzinfo=dt.UTC)
ADMINS = ["ops@cheeko.example", "founders@cheeko.example"]

# Where a marker goes: (database, table, column). Each value gets its column's marker in front (a report or a
# preview that shortens a text keeps its beginning; a name split on spaces keeps its first word). Markers are
# letters only, so no JSON, SQL or markdown escaping can hide them, and "zqxjkv" has no hex digit, so no hash
# can contain one.
PLANTED_COLUMNS = [
    # Names of the child, of the parent, and the places they show (the generator names devices and agents
    # after the child: "Ava's Cheeko", "Cheeko for Ava").
    (CHEEKO, "kid_profile", "name"),
    (CHEEKO, "kid_profile", "nickname"),
    (CHEEKO, "kid_profile", "school"),
    (CHEEKO, "kid_profile", "preferences"),  # the parent's free-form settings for the child (JSON)
    (CHEEKO, "parent_profile", "display_name"),
    (CHEEKO, "sys_user", "nickname"),
    (CHEEKO, "ai_device", "alias"),
    (CHEEKO, "ai_agent", "agent_name"),
    # What the parent writes for the child's companion.
    (CHEEKO, "ai_agent", "system_prompt"),
    (CHEEKO, "ai_agent", "summary_memory"),
    # The child's own words, and what the companion remembers of them.
    (CHEEKO, "ai_agent_chat_history", "content"),
    (CHEEKO, "analytics_game_attempts", "user_answer"),
    (CHEEKO, "device_memories", "content"),
    # The Cognova owner's name and words.
    (COGNOVA, "user", "name"),
    (COGNOVA, "conversations", "title"),
    (COGNOVA, "conversations", "summary"),
    (COGNOVA, "conversation_messages", "content"),
    (COGNOVA, "documents", "title"),
    (COGNOVA, "documents", "content"),
    (COGNOVA, "tasks", "title"),
    (COGNOVA, "tasks", "description"),
    (COGNOVA, "projects", "name"),
    (COGNOVA, "projects", "description"),
    (COGNOVA, "reminders", "message"),
    (COGNOVA, "cron_agents", "prompt"),
    (COGNOVA, "cron_agents", "description"),
    (COGNOVA, "cron_agent_runs", "output"),
    (COGNOVA, "memory_chunks", "content"),
    (COGNOVA, "memory_chunks", "source_excerpt"),
    (COGNOVA, "token_usage", "source_name"),
]


def marker(database: str, table: str, column: str) -> str:
    """``ZqxjkvCheekoKidProfileName``: unique per column, found case-insensitively (hashes lower-case first)."""
    words = [database, *table.split("_"), *column.split("_")]
    return "Zqxjkv" + "".join(w.capitalize() for w in words)


MARKERS = {marker(*key): ".".join(key) for key in PLANTED_COLUMNS}

# By design, not a leak: the memory sync writes device_memories' text, chunked, into Cheeko's memory_chunks
# (with pgvector embeddings) so the companion can search its own memories. It stays in the operational database,
# beside the device_memories rows it comes from and under the same access; the warehouse keeps only its length
# (privacy.toml, memory_chunks.text), which the sweep of the DuckDB files checks.
BY_DESIGN = {("postgres cheeko: public.memory_chunks", "cheeko.device_memories.content")}

# Delivered, by design: the weekly parent email names the child to that child's own parent (subject and body; read
# from the operational database by pipelines.reports.family_data.recipients, coalesce(nickname, name)). Without
# SMTP_URL the outbox folder *is* the delivery (a development transport), so the email lies there; with SMTP_URL
# nothing is kept on disk. Patterns are fnmatch'ed against the leak's location.
DELIVERED = {
    ("file home/outbox/parent_weekly.*.eml*", "cheeko.kid_profile.nickname"),
}

# The tables the project writes in the operational databases (everything else there is the apps' own).
WRITTEN_SCHEMA = "warehouse"  # the project's own schema: email deliveries, memory sync state, published progress
WRITTEN_APP_TABLES = {
    CHEEKO: ["email_report_history", "memory_chunks", "analytics_streaks", "analytics_user_progress",
             "kid_learning_progress"],
    COGNOVA: [],
}


# JSON columns: the marker goes in as a value the app's format allows (a first text part of a message, one more
# key of an object), so the run reads the data as the apps write it.
JSON_PARTS = {(COGNOVA, "conversation_messages", "content")}
JSON_OBJECTS = {(CHEEKO, "kid_profile", "preferences")}


def _plant(pair) -> dict[str, int]:
    """Put each column's marker in front of every value (empty ones too); rows changed per column."""
    changed = {}
    for database, table, column in PLANTED_COLUMNS:
        # Table and column names come from the fixed list above; values are bound parameters.
        target = f'"{table}"', f'"{column}"'
        if (database, table, column) in JSON_PARTS:
            statement = ("UPDATE {0} SET {1} = (jsonb_build_array(jsonb_build_object('type', 'text', 'text', %s::text)) "
                         "|| coalesce({1}, '[]')::jsonb)::text")
            values = (marker(database, table, column),)
        elif (database, table, column) in JSON_OBJECTS:
            statement = "UPDATE {0} SET {1} = coalesce({1}, '{{}}'::jsonb) || jsonb_build_object('note', %s::text)"
            values = (marker(database, table, column),)
        else:
            # A text called content gets the marker as a paragraph of its own: a memory file is markdown, and its
            # first heading must stay a heading for the chunker.
            statement = "UPDATE {0} SET {1} = %s || %s || coalesce({1}, '')"
            values = (marker(database, table, column), "\n\n" if column == "content" else " ")
        with postgres.connect(pair.url(database)) as conn:
            changed[".".join((database, table, column))] = conn.execute(statement.format(*target), values).rowcount
    return changed


def _configure_reports(url: str) -> None:
    """The generator's admin config, enabled and due at 08:00 in Kolkata, every section, two admins."""
    with postgres.connect(url) as conn:
        conn.execute("UPDATE email_report_config SET enabled = true, schedule_hour = 8, schedule_timezone = %s, "
                     "recipients = %s::jsonb, sections = '{}'::jsonb, updated_at = now()",
                     ("Asia/Kolkata", json.dumps(ADMINS)))


# -- what the sweep reads -------------------------------------------------------------------------------------

def _duckdb_cells(path: Path) -> str:
    """Every cell of every table of a DuckDB file, as text (DuckDB compresses strings, so bytes are not enough)."""
    cells = []
    with warehouse.connect(path, read_only=True) as con:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                             "WHERE database_name = current_database()").fetchall()
        for schema, table in tables:
            for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                cells.extend(str(v) for v in row if v is not None)
    return "\x00".join(cells)


def _parquet_cells(path: Path) -> str:
    with warehouse.in_memory() as con:
        rows = con.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    return "\x00".join(str(v) for row in rows for v in row if v is not None)


def _email_text(data: bytes) -> str:
    """Headers (RFC 2047 decoded) and every part's decoded payload: a base64 or quoted-printable body hides a
    name from a byte search."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    texts = [str(value) for value in message.values()]
    for part in message.walk():
        texts += [str(value) for value in part.values()]
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            texts.append(payload.decode(part.get_content_charset() or "utf-8", errors="replace"))
    return "\x00".join(texts)


def _file_texts(root: Path) -> Iterator[tuple[str, str]]:
    """(location, text) for every file under ``root``: its bytes, and its decoded contents where it has any."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        where = f"file {path.relative_to(root)}"
        data = path.read_bytes()
        yield where, data.decode("latin-1")  # one byte one character: any ASCII marker is found as it is
        if data[8:12] == b"DUCK":
            yield f"{where} (tables)", _duckdb_cells(path)
        elif data[:4] == b"PAR1":
            yield f"{where} (rows)", _parquet_cells(path)
        elif path.suffix == ".eml":
            yield f"{where} (decoded)", _email_text(data)


def _written_tables(pair) -> Iterator[tuple[str, str]]:
    """(location, text) for every table the project writes in the operational databases, row by row."""
    for database in (CHEEKO, COGNOVA):
        with postgres.connect(pair.url(database)) as conn:
            tables = [(WRITTEN_SCHEMA, t) for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (WRITTEN_SCHEMA,))]
            tables += [("public", t) for t in WRITTEN_APP_TABLES[database]]
            for schema, table in tables:
                rows = conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall()
                yield f"postgres {database}: {schema}.{table}", "\x00".join(r for (r,) in rows)


def _leaks(places: Iterator[tuple[str, str]]) -> set[tuple[str, str]]:
    """(location, planted column) for every marker found, in any case (a hash lower-cases first)."""
    anywhere = re.compile("|".join(map(re.escape, MARKERS)), re.IGNORECASE)  # one pass over each text
    by_lower = {mark.lower(): column for mark, column in MARKERS.items()}
    return {(where, by_lower[found.lower()]) for where, text in places for found in set(anywhere.findall(text))}


def _allowed(leak: tuple[str, str]) -> bool:
    where, column = leak
    return leak in BY_DESIGN or any(column == c and fnmatch.fnmatchcase(where, p) for p, c in DELIVERED)


# -- the test -------------------------------------------------------------------------------------------------

def test_no_childs_words_or_name_reach_any_file_or_written_table(make_databases, tmp_path, monkeypatch):
    pair = make_databases()
    generator.generate(pair.cheeko, pair.cognova, generator.Options(devices=6, days=DAYS, seed=14, end=END),
                       tmp_path / "gen", progress=lambda _: None)
    planted = _plant(pair)
    assert all(planted.values()), f"columns with no row to plant in: {[k for k, n in planted.items() if not n]}"
    _configure_reports(pair.cheeko)

    home = tmp_path / "home"
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    env = pair.environ() | {"WAREHOUSE_HOME": str(home), "WAREHOUSE_DUCKDB_PATH": str(home / "warehouse.duckdb"),
                            "WAREHOUSE_PSEUDONYM_KEY": "sweep-key", "DAGSTER_HOME": str(dagster_home)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("SMTP_URL", "WAREHOUSE_REPORT_DRY_RUN", "WAREHOUSE_DAGSTER_URL"):
        monkeypatch.delenv(name, raising=False)  # the emails go to the outbox, the run happens here

    from assets import runs
    from assets.definitions import defs
    from assets.reports import email_reports_job
    from pipelines.settings import load

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        # `warehouse run`: every asset, the memory sync and the report tick (nothing is due at today's date) too.
        summary = runs.materialize(load(), instance, progress=lambda _: None)
        assert summary.rows, "the run materialized nothing"
        # The next hourly run: memory_chunks now holds the synced chunks, so the warehouse's copy is checked too.
        runs.materialize(load(), instance, selection="key:raw_cheeko/memory_chunks", progress=lambda _: None)
        # The hourly schedule's tick at TICK, as the schedule launches it (the tag is its tick time).
        ticked = defs.resolve_job_def(email_reports_job.name).execute_in_process(
            instance=instance, tags={"dagster/scheduled_execution_time": TICK.isoformat()})
        assert ticked.success
    outbox = home / "outbox"
    assert len(list(outbox.glob("admin_daily.*.eml"))) == len(ADMINS)
    assert list(outbox.glob("parent_weekly.*.eml")), "no weekly parent email was sent"
    with postgres.connect(pair.cheeko) as conn:
        assert conn.execute("SELECT count(*) FROM email_report_history WHERE report_data IS NOT NULL").fetchone()[0]

    # `warehouse report preview`: the admin report as HTML, charts and text, to look at.
    assert cli.main(["report", "preview"]) == 0
    # `warehouse extract`: an analyst's cuts of the tables that held the markers, in every format.
    cuts = home / "cuts"
    for out, tables in ((cuts / "kids.csv", ["raw_cheeko.kid_profile"]),
                        (cuts / "chats.parquet", ["raw_cheeko.ai_agent_chat_history"]),
                        (cuts / "messages.csv", ["raw_cognova.conversation_messages"]),
                        (cuts / "memories.parquet", ["raw_cheeko.device_memories"]),
                        (cuts / "everything.duckdb", ["raw_cheeko.*", "raw_cognova.*", "marts.*"])):
        assert cli.main(["extract", "--out", str(out), "--tables", *tables]) == 0

    leaks = _leaks(_file_texts(tmp_path)) | _leaks(_written_tables(pair))
    # The sweep can see what it looks for: memory_chunks holds the planted memory text.
    assert ("postgres cheeko: public.memory_chunks", "cheeko.device_memories.content") in leaks
    # The warehouse's copy of memory_chunks was loaded with the chunks in it, so its length rule was applied.
    with warehouse.connect(home / "warehouse.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_cheeko.memory_chunks").fetchone()[0] > 0
    unexpected = sorted(f"{where}: {marker(*column.split('.'))} (planted in {column})"
                        for where, column in leaks if not _allowed((where, column)))
    assert not unexpected, "planted values found:\n" + "\n".join(unexpected)
    # An allowance that no longer matches anything is stale: the issue was fixed, or the test stopped looking.
    for pattern, column in DELIVERED:
        assert any(c == column and fnmatch.fnmatchcase(w, pattern) for w, c in leaks), (pattern, column)
