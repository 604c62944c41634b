"""addresses and webhook receipts"""

import sqlalchemy as sa
from alembic import op

from persistence.migrations.ddl import TableDDL, serial_id, timestamp, uuid_column

revision: str = "0002"
down_revision: str | None = "0001"

RECEIPTS = TableDDL("webhook_receipts")
ADDRESSES = TableDDL("addresses")


def upgrade() -> None:
    RECEIPTS.create(
        serial_id(),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        timestamp("received_at"),
        RECEIPTS.primary_key("id"),
        RECEIPTS.unique("dedupe_key"),
    )
    RECEIPTS.create_index("outcome", "received_at")

    ADDRESSES.create(
        uuid_column("id"),
        uuid_column("account_id"),
        sa.Column("address", sa.String(length=320), nullable=False),
        timestamp("created_at"),
        ADDRESSES.account_fk(),
        ADDRESSES.primary_key("id"),
        ADDRESSES.unique("address"),
    )
    ADDRESSES.create_index("account_id")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(timestamp("sent_at", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sent_at")

    ADDRESSES.drop_index("account_id")

    ADDRESSES.drop()
    RECEIPTS.drop_index("outcome", "received_at")

    RECEIPTS.drop()
