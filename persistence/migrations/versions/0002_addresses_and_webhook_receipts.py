"""addresses and webhook receipts"""

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.create_table(
        "webhook_receipts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=300), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_receipts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_webhook_receipts_dedupe_key")),
    )
    op.create_index(
        op.f("ix_webhook_receipts_outcome_received_at"),
        "webhook_receipts",
        ["outcome", "received_at"],
        unique=False,
    )

    op.create_table(
        "addresses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_addresses_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_addresses")),
        sa.UniqueConstraint("address", name=op.f("uq_addresses_address")),
    )
    op.create_index(op.f("ix_addresses_account_id"), "addresses", ["account_id"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("sent_at")

    op.drop_index(op.f("ix_addresses_account_id"), table_name="addresses")

    op.drop_table("addresses")
    op.drop_index(op.f("ix_webhook_receipts_outcome_received_at"), table_name="webhook_receipts")

    op.drop_table("webhook_receipts")
