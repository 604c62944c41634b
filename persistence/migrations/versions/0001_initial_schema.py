"""initial schema"""

import sqlalchemy as sa

from persistence.migrations.ddl import JSON, TableDDL, serial_id, timestamp, uuid_column

revision: str = "0001"
down_revision: str | None = None

ACCOUNTS = TableDDL("accounts")
API_KEYS = TableDDL("api_keys")
CONVERSATIONS = TableDDL("conversations")
MESSAGES = TableDDL("messages")
IDEMPOTENCY_KEYS = TableDDL("idempotency_keys")
EVENTS = TableDDL("message_events")


def upgrade() -> None:
    ACCOUNTS.create(
        uuid_column("id"),
        sa.Column("name", sa.String(length=100), nullable=False),
        timestamp("created_at"),
        ACCOUNTS.primary_key("id"),
        ACCOUNTS.unique("name"),
    )
    API_KEYS.create(
        uuid_column("id"),
        uuid_column("account_id"),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        timestamp("created_at"),
        timestamp("revoked_at", nullable=True),
        API_KEYS.account_fk(),
        API_KEYS.primary_key("id"),
        API_KEYS.unique("key_hash"),
        API_KEYS.unique("prefix"),
    )
    API_KEYS.create_index("account_id")

    CONVERSATIONS.create(
        uuid_column("id"),
        uuid_column("account_id"),
        sa.Column("participant_a", sa.String(length=320), nullable=False),
        sa.Column("participant_b", sa.String(length=320), nullable=False),
        timestamp("created_at"),
        timestamp("last_message_at"),
        CONVERSATIONS.account_fk(),
        CONVERSATIONS.primary_key("id"),
        CONVERSATIONS.unique("account_id", "participant_a", "participant_b"),
    )
    CONVERSATIONS.create_index("account_id", "last_message_at", "id")
    CONVERSATIONS.create_index("account_id", "participant_b")

    MESSAGES.create(
        uuid_column("id"),
        uuid_column("account_id"),
        uuid_column("conversation_id"),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("attachments", JSON, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=True),
        sa.Column("encoding", sa.String(length=8), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_description", sa.Text(), nullable=True),
        sa.Column("error_permanent", sa.Boolean(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        timestamp("send_at", nullable=True),
        timestamp("next_attempt_at", nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        timestamp("created_at"),
        timestamp("updated_at"),
        MESSAGES.account_fk(),
        MESSAGES.cascading_fk("conversation_id", "conversations"),
        MESSAGES.primary_key("id"),
    )
    MESSAGES.create_index("account_id", "status", "updated_at")
    MESSAGES.create_index("conversation_id", "id")
    MESSAGES.create_index("provider_message_id")
    MESSAGES.create_index("status", "next_attempt_at")

    IDEMPOTENCY_KEYS.create(
        uuid_column("account_id"),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        uuid_column("message_id"),
        timestamp("created_at"),
        IDEMPOTENCY_KEYS.account_fk(),
        IDEMPOTENCY_KEYS.cascading_fk(
            "message_id", "messages", initially="DEFERRED", deferrable=True
        ),
        IDEMPOTENCY_KEYS.primary_key("account_id", "key"),
    )
    IDEMPOTENCY_KEYS.create_index("created_at")
    IDEMPOTENCY_KEYS.create_index("message_id")

    EVENTS.create(
        serial_id(),
        uuid_column("account_id"),
        uuid_column("message_id"),
        uuid_column("conversation_id"),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", JSON, nullable=True),
        timestamp("occurred_at"),
        EVENTS.account_fk(),
        EVENTS.cascading_fk("conversation_id", "conversations"),
        EVENTS.cascading_fk("message_id", "messages"),
        EVENTS.primary_key("id"),
    )
    EVENTS.create_index("account_id", "id")
    EVENTS.create_index("conversation_id", "id")
    EVENTS.create_index("message_id", "id")


def downgrade() -> None:
    EVENTS.drop_index("message_id", "id")
    EVENTS.drop_index("conversation_id", "id")
    EVENTS.drop_index("account_id", "id")

    EVENTS.drop()
    IDEMPOTENCY_KEYS.drop_index("message_id")
    IDEMPOTENCY_KEYS.drop_index("created_at")

    IDEMPOTENCY_KEYS.drop()
    MESSAGES.drop_index("status", "next_attempt_at")
    MESSAGES.drop_index("provider_message_id")
    MESSAGES.drop_index("conversation_id", "id")
    MESSAGES.drop_index("account_id", "status", "updated_at")

    MESSAGES.drop()
    CONVERSATIONS.drop_index("account_id", "participant_b")
    CONVERSATIONS.drop_index("account_id", "last_message_at", "id")

    CONVERSATIONS.drop()
    API_KEYS.drop_index("account_id")

    API_KEYS.drop()
    ACCOUNTS.drop()
