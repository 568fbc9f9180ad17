"""Cognova operational schema, as documented in shared/seeds/002_fc7720062784f697.txt.

Transcribed column for column. Two places where the document's table says
less than the product does, decided here:
- ``tasks.tags`` and ``documents.tags`` are documented as ``text`` with
  default ``[]`` and "Array of tag strings": Drizzle's ``text().array()``,
  so ``text[] NOT NULL DEFAULT '{}'``.
- The ``user`` table's email row lost its column name in the document; the
  description ("Unique email address") and BetterAuth's schema make it
  ``email text NOT NULL UNIQUE``.

Revision ID: cognova_0001
Revises:
"""

from alembic import op

revision = "cognova_0001"
down_revision = None
branch_labels = None
depends_on = None

TS = "timestamptz"
AUDIT_FK = 'text REFERENCES "user"(id) ON DELETE SET NULL'

TABLES: list[tuple[str, str]] = [
    # ---- Auth (BetterAuth) ----------------------------------------------------
    ('"user"', f"""
        id              text PRIMARY KEY,
        name            text NOT NULL,
        email           text NOT NULL UNIQUE,
        email_verified  boolean NOT NULL DEFAULT false,
        image           text,
        created_at      {TS} NOT NULL DEFAULT now(),
        updated_at      {TS} NOT NULL DEFAULT now()
    """),
    ("session", f"""
        id          text PRIMARY KEY,
        user_id     text NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
        token       text NOT NULL UNIQUE,
        expires_at  {TS} NOT NULL,
        ip_address  text,
        user_agent  text,
        created_at  {TS} NOT NULL DEFAULT now(),
        updated_at  {TS} NOT NULL DEFAULT now()
    """),
    ("account", f"""
        id                        text PRIMARY KEY,
        user_id                   text NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
        account_id                text NOT NULL,
        provider_id               text NOT NULL,
        access_token              text,
        refresh_token             text,
        access_token_expires_at   {TS},
        refresh_token_expires_at  {TS},
        scope                     text,
        id_token                  text,
        password                  text,
        created_at                {TS} NOT NULL DEFAULT now(),
        updated_at                {TS} NOT NULL DEFAULT now()
    """),
    ("verification", f"""
        id          text PRIMARY KEY,
        identifier  text NOT NULL,
        value       text NOT NULL,
        expires_at  {TS} NOT NULL,
        created_at  {TS} NOT NULL DEFAULT now(),
        updated_at  {TS} NOT NULL DEFAULT now()
    """),
    # ---- Application --------------------------------------------------------------
    ("projects", f"""
        id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name         text NOT NULL,
        color        text NOT NULL,
        description  text,
        created_at   {TS} NOT NULL DEFAULT now(),
        modified_at  {TS},
        deleted_at   {TS},
        created_by   {AUDIT_FK},
        modified_by  {AUDIT_FK},
        deleted_by   {AUDIT_FK}
    """),
    ("tasks", f"""
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        title         text NOT NULL,
        description   text,
        status        text NOT NULL DEFAULT 'todo',
        priority      integer NOT NULL DEFAULT 2,
        project_id    uuid REFERENCES projects(id) ON DELETE SET NULL,
        due_date      {TS},
        tags          text[] NOT NULL DEFAULT '{{}}',
        created_at    {TS} NOT NULL DEFAULT now(),
        modified_at   {TS},
        completed_at  {TS},
        deleted_at    {TS},
        created_by    {AUDIT_FK},
        modified_by   {AUDIT_FK},
        deleted_by    {AUDIT_FK}
    """),
    ("reminders", f"""
        id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        task_id     uuid REFERENCES tasks(id) ON DELETE CASCADE,
        message     text NOT NULL,
        remind_at   {TS} NOT NULL,
        notified    boolean NOT NULL DEFAULT false,
        created_at  {TS} NOT NULL DEFAULT now()
    """),
    ("documents", f"""
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        title         text NOT NULL,
        path          text NOT NULL UNIQUE,
        content       text,
        content_hash  text,
        tags          text[] NOT NULL DEFAULT '{{}}',
        project_id    uuid REFERENCES projects(id) ON DELETE SET NULL,
        shared        boolean NOT NULL DEFAULT false,
        share_type    text,
        file_type     text NOT NULL,
        mime_type     text,
        synced_at     {TS},
        created_at    {TS} NOT NULL DEFAULT now(),
        created_by    {AUDIT_FK},
        modified_at   {TS},
        modified_by   {AUDIT_FK},
        deleted_at    {TS},
        deleted_by    {AUDIT_FK}
    """),
    # ---- Conversations --------------------------------------------------------------
    ("conversations", f"""
        id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        session_id      text NOT NULL UNIQUE,
        sdk_session_id  text,
        title           text,
        summary         text,
        status          text NOT NULL DEFAULT 'idle',
        total_cost_usd  real NOT NULL DEFAULT 0,
        started_at      {TS} NOT NULL DEFAULT now(),
        ended_at        {TS},
        message_count   integer NOT NULL DEFAULT 0
    """),
    ("conversation_messages", f"""
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        conversation_id  uuid NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role             text NOT NULL,
        content          text NOT NULL,
        cost_usd         real,
        duration_ms      integer,
        created_at       {TS} NOT NULL DEFAULT now()
    """),
    # ---- Agents ----------------------------------------------------------------------
    ("cron_agents", f"""
        id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name            text NOT NULL,
        description     text,
        schedule        text NOT NULL,
        prompt          text NOT NULL,
        enabled         boolean NOT NULL DEFAULT true,
        max_turns       integer DEFAULT 50,
        max_budget_usd  real,
        last_run_at     {TS},
        last_status     text,
        created_at      {TS} NOT NULL DEFAULT now(),
        updated_at      {TS} NOT NULL DEFAULT now(),
        created_by      {AUDIT_FK}
    """),
    ("cron_agent_runs", f"""
        id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        agent_id       uuid NOT NULL REFERENCES cron_agents(id) ON DELETE CASCADE,
        status         text NOT NULL,
        output         text,
        error          text,
        cost_usd       real,
        input_tokens   integer,
        output_tokens  integer,
        num_turns      integer,
        started_at     {TS} NOT NULL DEFAULT now(),
        completed_at   {TS},
        duration_ms    integer
    """),
    # ---- System ----------------------------------------------------------------------
    ("secrets", f"""
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        key              text NOT NULL UNIQUE,
        encrypted_value  text NOT NULL,
        iv               text NOT NULL,
        description      text,
        created_at       {TS} NOT NULL DEFAULT now(),
        updated_at       {TS} NOT NULL DEFAULT now(),
        created_by       {AUDIT_FK}
    """),
    ("hook_events", f"""
        id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        event_type    text NOT NULL,
        session_id    text,
        project_dir   text,
        tool_name     text,
        tool_matcher  text,
        event_data    text,
        exit_code     integer,
        blocked       boolean NOT NULL DEFAULT false,
        block_reason  text,
        duration_ms   integer,
        hook_script   text,
        created_at    {TS} NOT NULL DEFAULT now()
    """),
    ("memory_chunks", f"""
        id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        session_id        text,
        project_path      text,
        chunk_type        text NOT NULL,
        content           text NOT NULL,
        source_excerpt    text,
        relevance_score   real NOT NULL DEFAULT 1.0,
        access_count      integer NOT NULL DEFAULT 0,
        last_accessed_at  {TS},
        created_at        {TS} NOT NULL DEFAULT now(),
        expires_at        {TS}
    """),
    ("token_usage", f"""
        id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        source         text NOT NULL,
        source_id      text,
        source_name    text,
        input_tokens   integer NOT NULL DEFAULT 0,
        output_tokens  integer NOT NULL DEFAULT 0,
        cost_usd       real NOT NULL DEFAULT 0,
        duration_ms    integer,
        num_turns      integer,
        created_at     {TS} NOT NULL DEFAULT now()
    """),
    ("user_settings", f"""
        id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id     text NOT NULL UNIQUE REFERENCES "user"(id) ON DELETE CASCADE,
        settings    text NOT NULL DEFAULT '{{}}',
        created_at  {TS} NOT NULL DEFAULT now(),
        updated_at  {TS} NOT NULL DEFAULT now()
    """),
]

# Event-time indexes for the warehouse's daily extraction windows.
INDEXES = [
    "CREATE INDEX idx_conversation_messages_created_at ON conversation_messages (created_at)",
    "CREATE INDEX idx_conversation_messages_conversation ON conversation_messages (conversation_id)",
    "CREATE INDEX idx_cron_agent_runs_started_at ON cron_agent_runs (started_at)",
    "CREATE INDEX idx_cron_agent_runs_agent ON cron_agent_runs (agent_id)",
    "CREATE INDEX idx_hook_events_created_at ON hook_events (created_at)",
    "CREATE INDEX idx_token_usage_created_at ON token_usage (created_at)",
    "CREATE INDEX idx_reminders_remind_at ON reminders (remind_at)",
]


def upgrade() -> None:
    for table, body in TABLES:
        op.execute(f"CREATE TABLE {table} ({body})")
    for statement in INDEXES:
        op.execute(statement)


def downgrade() -> None:
    for table, _ in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
