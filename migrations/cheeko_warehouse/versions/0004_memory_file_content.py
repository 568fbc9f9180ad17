"""The memory sync decides by content, not by ``updated_at`` (issue 17).

An app may change a memory file without moving its ``updated_at``, or move
it backwards; ``memory_files.source_updated_at`` could not see either. Each
synced file now also records the row version it read (``source_xmin``, the
row's ``xmin``: any write to the row changes it) and an md5 of what it
chunked (``source_md5``: MAC, file type, date and content, computed in
PostgreSQL). A row whose ``xmin`` moved is compared by md5, and re-chunked
only when that differs.

Rows synced before this revision have neither (NULL): the next sync
re-chunks them once to learn both. Their chunk texts are unchanged, so
nothing is embedded again; a file whose content had changed without its
``updated_at`` is corrected on that run.

Revision ID: cheeko_warehouse_0004
Revises: cheeko_warehouse_0003
"""

from alembic import op

revision = "cheeko_warehouse_0004"
down_revision = "cheeko_warehouse_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE warehouse.memory_files ADD COLUMN source_xmin bigint, ADD COLUMN source_md5 text")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.source_xmin IS "
               "'device_memories.xmin of the synced version: the row has been written since when it differs'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.source_md5 IS "
               "'md5 of the synced version''s mac_id, file_type, file_date and content (pipelines.memory_sync.FILE_MD5); "
               "NULL until the sync has read the row since cheeko_warehouse_0004'")
    op.execute("COMMENT ON COLUMN warehouse.memory_files.source_updated_at IS "
               "'device_memories.updated_at of the synced version, for reference: changes are found by source_xmin "
               "and source_md5'")


def downgrade() -> None:
    op.execute("COMMENT ON COLUMN warehouse.memory_files.source_updated_at IS 'device_memories.updated_at of the synced "
               "version (a timestamp without time zone read as UTC)'")
    op.execute("ALTER TABLE warehouse.memory_files DROP COLUMN source_md5, DROP COLUMN source_xmin")
