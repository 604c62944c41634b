"""when reconciliation looks a message up at its provider again

A message the provider took and whose final status never came back (a callback lost, or
refused while the database was down) is looked up at the provider after a while. The
partial index holds only such messages (SENT, or SENDING with a provider id), in the order
reconciliation takes them: first never looked up, by age; then by when to look again.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"

UNSETTLED = sa.text("status IN ('SENT', 'SENDING') AND provider_message_id IS NOT NULL")


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing.
    op.add_column("messages", sa.Column("reconcile_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_messages_reconcile_at_updated_at"),
        "messages",
        ["reconcile_at", "updated_at"],
        unique=False,
        postgresql_where=UNSETTLED,
        sqlite_where=UNSETTLED,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_reconcile_at_updated_at"), table_name="messages")
    op.drop_column("messages", "reconcile_at")
