"""The warehouse's exact progress values, published for the app to read.

The app keeps its own running counters in ``analytics_streaks``,
``analytics_user_progress`` and ``kid_learning_progress``; those are the
app's tables and the pipeline never writes them (metrics.md, "Overrides").
Instead each warehouse run publishes the latest as-of values of the marts
``device_streaks``, ``device_progress`` and ``learning_progress`` here, one
row per device (per kid, subject and topic), with the mart's columns and the
``as_of_date`` they hold; ``updated_at`` moves only when a value changes.

Revision ID: cheeko_warehouse_0003
Revises: cheeko_warehouse_0002
"""

from alembic import op

revision = "cheeko_warehouse_0003"
down_revision = "cheeko_warehouse_0002"
branch_labels = None
depends_on = None

TABLES = {
    "device_streaks": """
        mac_address          text PRIMARY KEY,
        current_streak_days  bigint NOT NULL,
        longest_streak_days  bigint NOT NULL,
        last_active_date     date,
        streak_start_date    date,
        total_active_days    bigint NOT NULL,
        as_of_date           date NOT NULL,
        updated_at           timestamptz NOT NULL DEFAULT now()
    """,
    "device_progress": """
        mac_address        text PRIMARY KEY,
        total_active_days  bigint NOT NULL,
        user_turns         bigint NOT NULL,
        game_sessions      bigint NOT NULL,
        attempts           bigint NOT NULL,
        correct            bigint NOT NULL,
        accuracy           double precision,
        stories_completed  bigint NOT NULL,
        songs_completed    bigint NOT NULL,
        listen_seconds     bigint,
        rfid_scans         bigint NOT NULL,
        last_active_at     timestamptz,
        as_of_date         date NOT NULL,
        updated_at         timestamptz NOT NULL DEFAULT now()
    """,
    "learning_progress": """
        kid_id             bigint NOT NULL,
        subject            text NOT NULL,
        topic              text NOT NULL,
        attempts           bigint NOT NULL,
        correct            bigint NOT NULL,
        accuracy           double precision,
        recent_accuracy    double precision,
        mastery            text NOT NULL,
        last_practiced_at  timestamptz,
        as_of_date         date NOT NULL,
        updated_at         timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kid_id, subject, topic)
    """,
}


def upgrade() -> None:
    for table, body in TABLES.items():
        op.execute(f"CREATE TABLE warehouse.{table} ({body})")
        op.execute(f"COMMENT ON TABLE warehouse.{table} IS 'the latest as-of values of the warehouse mart "
                   f"{table}, published by the pipeline for the app to read; never written by the app'")


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE warehouse.{table}")
