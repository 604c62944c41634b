"""inbox state: each conversation's read cursor, and an index to count what came in after it

The unread count is derived, not stored: the inbound messages of a conversation after its
cursor, counted on a partial index of inbound messages. An inbound message is unread the
moment its own transaction commits, with no counter row for concurrent arrivals to contend on.
"""

import sqlalchemy as sa
from alembic import op

from persistence.migrations.ddl import TableDDL

revision: str = "0015c"
down_revision: str | None = "0015b"

MESSAGES = TableDDL("messages")
INBOUND = "direction = 'INBOUND'"


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("read_up_to", sa.Uuid(), nullable=True))
    MESSAGES.create_index("conversation_id", "id", where=INBOUND, name="ix_messages_inbound")


def downgrade() -> None:
    MESSAGES.drop_index("conversation_id", "id", name="ix_messages_inbound")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("read_up_to")
