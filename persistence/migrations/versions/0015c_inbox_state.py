"""inbox state: each conversation's read cursor, and an index to count what came in after it

The unread count is derived, not stored: the inbound messages of a conversation after its
cursor, counted on a partial index of inbound messages. An inbound message is unread the
moment its own transaction commits, with no counter row for concurrent arrivals to contend on.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0015c"
down_revision: str | None = "0015b"

INBOUND = sa.text("direction = 'INBOUND'")


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("read_up_to", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_messages_inbound",
        "messages",
        ["conversation_id", "id"],
        unique=False,
        postgresql_where=INBOUND,
        sqlite_where=INBOUND,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_inbound", table_name="messages")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("read_up_to")
