"""message listing indexes: one per filter of the ``messages`` query, ending in its order

A page of messages filtered by status, sender, recipient, provider or conversation, ordered by
creation time (or, for the updated-time order, the account's messages by updated_at), reads a
range of one index instead of sorting the account's messages.
"""

from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"

INDEXES = {
    "ix_messages_account_id_created_at_id": ["account_id", "created_at", "id"],
    "ix_messages_account_id_status_created_at_id": ["account_id", "status", "created_at", "id"],
    "ix_messages_account_id_sender_created_at_id": ["account_id", "sender", "created_at", "id"],
    "ix_messages_account_id_recipient_created_at_id": [
        "account_id",
        "recipient",
        "created_at",
        "id",
    ],
    "ix_messages_account_id_provider_created_at_id": ["account_id", "provider", "created_at", "id"],
    "ix_messages_conversation_id_created_at_id": ["conversation_id", "created_at", "id"],
    "ix_messages_updated_order": ["account_id", "updated_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "messages", columns, unique=False)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="messages")
