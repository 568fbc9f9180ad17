"""The email reports' per-recipient claims (``warehouse.email_deliveries``).

``email_report_history`` records one row per dispatch, for the admin console.
It cannot stop a second send: it is written after the SMTP call. So every
(report, subject, date, recipient) is claimed here, in its own committed
transaction, before any SMTP call, and its status is moved on as the send
goes: ``claimed`` -> ``sending`` -> ``sent`` / ``failed`` / ``retry``. A
crash after the claim but before ``sending`` leaves a claim that the next
tick sends (no SMTP call was made); a crash during the SMTP call leaves
``sending``, which the next tick marks ``unknown`` and never resends.

Revision ID: cheeko_0003
Revises: cheeko_0002
"""

from alembic import op

revision = "cheeko_0003"
down_revision = "cheeko_0002"
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
    comments = {
        "report": "admin_daily or parent_weekly",
        "subject_key": "email_report_config.id for admin_daily, kid_profile.id for parent_weekly",
        "report_date": "the local day an admin report covers; the Monday of the week a parent email covers",
        "recipient": "one address; an empty string records a failure of the whole report (bad config)",
        "status": "claimed (no SMTP call yet), sending (SMTP call in flight), sent, retry (transient failure, "
                  "retried next tick), failed (permanent), unknown (crashed mid-send; never resent), skipped",
        "attempts": "SMTP attempts made so far",
        "delayed": "sent after its schedule, inside the catch-up window",
        "message_id": "Message-ID header of the email, stable per claim",
        "history_id": "the email_report_history row of the dispatch that settled this claim",
    }
    op.execute("COMMENT ON TABLE warehouse.email_deliveries IS "
               "'one row per report, subject, date and recipient: claimed before any SMTP call'")
    for column, text in comments.items():
        op.execute(f"COMMENT ON COLUMN warehouse.email_deliveries.{column} IS '{text}'")
    op.execute("CREATE INDEX email_deliveries_status ON warehouse.email_deliveries (status, report_date)")


def downgrade() -> None:
    op.execute("DROP TABLE warehouse.email_deliveries")
