"""message indexes only for the statuses they serve

Every status change of a message updates its row, and an update that is not HOT inserts a
new entry into every index of the table. The work-finding index (status, next_attempt_at)
only serves QUEUED, SCHEDULED and SENDING messages, and the dead-letter index only FAILED
ones: as partial indexes, a message's moves to SENT and DELIVERED no longer touch them.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"

WORK = sa.text("status IN ('QUEUED', 'SCHEDULED', 'SENDING')")
FAILED = sa.text("status = 'FAILED'")


def upgrade() -> None:
    op.drop_index(op.f("ix_messages_status_next_attempt_at"), table_name="messages")
    op.drop_index(op.f("ix_messages_account_id_status_updated_at"), table_name="messages")
    op.create_index(
        op.f("ix_messages_status_next_attempt_at"),
        "messages",
        ["status", "next_attempt_at"],
        unique=False,
        postgresql_where=WORK,
        sqlite_where=WORK,
    )
    op.create_index(
        op.f("ix_messages_account_id_updated_at_id"),
        "messages",
        ["account_id", "updated_at", "id"],
        unique=False,
        postgresql_where=FAILED,
        sqlite_where=FAILED,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_account_id_updated_at_id"), table_name="messages")
    op.drop_index(op.f("ix_messages_status_next_attempt_at"), table_name="messages")
    op.create_index(
        op.f("ix_messages_account_id_status_updated_at"),
        "messages",
        ["account_id", "status", "updated_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_messages_status_next_attempt_at"),
        "messages",
        ["status", "next_attempt_at"],
        unique=False,
    )
