"""when reconciliation looks a message up at its provider again

A message the provider took and whose final status never came back (a callback lost, or
refused while the database was down) is looked up at the provider after a while. The
partial index holds only such messages (SENT, or SENDING with a provider id), in the order
reconciliation takes them: first never looked up, by age; then by when to look again.
"""

from alembic import op

from persistence.migrations.ddl import TableDDL, timestamp

revision: str = "0006"
down_revision: str | None = "0005"

MESSAGES = TableDDL("messages")
UNSETTLED = "status IN ('SENT', 'SENDING') AND provider_message_id IS NOT NULL"


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing.
    op.add_column("messages", timestamp("reconcile_at", nullable=True))
    MESSAGES.create_index("reconcile_at", "updated_at", where=UNSETTLED)


def downgrade() -> None:
    MESSAGES.drop_index("reconcile_at", "updated_at")
    op.drop_column("messages", "reconcile_at")
