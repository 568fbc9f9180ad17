"""The email reports' per-recipient claims (``warehouse.email_deliveries``).

``email_report_history`` records one row per dispatch, for the admin console.
It cannot stop a second send: it is written after the SMTP call. So every
(report, subject, date, recipient) is claimed here, in its own committed
transaction, before any SMTP call, and its status is moved on as the send
goes: ``claimed`` -> ``sending`` -> ``sent`` / ``failed`` / ``retry``. A
crash after the claim but before ``sending`` leaves a claim that the next
tick sends (no SMTP call was made); a crash during the SMTP call leaves
``sending``, which the next tick marks ``unknown`` and never resends.

Revision ID: cheeko_warehouse_0002
Revises: cheeko_warehouse_0001
"""

from alembic import op

revision = "cheeko_warehouse_0002"
down_revision = "cheeko_warehouse_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE warehouse.email_deliveries (
            report       text NOT NULL,
            subject_key  text NOT NULL,
            report_date  date NOT NULL,
            recipient    text NOT NULL,
            status       text NOT NULL CHECK (status IN
                             ('claimed', 'sending', 'sent', 'retry', 'failed', 'unknown', 'skipped')),
            attempts     integer NOT NULL DEFAULT 0,
            delayed      boolean NOT NULL DEFAULT false,
            message_id   text,
            error        text,
            history_id   uuid,
            claimed_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            sent_at      timestamptz,
            PRIMARY KEY (report, subject_key, report_date, recipient)
        )
    """)
    op.execute("COMMENT ON TABLE warehouse.email_deliveries IS "
               "'one row per report, subject, date and recipient: claimed before any SMTP call'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.report IS 'admin_daily or parent_weekly'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.subject_key IS "
               "'email_report_config.id for admin_daily, kid_profile.id for parent_weekly'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.report_date IS "
               "'the local day an admin report covers; the Monday of the week a parent email covers'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.recipient IS "
               "'one address; an empty string records an outcome of the whole report (bad config, skipped date)'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.status IS "
               "'claimed (no SMTP call yet), sending (SMTP call in flight), sent, retry (transient failure, retried "
               "next tick), failed (permanent), unknown (stopped mid-send; never resent), skipped'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.attempts IS 'SMTP attempts made so far'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.delayed IS 'sent after its schedule, inside the catch-up window'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.message_id IS 'Message-ID header of the email, fixed per claim'")
    op.execute("COMMENT ON COLUMN warehouse.email_deliveries.history_id IS "
               "'the email_report_history row of the dispatch that settled this claim'")
    op.execute("CREATE INDEX email_deliveries_status ON warehouse.email_deliveries (status, report_date)")


def downgrade() -> None:
    op.execute("DROP TABLE warehouse.email_deliveries")
