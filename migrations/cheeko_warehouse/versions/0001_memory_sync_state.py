"""The memory sync's own state, in a schema of its own (``warehouse``).

``memory_chunks`` keeps one row per device and chunk text (``UNIQUE (mac_id,
content_hash)``), but one text often recurs in many of a device's files: the
same "Mood" line on many days. To delete a chunk exactly when no file has it
any more, the sync records which file holds which chunk
(``memory_chunk_sources``), and which version of each file it last synced
(``memory_files``), so only changed rows are re-chunked. The apps never read
these tables; the pipeline is their only writer.

The schema itself is made by the history's environment (its version table
lives there too), so adopting a database the app created adds one schema and
touches nothing of the app's.

Revision ID: cheeko_warehouse_0001
Revises:
"""

from alembic import op

revision = "cheeko_warehouse_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key to device_memories: the sync must see a row's deletion to remove its chunks. The id is
    # kept as text: the app's ids are uuid or varchar(36), depending on how its schema spells them.
    op.execute("""
        CREATE TABLE warehouse.memory_files (
            memory_id          text PRIMARY KEY,
            mac_id             text,
            source_updated_at  timestamptz,
            chunker            text NOT NULL,
            chunks             integer NOT NULL,
            error              text,
            synced_at          timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("COMMENT ON TABLE warehouse.memory_files IS "
               "'one row per device_memories row as last synced into memory_chunks'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.mac_id IS 'normalised MAC; NULL when the row''s MAC is not one'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.source_updated_at IS 'device_memories.updated_at of the synced version (a timestamp without time zone read as UTC)'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.chunker IS 'model and chunker version the chunks were made with'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.error IS 'why the row could not be chunked; NULL when it was'")
    op.execute("""
        CREATE TABLE warehouse.memory_chunk_sources (
            memory_id     text NOT NULL REFERENCES warehouse.memory_files ON DELETE CASCADE,
            ordinal       integer NOT NULL,
            mac_id        text NOT NULL,
            content_hash  text NOT NULL,
            file_path     text NOT NULL,
            start_line    integer NOT NULL,
            end_line      integer NOT NULL,
            category      text NOT NULL,
            PRIMARY KEY (memory_id, ordinal)
        )
    """)
    op.execute("COMMENT ON TABLE warehouse.memory_chunk_sources IS "
               "'every place a memory_chunks text occurs: file, lines and position in the file'")
    op.execute("CREATE INDEX memory_chunk_sources_chunk ON warehouse.memory_chunk_sources (mac_id, content_hash)")


def downgrade() -> None:
    op.execute("DROP TABLE warehouse.memory_chunk_sources")
    op.execute("DROP TABLE warehouse.memory_files")
