"""The migrated databases match the schema documents in ``shared/seeds/``.

The documents are parsed at test time (:mod:`seed_docs`), so an edit to a
document or to a migration that makes them disagree fails here. For every
documented table and column we check, against the PostgreSQL catalogs of
freshly migrated databases: existence, type (through the explicit maps
below), nullability, documented defaults, primary keys, single-column and
composite unique constraints, and foreign keys (with the ON DELETE action
where the document states one). Where we deliberately differ from a
document, the difference is listed in ``TYPE_DEVIATIONS`` with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pipelines import postgres
from pipelines.settings import CHEEKO, COGNOVA
from seed_docs import (
    COGNOVA_ERRATA,
    Column,
    SeedDocument,
    Table,
    cheeko_document,
    cognova_document,
)

DOCUMENTS: dict[str, SeedDocument] = {CHEEKO: cheeko_document(), COGNOVA: cognova_document()}

# ---- Documented type -> PostgreSQL type (as pg_catalog.format_type prints it) ---------

CHEEKO_TYPES = {
    "BigInt": "bigint",
    "BigInt (autoincrement)": "bigint",  # identity-ness is checked with the defaults
    "Int": "integer",
    "SmallInt": "smallint",
    "String": "text",
    "String[]": "text[]",
    "Boolean": "boolean",
    # Prisma DateTime is @db.Timestamptz(6) in Cheeko's schema (metrics.md: every time
    # is timestamptz(6)); "@db.Date" is rendered "DateTime (Date)".
    "DateTime": "timestamp(6) with time zone",
    "DateTime (Date)": "date",
    "Json": "jsonb",
    "UUID": "uuid",
    # The document does not give the dimension: 384 is all-MiniLM-L6-v2's, the
    # embedding model the project ships.
    'Unsupported("vector")': "vector(384)",
}
# Prisma's sized types: "String (n)" is @db.VarChar(n), "Decimal (p,s)" is @db.Decimal(p, s).
CHEEKO_SIZED_TYPES = [
    (re.compile(r"String \((\d+)\)"), "character varying({0})"),
    (re.compile(r"Decimal \((\d+),\s*(\d+)\)"), "numeric({0},{1})"),
]
COGNOVA_TYPES = {
    "text": "text",
    "boolean": "boolean",
    "timestamptz": "timestamp with time zone",
    "uuid": "uuid",
    "integer": "integer",
    "real": "real",
}

# Columns whose type deliberately differs from what the document's Type cell
# says: (database, table, column) -> (PostgreSQL type, reason).
TYPE_DEVIATIONS: dict[tuple[str, str, str], tuple[str, str]] = {
    (COGNOVA, "tasks", "tags"): (
        "text[]",
        "documented as text with default [] and 'Array of tag strings': Drizzle's text().array()",
    ),
    (COGNOVA, "documents", "tags"): (
        "text[]",
        "documented as text with default [] and 'Array of tag strings': Drizzle's text().array()",
    ),
}

# Cognova's Default column is filled for every row ("-" = none), so a default
# in the database that the document does not show is drift too. Cheeko's
# defaults live in free-text descriptions that mention only some of them
# (timestamps and UUID keys get server defaults by our convention), so there
# only the documented ones are required.
DEFAULTS_EXHAUSTIVE = {CHEEKO: False, COGNOVA: True}

# Volatile defaults: compared as expressions, since evaluating them twice differs.
FUNCTION_DEFAULTS = {"now()", "gen_random_uuid()"}

ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def expected_type(database: str, table: str, column: Column) -> str:
    """The PostgreSQL type a documented column must have."""
    if (database, table, column.name) in TYPE_DEVIATIONS:
        return TYPE_DEVIATIONS[database, table, column.name][0]
    fixed, sized = (COGNOVA_TYPES, []) if database == COGNOVA else (CHEEKO_TYPES, CHEEKO_SIZED_TYPES)
    if column.doc_type in fixed:
        return fixed[column.doc_type]
    for pattern, pg_type in sized:
        if m := pattern.fullmatch(column.doc_type):
            return pg_type.format(*m.groups())
    # A new documented type needs a deliberate entry in the maps above.
    raise LookupError(f"{database}.{table}.{column.name}: no mapping for documented type {column.doc_type!r}")


def default_literal(doc_default: str) -> str:
    """A documented literal default written as SQL (the database casts it)."""
    if doc_default == "[]":
        return "'{}'"  # Drizzle's empty-array default is PostgreSQL's empty array literal
    if m := re.fullmatch(r'"(.*)"', doc_default):
        return "'" + m[1].replace("'", "''") + "'"  # Prisma string literal
    if re.fullmatch(r"'(?:[^']|'')*'|true|false|-?\d+(?:\.\d+)?", doc_default):
        return doc_default  # already SQL
    raise ValueError(f"no rule to read documented default {doc_default!r}")


# ---- What the database has -------------------------------------------------------------


@dataclass(frozen=True)
class DbColumn:
    """A column as the database has it."""

    type: str  # format_type(), e.g. "character varying(100)"
    not_null: bool
    default: str | None  # pg_get_expr() of the default, e.g. "'user'::character varying"
    identity: bool


@dataclass(frozen=True)
class DbForeignKey:
    """A foreign key constraint, with its ON DELETE action spelled as in SQL."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str


@dataclass(frozen=True)
class DbIndex:
    """An index (unique constraints and primary keys included: each has one)."""

    name: str
    method: str  # btree, hnsw, ...
    columns: tuple[str, ...]  # empty entries are expressions
    opclasses: tuple[str, ...]
    unique: bool
    primary: bool
    predicate: str | None


@dataclass(frozen=True)
class Catalog:
    """The public schema of one database, read from pg_catalog."""

    columns: dict[str, dict[str, DbColumn]]
    foreign_keys: dict[str, list[DbForeignKey]]
    indexes: dict[str, list[DbIndex]]

    def unique_keys(self, table: str) -> set[frozenset[str]]:
        """Column sets that are unique over the whole table (partial indexes do not count)."""
        return {
            frozenset(ix.columns) for ix in self.indexes.get(table, [])
            if ix.unique and ix.predicate is None and all(ix.columns)
        }


_COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
"""
_FOREIGN_KEYS_SQL = """
SELECT c.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
       r.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord),
       con.confdeltype::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class r ON r.oid = con.confrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND con.contype = 'f'
"""
_INDEXES_SQL = """
SELECT t.relname, i.relname, am.amname,
       ARRAY(SELECT coalesce(a.attname, '') FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(num, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT o.opcname FROM unnest(x.indclass::oid[]) WITH ORDINALITY k(opc, ord)
             JOIN pg_opclass o ON o.oid = k.opc ORDER BY k.ord),
       x.indisunique, x.indisprimary, pg_get_expr(x.indpred, x.indrelid)
FROM pg_index x
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_am am ON am.oid = i.relam
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'public'
"""


def read_catalog(conn: postgres.Connection) -> Catalog:
    """Read columns, foreign keys and indexes of the public schema."""
    columns: dict[str, dict[str, DbColumn]] = {}
    for table, name, type_, not_null, default, identity in conn.execute(_COLUMNS_SQL):
        columns.setdefault(table, {})[name] = DbColumn(type_, not_null, default, identity)
    foreign_keys: dict[str, list[DbForeignKey]] = {}
    for table, cols, ref_table, ref_cols, action in conn.execute(_FOREIGN_KEYS_SQL):
        foreign_keys.setdefault(table, []).append(
            DbForeignKey(tuple(cols), ref_table, tuple(ref_cols), ON_DELETE[action])
        )
    indexes: dict[str, list[DbIndex]] = {}
    for table, name, method, cols, opclasses, unique, primary, predicate in conn.execute(_INDEXES_SQL):
        indexes.setdefault(table, []).append(
            DbIndex(name, method, tuple(cols), tuple(opclasses), unique, primary, predicate)
        )
    return Catalog(columns, foreign_keys, indexes)


@pytest.fixture(scope="module")
def connections(migrated) -> Iterator[dict[str, postgres.Connection]]:
    """One autocommit connection per migrated database (a failed probe cannot poison it)."""
    conns = {name: postgres.connect(migrated.url(name), autocommit=True) for name in DOCUMENTS}
    try:
        yield conns
    finally:
        for conn in conns.values():
            conn.close()


@pytest.fixture(scope="module")
def catalogs(connections: dict[str, postgres.Connection]) -> dict[str, Catalog]:
    """The catalog of each migrated database, read once for all cases."""
    return {name: read_catalog(conn) for name, conn in connections.items()}


# ---- Comparisons ----------------------------------------------------------------------


def default_problem(conn: postgres.Connection, column: Column, db: DbColumn) -> str | None:
    """Why the database default does not match the documented one, or None."""
    doc = column.default
    if column.doc_type == "BigInt (autoincrement)":
        return None if db.identity else f"expected an identity column, actual default {db.default!r}"
    if doc is None:
        return None
    if db.default is None:
        return f"expected default {doc}, actual none"
    if doc in FUNCTION_DEFAULTS:
        return None if db.default == doc else f"expected default {doc}, actual {db.default}"
    # Literals are compared by value, in the column's own type, so that "user"
    # matches 'user'::character varying and [] matches '{}'::text[].
    try:
        same = conn.execute(
            f"SELECT ({db.default}) IS NOT DISTINCT FROM CAST({default_literal(doc)} AS {db.type})"
        ).fetchone()[0]
    except postgres.Error as err:
        return f"expected default {doc}, actual {db.default} (comparison failed: {err})"
    return None if same else f"expected default {doc}, actual {db.default}"


def column_problems(database: str, table: Table, catalog: Catalog, conn: postgres.Connection) -> list[str]:
    """Every disagreement between the documented columns of ``table`` and the database."""
    actual = catalog.columns.get(table.name)
    if actual is None:
        return [f"{database}.{table.name}: table is documented but missing"]
    problems = []
    for column in table.columns:
        where = f"{database}.{table.name}.{column.name}"
        db = actual.get(column.name)
        if db is None:
            problems.append(f"{where}: documented ({column.doc_type}) but missing")
            continue
        want_type = expected_type(database, table.name, column)
        if db.type != want_type:
            problems.append(
                f"{where}: type: documented {column.doc_type!r} -> expected {want_type}, actual {db.type}"
            )
        if db.not_null != (not column.nullable):  # a primary key is NOT NULL, and documented "No"
            problems.append(
                f"{where}: nullable: expected {'NULL' if column.nullable else 'NOT NULL'}, "
                f"actual {'NOT NULL' if db.not_null else 'NULL'}"
            )
        if problem := default_problem(conn, column, db):
            problems.append(f"{where}: {problem}")
        elif column.default is None and DEFAULTS_EXHAUSTIVE[database] and (db.default or db.identity):
            problems.append(f"{where}: expected no default, actual {db.default or 'identity'}")
    return problems


def constraint_problems(database: str, table: Table, catalog: Catalog) -> list[str]:
    """Documented primary keys, unique constraints and foreign keys missing from the database."""
    if table.name not in catalog.columns:
        return [f"{database}.{table.name}: table is documented but missing"]
    problems = []
    indexes = catalog.indexes.get(table.name, [])
    primary = next((frozenset(ix.columns) for ix in indexes if ix.primary), None)
    unique_keys = catalog.unique_keys(table.name)
    shown_keys = sorted(sorted(key) for key in unique_keys)
    fks = catalog.foreign_keys.get(table.name, [])
    for column in table.columns:
        where = f"{database}.{table.name}.{column.name}"
        if column.primary_key and primary != {column.name}:
            problems.append(f"{where}: expected PRIMARY KEY ({column.name}), actual {sorted(primary or [])}")
        if column.unique and frozenset([column.name]) not in unique_keys:
            problems.append(f"{where}: expected UNIQUE ({column.name}), actual unique keys {shown_keys}")
        if column.fk_table is None:
            continue
        mine = [fk for fk in fks if fk.columns == (column.name,)]
        expected = f"FK -> {column.fk_table}" + (f"({column.fk_column})" if column.fk_column else "")
        if column.fk_on_delete:
            expected += f" ON DELETE {column.fk_on_delete}"
        matching = [
            fk for fk in mine
            if fk.ref_table == column.fk_table
            and (column.fk_column is None or fk.ref_columns == (column.fk_column,))
            and (column.fk_on_delete is None or fk.on_delete == column.fk_on_delete)
        ]
        if not matching:
            found = [
                f"FK -> {fk.ref_table}({', '.join(fk.ref_columns)}) ON DELETE {fk.on_delete}" for fk in mine
            ]
            problems.append(f"{where}: expected {expected}, actual {found or 'no foreign key'}")
    for key in table.unique_constraints:
        if frozenset(key) not in unique_keys:
            problems.append(
                f"{database}.{table.name}: expected UNIQUE ({', '.join(key)}), "
                f"actual unique keys {shown_keys}"
            )
    return problems


def _cases() -> list:
    """One case per documented table, named "<database>-<table>"."""
    return [
        pytest.param(database, table, id=f"{database}-{table.name}")
        for database, doc in DOCUMENTS.items()
        for table in doc.tables
    ]


# ---- Tests ----------------------------------------------------------------------------


@pytest.mark.parametrize(("database", "table"), _cases())
def test_columns_match_document(database: str, table: Table, catalogs, connections) -> None:
    """Each documented column exists with the documented type, nullability and default."""
    problems = column_problems(database, table, catalogs[database], connections[database])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("database", "table"), _cases())
def test_keys_match_document(database: str, table: Table, catalogs) -> None:
    """Each documented primary key, unique constraint and foreign key exists."""
    problems = constraint_problems(database, table, catalogs[database])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("table", cheeko_document().overview)
def test_cheeko_overview_table_exists(table: str, catalogs) -> None:
    """Tables the Cheeko overview only names (no column details) still exist."""
    assert table in catalogs[CHEEKO].columns, f"cheeko.{table}: named in the overview but missing"


def test_cheeko_documented_indexes(catalogs) -> None:
    """The indexes the Cheeko document describes in prose.

    memory_chunks: "indexed with an HNSW or IVFFlat index
    (idx_memory_chunks_embedding)"; we chose HNSW with cosine distance, which
    is what the retrieval queries order by. mac_id is the lookup key of every
    retrieval. device_memories: "Partial index on file_date where file_date
    IS NOT NULL".
    """
    indexes = catalogs[CHEEKO].indexes
    chunks = indexes.get("memory_chunks", [])
    embedding = [ix for ix in chunks if ix.columns == ("embedding",)]
    assert [(ix.name, ix.method, ix.opclasses) for ix in embedding] == [
        ("idx_memory_chunks_embedding", "hnsw", ("vector_cosine_ops",))
    ], f"cheeko.memory_chunks.embedding: expected HNSW vector_cosine_ops index, actual {embedding}"
    mac = [ix for ix in chunks if ix.columns == ("mac_id",) and ix.method == "btree"]
    assert mac, f"cheeko.memory_chunks.mac_id: expected a btree index, actual {chunks}"
    partial = [
        ix for ix in indexes.get("device_memories", [])
        if ix.columns == ("file_date",) and ix.predicate == "(file_date IS NOT NULL)"
    ]
    assert partial, (
        "cheeko.device_memories.file_date: expected a partial index WHERE file_date IS NOT NULL, "
        f"actual {indexes.get('device_memories')}"
    )


# ---- The parser itself: a parser that finds nothing must not pass silently -------------


def test_parser_reads_cheeko_document() -> None:
    """Counts and samples of the Cheeko document, as read by hand."""
    doc = cheeko_document()
    tables = {t.name: t for t in doc.tables}
    assert len(doc.tables) == 28
    assert sum(len(t.columns) for t in doc.tables) == 350
    # 50 bullets, rfid_content_pack listed twice: 49 tables.
    assert len(doc.overview) == 49 and doc.overview.count("rfid_content_pack") == 1
    assert set(tables) <= set(doc.overview), "a detailed table is missing from the overview"
    assert all(any(c.primary_key for c in t.columns) for t in doc.tables)
    assert tables["sys_user"].columns[0] == Column(
        "id", "BigInt (autoincrement)", False, None, True, False, None, None, None, "Primary key",
    )
    role = next(c for c in tables["sys_user"].columns if c.name == "role")
    assert (role.doc_type, role.nullable, role.default) == ("String (50)", True, '"user"')
    user_id = next(c for c in tables["parent_profile"].columns if c.name == "user_id")
    assert (user_id.unique, user_id.fk_table) == (True, "sys_user")
    assert tables["device_memories"].unique_constraints == (("mac_id", "file_type", "file_date"),)
    assert sum(len(t.unique_constraints) for t in doc.tables) == 4


def test_parser_reads_cognova_document() -> None:
    """Counts and samples of the Cognova document, the email erratum included."""
    doc = cognova_document()
    tables = {t.name: t for t in doc.tables}
    assert len(doc.tables) == 17
    assert sum(len(t.columns) for t in doc.tables) == 172
    assert all(any(c.primary_key for c in t.columns) for t in doc.tables)
    # The erratum restored the email row of `user` in place.
    assert len(COGNOVA_ERRATA) == 1
    assert [c.name for c in tables["user"].columns][:4] == ["id", "name", "email", "email_verified"]
    email = tables["user"].columns[2]
    assert (email.doc_type, email.nullable, email.default, email.unique) == ("text", False, None, True)
    owner = next(c for c in tables["user_settings"].columns if c.name == "user_id")
    owner_fk = (owner.unique, owner.fk_table, owner.fk_column, owner.fk_on_delete)
    assert owner_fk == (True, "user", "id", "CASCADE")
    created_by = next(c for c in tables["tasks"].columns if c.name == "created_by")
    assert created_by.fk_on_delete == "SET NULL"
    assert {c.default for c in tables["tasks"].columns} >= {"gen_random_uuid()", "'todo'", "2", "[]", "now()"}
