"""message indexes only for the statuses they serve

Every status change of a message updates its row, and an update that is not HOT inserts a
new entry into every index of the table. The work-finding index (status, next_attempt_at)
only serves QUEUED, SCHEDULED and SENDING messages, and the dead-letter index only FAILED
ones: as partial indexes, a message's moves to SENT and DELIVERED no longer touch them.
"""

from persistence.migrations.ddl import TableDDL

revision: str = "0004"
down_revision: str | None = "0003"

MESSAGES = TableDDL("messages")
WORK = "status IN ('QUEUED', 'SCHEDULED', 'SENDING')"
FAILED = "status = 'FAILED'"


def upgrade() -> None:
    MESSAGES.drop_index("status", "next_attempt_at")
    MESSAGES.drop_index("account_id", "status", "updated_at")
    MESSAGES.create_index("status", "next_attempt_at", where=WORK)
    MESSAGES.create_index("account_id", "updated_at", "id", where=FAILED)


def downgrade() -> None:
    MESSAGES.drop_index("account_id", "updated_at", "id")
    MESSAGES.drop_index("status", "next_attempt_at")
    MESSAGES.create_index("account_id", "status", "updated_at")
    MESSAGES.create_index("status", "next_attempt_at")
